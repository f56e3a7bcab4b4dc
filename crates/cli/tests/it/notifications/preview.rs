//! `POST …/notification/preview`: which notifications an example event
//! would reach, and why not the others; the event checked as ingest checks
//! it; a reader's right.

use super::create;
use crate::receiver::Receiver;
use crate::{TestServer, call, client_with_token, job_event};
use serde_json::{Value, json};

fn preview(s: &TestServer, client: &reqwest::blocking::Client, event: &Value) -> (u16, Value) {
    call(
        client,
        reqwest::Method::POST,
        &s.url("/v2/project/PROJ/notification/preview"),
        Some(event),
    )
}

/// Each notification of the project in the answer: matching with the
/// filters that match, or with the reason it would not get the event.
#[test]
fn a_preview_says_which_notifications_an_event_would_reach_and_why_not() {
    let s = TestServer::builder().start();
    let rx = Receiver::ok();
    for body in [
        json!({"name": "all", "webhook_url": rx.url}),
        json!({"name": "jobs", "webhook_url": rx.url,
               "filters": {"ended": {"event": ["RunJobEnded"]}, "runs": {"event": ["^RunEnded$"]}}}),
        json!({"name": "runs", "webhook_url": rx.url, "filters": {"runs": {"event": ["^RunEnded$"]}}}),
        json!({"name": "off", "webhook_url": rx.url, "enabled": false}),
    ] {
        create(&s, "PROJ", body);
    }
    create(
        &s,
        "OTHER",
        json!({"name": "elsewhere", "webhook_url": rx.url}),
    );
    let reader = client_with_token(Some(&s.token(&["read:PROJ"])));
    let (status, out) = preview(&s, &reader, &job_event("PROJ", 1));
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["event_type"], "RunJobEnded");
    let by_name = |name: &str| {
        out["notifications"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {out}"))
    };
    assert_eq!(
        out["notifications"].as_array().map(Vec::len),
        Some(4),
        "this project's only: {out}"
    );
    assert_eq!(by_name("all")["matches"], true);
    assert_eq!(by_name("all")["filters"], json!([]));
    assert_eq!(by_name("jobs")["matches"], true);
    assert_eq!(by_name("jobs")["filters"], json!(["ended"]));
    let runs = by_name("runs");
    assert_eq!(runs["matches"], false);
    assert!(
        runs["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no filter matches")),
        "{runs}"
    );
    let off = by_name("off");
    assert_eq!(off["matches"], false);
    assert!(
        off["reason"]
            .as_str()
            .is_some_and(|r| r.contains("disabled")),
        "{off}"
    );
    // `preview` is no notification's name, so each path has one meaning,
    // and a 405 lists the methods the path does have.
    let (status, err) = call(
        &s.http,
        reqwest::Method::POST,
        &s.url("/v2/project/PROJ/notification"),
        Some(&json!({"name": "preview", "webhook_url": rx.url})),
    );
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["details"][0]["field"], "name", "{err}");
    for (method, path, allow) in [
        (reqwest::Method::GET, "preview", "POST"),
        (reqwest::Method::POST, "all", "GET,HEAD,PUT,DELETE"),
    ] {
        let resp = s
            .http
            .request(
                method,
                s.url(&format!("/v2/project/PROJ/notification/{path}")),
            )
            .send()
            .expect("request");
        assert_eq!(resp.status(), 405, "{path}");
        assert_eq!(resp.headers()["allow"], allow, "{path}");
    }
    // The preview sent nothing: no delivery of the example event.
    let (_, page) = s.get("/v2/project/PROJ/notification/jobs/deliveries");
    assert_eq!(page["deliveries"], json!([]), "{page}");
}

/// A bad example event is a 400 naming the field, as ingest answers it; an
/// event of another project too; a token that may not read the project is
/// refused.
#[test]
fn a_bad_example_event_is_a_400_naming_the_field() {
    let s = TestServer::builder().start();
    let mut bad = job_event("PROJ", 1);
    bad["run_number"] = json!("seven");
    let (status, err) = preview(&s, &s.http, &bad);
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_event", "{err}");
    assert_eq!(err["error"]["details"][0]["field"], "run_number", "{err}");
    let (status, err) = preview(
        &s,
        &s.http,
        &json!({"type": "RunJobEndedd", "project_key": "PROJ"}),
    );
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("RunJobEndedd")),
        "{err}"
    );
    let (status, err) = preview(&s, &s.http, &job_event("OTHER", 1));
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["details"][0]["field"], "project_key", "{err}");
    let stranger = client_with_token(Some(&s.token(&["read:OTHER"])));
    let (status, _) = preview(&s, &stranger, &job_event("PROJ", 1));
    assert_eq!(status, 403);
}

/// `cds-events notification preview` reads the example event from a file
/// and prints a line per notification; `public-key` prints what a receiver
/// of an ed25519 notification verifies with.
#[test]
fn the_cli_previews_an_event_and_prints_a_public_key() {
    let s = TestServer::builder().start();
    let rx = Receiver::ok();
    let created = create(
        &s,
        "PROJ",
        json!({"name": "signed", "webhook_url": rx.url, "signature": "ed25519",
               "filters": {"jobs": {"event": ["RunJobEnded"]}}}),
    );
    create(
        &s,
        "PROJ",
        json!({"name": "runs", "webhook_url": rx.url, "filters": {"runs": {"event": ["^RunEnded$"]}}}),
    );
    let cli = |args: &[&str]| {
        let (ok, out, err) =
            super::notification_cli(&s.base, &[args, &["--project", "PROJ"]].concat());
        assert!(ok, "{args:?}: {err}");
        out
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("event.json");
    std::fs::write(&file, job_event("PROJ", 1).to_string()).expect("write");
    let out = cli(&["preview", file.to_str().expect("utf-8")]);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in {out}"))
            .to_owned()
    };
    assert!(
        line("signed").contains("matches") && line("signed").contains("jobs"),
        "{out}"
    );
    assert!(line("runs").contains("no filter matches"), "{out}");

    let key = cli(&["public-key", "signed"]);
    assert_eq!(key.trim(), created["secret"].as_str().expect("whpk_"));
    let pem = cli(&["public-key", "signed", "--pem"]);
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
}
