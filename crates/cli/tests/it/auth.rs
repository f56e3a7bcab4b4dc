//! Access control as a client meets it: every endpoint, every grant, the
//! isolation between projects, bootstrap, tickets, TLS and secrets hygiene.

use crate::{ADMIN, BIN, TestServer, client_with_token, job_event};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::Command;

fn call(
    client: &reqwest::blocking::Client,
    method: Method,
    url: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut r = client.request(method, url);
    if let Some(b) = body {
        r = r.json(b);
    }
    let r = r.send().expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// For every endpoint: no token → 401, a token without the right → 403, the
/// right grant → success. Public endpoints answer without a token.
#[test]
fn every_endpoint_requires_the_right_grant() {
    let s = TestServer::start();
    let (_, a) = s.post_json(&json!([job_event("A", 1)]));
    let id = a["events"][0]["id"].as_str().expect("id").to_owned();
    let none = client_with_token(None);
    let bad = client_with_token(Some("cdse_0000000000000000_not-a-real-secret"));
    let reader_b = client_with_token(Some(&s.token(&["read:B"])));
    let publisher_b = client_with_token(Some(&s.token(&["publish:B"])));
    let reader_a = client_with_token(Some(&s.token(&["read:A"])));
    let publisher_a = client_with_token(Some(&s.token(&["publish:A"])));
    let victim = s.token(&["read:A"]);
    let victim_id = call(&s.http, Method::GET, &s.url("/v2/auth/tokens"), None)
        .1
        .as_array()
        .expect("tokens")
        .iter()
        .rev()
        .find(|t| t["grants"] == json!(["read:A"]))
        .expect("victim")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    drop(victim);
    let event = json!(job_event("A", 2));
    let new_token = json!({"name": "x", "grants": ["read:A"]});
    // (method, path, body, a token without the right, a token with it)
    let cases: Vec<(
        Method,
        String,
        Option<Value>,
        &reqwest::blocking::Client,
        &reqwest::blocking::Client,
    )> = vec![
        (
            Method::POST,
            "/v2/events".into(),
            Some(event.clone()),
            &reader_a,
            &publisher_a,
        ),
        (
            Method::POST,
            "/v2/events".into(),
            Some(event),
            &publisher_b,
            &publisher_a,
        ),
        (
            Method::GET,
            "/v2/events?project_key=A".into(),
            None,
            &reader_b,
            &reader_a,
        ),
        (
            Method::GET,
            "/v2/events".into(),
            None,
            &publisher_a,
            &reader_a,
        ),
        (
            Method::GET,
            "/v2/auth/tokens".into(),
            None,
            &reader_a,
            &s.http,
        ),
        (
            Method::POST,
            "/v2/auth/tokens".into(),
            Some(new_token),
            &reader_a,
            &s.http,
        ),
        (
            Method::GET,
            "/v2/auth/audit".into(),
            None,
            &reader_a,
            &s.http,
        ),
        (
            Method::DELETE,
            format!("/v2/auth/tokens/{victim_id}"),
            None,
            &reader_a,
            &s.http,
        ),
        (Method::GET, "/mon/metrics".into(), None, &reader_a, &s.http),
    ];
    for (method, path, body, wrong, right) in &cases {
        let url = s.url(path);
        for (who, client) in [("no token", &none), ("bad token", &bad)] {
            let (status, err) = call(client, method.clone(), &url, body.as_ref());
            assert_eq!(status, 401, "{method} {path} with {who}: {err}");
        }
        let (status, err) = call(wrong, method.clone(), &url, body.as_ref());
        assert_eq!(status, 403, "{method} {path} with the wrong grant: {err}");
        assert_eq!(err["error"]["code"], json!("forbidden"));
        let (status, ok) = call(right, method.clone(), &url, body.as_ref());
        assert!(
            (200..300).contains(&status),
            "{method} {path} with the right grant: {status} {ok}"
        );
    }
    // Any valid token: the catalogue and tickets. Get-by-id: readable or 404.
    let types = s.url("/v2/events/types");
    assert_eq!(call(&none, Method::GET, &types, None).0, 401);
    assert_eq!(call(&publisher_b, Method::GET, &types, None).0, 200);
    assert_eq!(
        call(&none, Method::POST, &s.url("/v2/auth/ticket"), None).0,
        401
    );
    assert_eq!(
        call(&publisher_b, Method::POST, &s.url("/v2/auth/ticket"), None).0,
        200
    );
    let by_id = s.url(&format!("/v2/events/{id}"));
    assert_eq!(call(&none, Method::GET, &by_id, None).0, 401);
    assert_eq!(call(&reader_b, Method::GET, &by_id, None).0, 404);
    assert_eq!(call(&reader_a, Method::GET, &by_id, None).0, 200);
    // Public.
    for path in ["/mon/status", "/mon/version", "/v2/openapi.json"] {
        assert_eq!(
            call(&none, Method::GET, &s.url(path), None).0,
            200,
            "{path}"
        );
    }
    let (_, err) = call(&none, Method::GET, &s.url("/v2/events"), None);
    assert_eq!(err["error"]["code"], json!("unauthorized"));
}

/// A reader of project A never sees an event of project B: not through any
/// filter, cursor or get-by-id, including B's ids guessed directly.
#[test]
fn a_reader_of_one_project_never_sees_another() {
    let s = TestServer::start();
    let mut batch = Vec::new();
    for i in 0..30 {
        batch.push(job_event(if i % 3 == 0 { "A" } else { "B" }, i));
    }
    batch.push(
        json!({"type": "HatcheryCreated", "hatchery": "h1", "user_id": "u", "username": "n"}),
    );
    let (_, out) = s.post_json(&json!(batch));
    let all = s.query_all("");
    let ids_of = |p: &str| -> Vec<String> {
        all.iter()
            .filter(|(_, e)| e["project_key"] == json!(p))
            .map(|(_, e)| e["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let b_ids = ids_of("B");
    assert_eq!(
        out["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{out}"))
            .len(),
        31
    );
    let reader = s.token(&["read:A"]);
    let a = client_with_token(Some(&reader));
    let as_a = |params: &str| -> (u16, Value) {
        call(
            &a,
            Method::GET,
            &s.url(&format!("/v2/events?limit=1000{params}")),
            None,
        )
    };
    for params in [
        "",
        "&order=desc",
        "&type=RunJob*",
        "&family=WorkflowRunJob",
        "&workflow_run_id=run-B",
        "&user=alice",
        "&status=Success",
        "&cursor=0",
        "&since=2000-01-01T00:00:00Z",
        "&type=HatcheryCreated",
    ] {
        let (status, page) = as_a(params);
        assert_eq!(status, 200, "{params}: {page}");
        for item in page["events"].as_array().expect("events") {
            assert_eq!(
                item["event"]["project_key"],
                json!("A"),
                "{params} leaked {item}"
            );
        }
    }
    assert_eq!(as_a("").1["events"].as_array().expect("events").len(), 10);
    // Paging through with small pages never crosses over either.
    let mut cursor = 0;
    loop {
        let (status, page) = call(
            &a,
            Method::GET,
            &s.url(&format!("/v2/events?limit=3&cursor={cursor}")),
            None,
        );
        assert_eq!(status, 200, "{page}");
        for item in page["events"].as_array().expect("events") {
            assert_eq!(item["event"]["project_key"], json!("A"));
        }
        match page["next_cursor"].as_u64() {
            Some(c) => cursor = c,
            None => break,
        }
    }
    for params in ["&project_key=B", "&project_key=A,B"] {
        let (status, err) = as_a(params);
        assert_eq!(status, 403, "{params}");
        assert!(
            !err.to_string().contains("exist"),
            "the answer says nothing about existence: {err}"
        );
    }
    // Guessed ids: B's real ids answer exactly like an id that does not exist.
    let (_, missing) = call(&a, Method::GET, &s.url("/v2/events/no-such-event"), None);
    for id in &b_ids {
        let (status, body) = call(&a, Method::GET, &s.url(&format!("/v2/events/{id}")), None);
        assert_eq!((status, &body), (404, &missing), "{id}");
    }
    for id in ids_of("A") {
        assert_eq!(
            call(&a, Method::GET, &s.url(&format!("/v2/events/{id}")), None).0,
            200
        );
    }
    // Global events need read-global; read:* alone does not include them.
    let star = client_with_token(Some(&s.token(&["read:*"])));
    let (_, page) = call(&star, Method::GET, &s.url("/v2/events?limit=1000"), None);
    assert_eq!(page["events"].as_array().expect("events").len(), 30);
    let global = client_with_token(Some(&s.token(&["read-global"])));
    let (_, page) = call(&global, Method::GET, &s.url("/v2/events?limit=1000"), None);
    let events = page["events"].as_array().expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"]["type"], json!("HatcheryCreated"));
}

#[test]
fn a_batch_with_one_event_outside_the_grants_stores_nothing() {
    let s = TestServer::start();
    let p = client_with_token(Some(&s.token(&["publish:A"])));
    let batch = json!([job_event("A", 1), job_event("B", 2)]);
    let (status, err) = call(&p, Method::POST, &s.url("/v2/events"), Some(&batch));
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"]["details"][0]["index"], json!(1));
    let global = json!({"type": "RegionCreated", "region": "eu", "user_id": "u", "username": "n"});
    assert_eq!(
        call(&p, Method::POST, &s.url("/v2/events"), Some(&global)).0,
        403,
        "publish:A is not global"
    );
    assert!(s.ids("").is_empty());
    assert_eq!(
        call(
            &p,
            Method::POST,
            &s.url("/v2/events"),
            Some(&json!(job_event("A", 3)))
        )
        .0,
        200
    );
}

#[test]
fn revocation_and_expiry_take_effect_at_once() {
    let s = TestServer::start();
    let (status, created) = call(
        &s.http,
        Method::POST,
        &s.url("/v2/auth/tokens"),
        Some(&json!({"name": "temp", "grants": ["read:*"]})),
    );
    assert_eq!(status, 201);
    let token = created["token"].as_str().expect("token");
    let c = client_with_token(Some(token));
    assert_eq!(call(&c, Method::GET, &s.url("/v2/events"), None).0, 200);
    let id = created["id"].as_str().expect("id");
    assert_eq!(
        call(
            &s.http,
            Method::DELETE,
            &s.url(&format!("/v2/auth/tokens/{id}")),
            None
        )
        .0,
        204
    );
    assert_eq!(call(&c, Method::GET, &s.url("/v2/events"), None).0, 401);
    assert_eq!(
        call(
            &s.http,
            Method::DELETE,
            &s.url(&format!("/v2/auth/tokens/{id}")),
            None
        )
        .0,
        404
    );
    // Listing never shows a secret.
    let (_, list) = call(&s.http, Method::GET, &s.url("/v2/auth/tokens"), None);
    assert!(!list.to_string().contains("cdse_"));
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .all(|t| t["id"] != json!(id))
    );

    let soon = chrono::Utc::now() + chrono::Duration::seconds(1);
    let (status, created) = call(
        &s.http,
        Method::POST,
        &s.url("/v2/auth/tokens"),
        Some(&json!({"name": "short", "grants": ["read:*"], "expires_at": soon.to_rfc3339()})),
    );
    assert_eq!(status, 201, "{created}");
    let c = client_with_token(created["token"].as_str());
    assert_eq!(call(&c, Method::GET, &s.url("/v2/events"), None).0, 200);
    crate::eventually("the token's expiry time", || chrono::Utc::now() > soon);
    assert_eq!(call(&c, Method::GET, &s.url("/v2/events"), None).0, 401);
    // Bad requests name the field.
    let (status, err) = call(
        &s.http,
        Method::POST,
        &s.url("/v2/auth/tokens"),
        Some(&json!({"name": "x", "grants": ["read:A", "root"]})),
    );
    assert_eq!(status, 400);
    assert_eq!(err["error"]["details"][0]["field"], json!("grants[1]"));
    // The audit trail has it all, for admins only.
    let (status, audit) = call(&s.http, Method::GET, &s.url("/v2/auth/audit"), None);
    assert_eq!(status, 200);
    let actions: Vec<&str> = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "token.revoke").count(), 1);
    assert!(actions.iter().filter(|a| **a == "token.create").count() >= 3);
}

#[test]
fn a_ticket_authenticates_one_get() {
    let s = TestServer::start();
    let reader = client_with_token(Some(&s.token(&["read:A"])));
    s.post_json(&json!([job_event("A", 1), job_event("B", 2)]));
    let (status, t) = call(&reader, Method::POST, &s.url("/v2/auth/ticket"), None);
    assert_eq!(status, 200);
    let ticket = t["ticket"].as_str().expect("ticket");
    assert!(t["expires_in"].as_u64().expect("ttl") > 0);
    let none = client_with_token(None);
    let url = s.url(&format!("/v2/events?ticket={ticket}"));
    let (status, page) = call(&none, Method::GET, &url, None);
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["events"].as_array().expect("events").len(),
        1,
        "with the grants of the token behind it"
    );
    assert_eq!(call(&none, Method::GET, &url, None).0, 401, "single use");
    let (_, t) = call(&reader, Method::POST, &s.url("/v2/auth/ticket"), None);
    let post = s.url(&format!(
        "/v2/events?ticket={}",
        t["ticket"].as_str().expect("ticket")
    ));
    assert_eq!(
        call(&none, Method::POST, &post, Some(&json!(job_event("A", 3)))).0,
        401,
        "tickets are for GETs"
    );
}

#[test]
fn bootstrap_generates_prints_once_and_keeps_the_admin_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = TestServer::builder()
        .dir(tmp.path())
        .without_admin_env()
        .start();
    let printed: Vec<&String> = s
        .stdout_before
        .iter()
        .filter(|l| l.contains("cdse_"))
        .collect();
    assert_eq!(printed.len(), 1, "{:?}", s.stdout_before);
    let file = tmp.path().join("data").join("admin.token");
    let token = std::fs::read_to_string(&file)
        .expect("token file")
        .trim()
        .to_owned();
    assert!(printed[0].ends_with(&token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
            0o600
        );
    }
    let admin = client_with_token(Some(&token));
    assert_eq!(
        call(&admin, Method::GET, &s.url("/v2/auth/tokens"), None).0,
        200
    );
    assert!(!s.logs().contains(&token), "the secret is not in the logs");
    // The CLI on the same machine finds it in the data directory.
    let out = Command::new(BIN)
        .args(["token", "list", "--server", &s.base, "--data-dir"])
        .arg(tmp.path().join("data"))
        .env_remove("CDS_EVENTS_TOKEN")
        .output()
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin (generated)"));
    s.terminate();
    drop(s);
    let s = TestServer::builder()
        .dir(tmp.path())
        .without_admin_env()
        .start();
    assert!(
        s.stdout_before.iter().all(|l| !l.contains("cdse_")),
        "not printed again"
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("file").trim(),
        token,
        "not changed"
    );
    assert_eq!(
        call(&admin, Method::GET, &s.url("/v2/auth/tokens"), None).0,
        200
    );
}

#[test]
fn the_environment_admin_token_is_used_and_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = TestServer::builder().dir(tmp.path()).start();
    assert!(s.stdout_before.is_empty());
    assert!(!tmp.path().join("data").join("admin.token").exists());
    assert_eq!(
        call(&s.http, Method::GET, &s.url("/v2/auth/tokens"), None).0,
        200
    );
    s.terminate();
    drop(s);
    let s = TestServer::builder()
        .dir(tmp.path())
        .env("CDS_EVENTS_ADMIN_TOKEN", "a-different-token-now-123")
        .start();
    assert_eq!(
        call(&s.http, Method::GET, &s.url("/v2/auth/tokens"), None).0,
        200,
        "the first one still works"
    );
    let other = client_with_token(Some("a-different-token-now-123"));
    assert_eq!(
        call(&other, Method::GET, &s.url("/v2/auth/tokens"), None).0,
        401,
        "a later value changes nothing"
    );
}

/// Every secret used in a run — the admin token, created tokens, a ticket,
/// refused guesses — is absent from the logs (at debug level), the metrics
/// and the `config` output.
#[test]
fn secrets_never_appear_in_logs_metrics_or_config() {
    let s = TestServer::builder().env("RUST_LOG", "debug").start();
    let mut secrets = vec![ADMIN.to_owned()];
    let reader = s.token(&["read:A"]);
    let publisher = s.token(&["publish"]);
    secrets.push(reader.clone());
    secrets.push(publisher.clone());
    let p = client_with_token(Some(&publisher));
    call(
        &p,
        Method::POST,
        &s.url("/v2/events"),
        Some(&json!([job_event("A", 1)])),
    );
    let r = client_with_token(Some(&reader));
    call(&r, Method::GET, &s.url("/v2/events?project_key=A"), None);
    call(&r, Method::GET, &s.url("/v2/events?project_key=B"), None);
    let (_, t) = call(&r, Method::POST, &s.url("/v2/auth/ticket"), None);
    let ticket = t["ticket"].as_str().expect("ticket").to_owned();
    call(
        &client_with_token(None),
        Method::GET,
        &s.url(&format!("/v2/events?ticket={ticket}")),
        None,
    );
    secrets.push(ticket);
    let guess = format!("{}x", &reader[..reader.len() - 1]);
    call(
        &client_with_token(Some(&guess)),
        Method::GET,
        &s.url("/v2/events"),
        None,
    );
    secrets.push(guess);
    let metrics = s
        .http
        .get(s.url("/mon/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    let config = Command::new(BIN)
        .arg("config")
        .env("CDS_EVENTS_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("config");
    let config = String::from_utf8_lossy(&config.stdout).to_string()
        + &String::from_utf8_lossy(&config.stderr);
    let logs = s.logs();
    assert!(
        logs.contains("DEBUG") || logs.contains("INFO"),
        "logs were captured: {logs}"
    );
    for secret in &secrets {
        // The secret part of cdse_<id>_<secret> (which may itself contain
        // '_'), of cdst_<ticket>, or the whole of any other token.
        let secret_part = match (secret.strip_prefix("cdse_"), secret.strip_prefix("cdst_")) {
            (Some(rest), _) => rest.split_once('_').map_or(rest, |(_, s)| s),
            (_, Some(rest)) => rest,
            _ => secret.as_str(),
        };
        assert!(secret_part.len() >= 20, "{secret_part}");
        for (name, text) in [("logs", &logs), ("metrics", &metrics), ("config", &config)] {
            assert!(
                !text.contains(secret_part),
                "a secret appears in the {name}"
            );
        }
    }
}

#[test]
fn publishing_is_rate_limited_per_token() {
    let s = TestServer::builder()
        .env("CDS_EVENTS_AUTH__PUBLISH_RATE", "5")
        .env("CDS_EVENTS_AUTH__PUBLISH_BURST", "5")
        .start();
    let a = client_with_token(Some(&s.token(&["publish"])));
    let b = client_with_token(Some(&s.token(&["publish"])));
    let five: Vec<Value> = (0..5).map(|i| job_event("A", i)).collect();
    assert_eq!(
        call(&a, Method::POST, &s.url("/v2/events"), Some(&json!(five))).0,
        200
    );
    let r = a
        .post(s.url("/v2/events"))
        .json(&json!(job_event("A", 9)))
        .send()
        .expect("post");
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        call(
            &b,
            Method::POST,
            &s.url("/v2/events"),
            Some(&json!(job_event("A", 10)))
        )
        .0,
        200,
        "per token"
    );
    let six: Vec<Value> = (0..6).map(|i| job_event("A", 20 + i)).collect();
    let (status, err) = call(&b, Method::POST, &s.url("/v2/events"), Some(&json!(six)));
    assert_eq!(status, 429, "a batch over the burst can never pass: {err}");
    assert_eq!(s.ids("").len(), 6);
}

#[test]
fn oversized_request_heads_are_refused() {
    let s = TestServer::start();
    let r = s
        .http
        .get(s.url("/v2/events"))
        .header("x-padding", "p".repeat(20_000))
        .send()
        .expect("answer");
    assert_eq!(r.status().as_u16(), 431);
    assert_eq!(
        s.http.get(s.url("/v2/events")).send().expect("ok").status(),
        200,
        "the server is fine after"
    );
}

#[test]
fn metrics_can_be_made_public() {
    let s = TestServer::builder()
        .env("CDS_EVENTS_AUTH__PUBLIC_METRICS", "true")
        .start();
    assert_eq!(
        call(
            &client_with_token(None),
            Method::GET,
            &s.url("/mon/metrics"),
            None
        )
        .0,
        200
    );
}

#[test]
fn tls_serves_https_with_the_given_certificate() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("cert");
    let cert_path = tmp.path().join("cert.pem");
    let key_path = tmp.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write");
    let s = TestServer::builder()
        .arg("--tls-cert")
        .arg(cert_path.to_str().expect("utf8"))
        .arg("--tls-key")
        .arg(key_path.to_str().expect("utf8"))
        .start();
    assert!(s.base.starts_with("https://"), "{}", s.base);
    cds_events_client::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("ca");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {ADMIN}").parse().expect("h"),
    );
    let https = reqwest::blocking::Client::builder()
        .tls_certs_only([ca])
        .default_headers(headers)
        .build()
        .expect("client");
    let r = https.get(s.url("/v2/events")).send().expect("https");
    assert_eq!(r.status(), 200);
    let plain = s.base.replace("https://", "http://");
    assert!(
        client_with_token(Some(ADMIN))
            .get(format!("{plain}/mon/status"))
            .send()
            .is_err(),
        "no plain HTTP on the TLS port"
    );
    // The CLI trusts a private CA when told to.
    let out = Command::new(BIN)
        .args(["query", "--server", &s.base, "--token", ADMIN, "--ca-cert"])
        .arg(&cert_path)
        .output()
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
