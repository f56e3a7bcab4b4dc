//! The protections around the API as a client meets them: secrets absent
//! from logs, metrics and `config`, the per-token publish rate, bounded
//! request heads, metrics made public by configuration, and TLS.

use crate::{ADMIN, BIN, TestServer, call, client_with_token, job_event, succeeded};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::Command;

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
    let metrics = s.metrics();
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
    succeeded(out, "query --ca-cert");
}
