//! Access control as a client meets it: every endpoint, every grant, the
//! isolation between projects, revocation, tickets and bootstrap.

use crate::{BIN, TestServer, call, client_with_token, job_event, succeeded};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::Command;

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
    assert!(succeeded(out, "token list").contains("admin (generated)"));
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
