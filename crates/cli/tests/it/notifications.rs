//! Project notifications (webhooks) end to end: the real server, real HTTP
//! receivers on loopback, CDS's CRUD, Standard Webhooks signatures checked by
//! a library no one here wrote; the guarantees under stress in `guarantees`.

mod ed25519;
mod gone;
mod guarantees;
mod health;
mod preview;

use crate::receiver::Receiver;
use crate::{ADMIN, BIN, TestServer, call, client_with_token, job_event};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// A server that may call loopback receivers, with a quick retry schedule.
fn webhook_server() -> crate::Builder {
    TestServer::builder()
        .env("CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE", "1")
        .env(
            "CDS_EVENTS_WEBHOOKS__RETRY_SCHEDULE",
            "[0s,100ms,100ms,100ms,100ms]",
        )
        .env("CDS_EVENTS_WEBHOOKS__JITTER", "0")
        .env("CDS_EVENTS_WEBHOOKS__TIMEOUT", "2s")
}

fn create(s: &TestServer, project: &str, body: Value) -> Value {
    let (status, out) = call(
        &s.http,
        reqwest::Method::POST,
        &s.url(&format!("/v2/project/{project}/notification")),
        Some(&body),
    );
    assert_eq!(status, 201, "{out}");
    out
}

/// One notification too many for the project: a 409 saying so.
#[test]
fn the_per_project_limit_is_a_structured_409() {
    let s = webhook_server()
        .env("CDS_EVENTS_WEBHOOKS__MAX_PER_PROJECT", "1")
        .start();
    create(
        &s,
        "PROJ",
        json!({"name": "one", "webhook_url": "https://example.com/"}),
    );
    let (status, out) = call(
        &s.http,
        reqwest::Method::POST,
        &s.url("/v2/project/PROJ/notification"),
        Some(&json!({"name": "two", "webhook_url": "https://example.com/"})),
    );
    assert_eq!(status, 409, "{out}");
    assert_eq!(out["error"]["code"], "too_many_notifications", "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 notifications")),
        "{out}"
    );
}

/// CDS's CRUD: unique names, validation naming the field, header values
/// never shown again, grants, and an event in the log for every change.
#[test]
fn notification_crud_follows_cds_with_grants_masking_and_events() {
    let s = webhook_server().start();
    let rx = Receiver::ok();
    let created = create(
        &s,
        "PROJ",
        json!({"name": "slack", "webhook_url": rx.url, "filters": {"runs": {"event": ["Run.*"]}},
               "auth": {"headers": {"Authorization": "Bearer hunter2-secret"}}}),
    );
    assert!(
        created["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_")),
        "{created}"
    );
    assert_eq!(created["project_key"], "PROJ");
    assert_eq!(created["auth"]["headers"]["Authorization"], "***");
    // Read back: masked; the secret is not part of it.
    let (status, got) = s.get("/v2/project/PROJ/notification/slack");
    assert_eq!(status, 200);
    assert_eq!(got["auth"]["headers"]["Authorization"], "***");
    assert!(got.get("secret").is_none());
    assert!(!got.to_string().contains("hunter2"));
    // The same name again: 409.
    let (status, err) = call(
        &s.http,
        reqwest::Method::POST,
        &s.url("/v2/project/PROJ/notification"),
        Some(&json!({"name": "slack", "webhook_url": rx.url})),
    );
    assert_eq!(status, 409, "{err}");
    // An invalid expression is refused, naming it.
    let (status, err) = call(
        &s.http,
        reqwest::Method::POST,
        &s.url("/v2/project/PROJ/notification"),
        Some(
            &json!({"name": "bad", "webhook_url": rx.url, "filters": {"f": {"event": ["Run.*", "Run(["]}}}),
        ),
    );
    assert_eq!(status, 400, "{err}");
    assert_eq!(
        err["error"]["details"][0]["field"], "filters.f.event[1]",
        "{err}"
    );
    // A reader may list but not change or see the secret.
    let reader = client_with_token(Some(&s.token(&["read:PROJ"])));
    let (status, list) = call(
        &reader,
        reqwest::Method::GET,
        &s.url("/v2/project/PROJ/notification"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let (status, _) = call(
        &reader,
        reqwest::Method::GET,
        &s.url("/v2/project/PROJ/notification/slack/secret"),
        None,
    );
    assert_eq!(status, 403);
    let (status, _) = call(
        &reader,
        reqwest::Method::DELETE,
        &s.url("/v2/project/PROJ/notification/slack"),
        None,
    );
    assert_eq!(status, 403);
    // A manager of another project may not touch this one.
    let other = client_with_token(Some(
        &s.token(&["manage-notifications:OTHER", "read:OTHER"]),
    ));
    let (status, _) = call(
        &other,
        reqwest::Method::GET,
        &s.url("/v2/project/PROJ/notification"),
        None,
    );
    assert_eq!(status, 403);
    // A manager: round-trips the masked GET, header kept; the secret readable.
    let manager = client_with_token(Some(&s.token(&["manage-notifications:PROJ", "read:PROJ"])));
    let mut body = got.clone();
    body["webhook_url"] = json!(format!("{}?v=2", rx.url));
    let (status, updated) = call(
        &manager,
        reqwest::Method::PUT,
        &s.url("/v2/project/PROJ/notification/slack"),
        Some(&body),
    );
    assert_eq!(status, 200, "{updated}");
    let (status, secret) = call(
        &manager,
        reqwest::Method::GET,
        &s.url("/v2/project/PROJ/notification/slack/secret"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(secret["secret"], created["secret"]);
    // The header still goes out in clear to the receiver.
    let (status, out) = call(
        &manager,
        reqwest::Method::POST,
        &s.url("/v2/project/PROJ/notification/slack/test"),
        None,
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["outcome"], "success", "{out}");
    let pings = rx.wait_for(1, Duration::from_secs(10));
    assert_eq!(pings[0].header("authorization"), "Bearer hunter2-secret");
    let (status, _) = call(
        &manager,
        reqwest::Method::DELETE,
        &s.url("/v2/project/PROJ/notification/slack"),
        None,
    );
    assert_eq!(status, 204);
    let (status, _) = s.get("/v2/project/PROJ/notification/slack");
    assert_eq!(status, 404);
    // Each change is an event of its own.
    crate::eventually("three notification events", || {
        let types: Vec<String> = s
            .query_all("&family=Notification")
            .iter()
            .map(|(_, e)| e["type"].as_str().unwrap_or("").to_owned())
            .collect();
        types
            == [
                "NotificationCreated",
                "NotificationUpdated",
                "NotificationDeleted",
            ]
            || types
                == [
                    "NotificationDeleted",
                    "NotificationUpdated",
                    "NotificationCreated",
                ]
    });
    // The secret header never reached the log or the server's output.
    let log = s.query_all("&family=Notification");
    assert!(!format!("{log:?}").contains("hunter2"));
    assert!(!s.logs().contains("hunter2"));
}

/// Python's `standardwebhooks` package, installed from PyPI on first use.
fn ensure_standardwebhooks() {
    crate::ensure_python_package("standardwebhooks", "standardwebhooks");
}

/// Verifies one received call with the `standardwebhooks` library.
fn python_verifies(secret: &str, got: &crate::receiver::Received) -> Result<(), String> {
    ensure_standardwebhooks();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret, headers, body = sys.argv[1], json.loads(sys.argv[2]), sys.stdin.buffer.read()
Webhook(secret).verify(body, headers)
print("verified")
"#;
    python_check(script, secret, got)
}

/// Runs a Python check of one received call: `script` gets `key` and the
/// `webhook-*` headers (JSON) as arguments and the body on stdin; `Ok` when
/// it exits 0, else what it printed on stderr.
fn python_check(script: &str, key: &str, got: &crate::receiver::Received) -> Result<(), String> {
    let headers = json!({
        "webhook-id": got.header("webhook-id"),
        "webhook-timestamp": got.header("webhook-timestamp"),
        "webhook-signature": got.header("webhook-signature"),
    });
    let mut child = Command::new("python3")
        .args(["-c", script, key, &headers.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&got.body)
        .expect("body");
    let out = child.wait_with_output().expect("python3");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The signature of a real delivery verifies with the reference library;
/// during a secret rotation both the old and the new secret verify it.
#[test]
fn the_standardwebhooks_library_verifies_our_signatures_through_a_rotation() {
    let s = webhook_server().start();
    let rx = Receiver::ok();
    let created = create(
        &s,
        "PROJ",
        json!({"name": "hook", "webhook_url": rx.url, "filters": {"jobs": {"event": ["^RunJob"]}}}),
    );
    let old = created["secret"].as_str().expect("secret").to_owned();
    let (status, _) = s.post_json(&job_event("PROJ", 1));
    assert_eq!(status, 200);
    let got = rx.wait_for(1, Duration::from_secs(10));
    let first = &got[0];
    assert_eq!(first.json()["type"], "RunJobEnded");
    assert!(
        first.header("webhook-id").starts_with("msg_"),
        "{:?}",
        first.headers
    );
    python_verifies(&old, first).expect("the library accepts our signature");
    // A wrong secret fails: the check is real.
    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(python_verifies(wrong, first).is_err());
    // Rotate: the next call carries two signatures, each verifiable.
    let (status, rotated) = call(
        &s.http,
        reqwest::Method::POST,
        &s.url("/v2/project/PROJ/notification/hook/secret/rotate"),
        None,
    );
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["previous"]["secret"], old.as_str());
    s.post_json(&job_event("PROJ", 2));
    let got = rx.wait_for(2, Duration::from_secs(10));
    let call = got
        .iter()
        .find(|c| job_number(&c.json()) == Some(2))
        .expect("the second event");
    assert_eq!(call.header("webhook-signature").split(' ').count(), 2);
    python_verifies(&new, call).expect("the new secret verifies");
    python_verifies(&old, call).expect("the old secret still verifies during the overlap");
}

/// A receiver that fails three times then succeeds gets the event four
/// times, with one `webhook-id` and `webhook-attempt` 1 to 4; the delivery
/// records every attempt.
#[test]
fn three_failures_then_success_is_four_calls_with_one_webhook_id() {
    let s = webhook_server().start();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let rx = Receiver::with(move |_| {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some((if n < 3 { 500 } else { 204 }, Duration::ZERO))
    });
    create(
        &s,
        "PROJ",
        json!({"name": "flaky", "webhook_url": rx.url, "filters": {"jobs": {"event": ["RunJobEnded"]}}}),
    );
    s.post_json(&job_event("PROJ", 1));
    let got = rx.wait_for(4, Duration::from_secs(10));
    let ids: std::collections::HashSet<&str> = got.iter().map(|c| c.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1);
    let numbers: Vec<&str> = got.iter().map(|c| c.header("webhook-attempt")).collect();
    assert_eq!(numbers, ["1", "2", "3", "4"]);
    crate::eventually("the delivery recorded as succeeded", || {
        let (_, page) = s.get("/v2/project/PROJ/notification/flaky/deliveries?status=succeeded");
        page["deliveries"].as_array().is_some_and(|d| d.len() == 1)
    });
    // Its one delivery is no longer pending: nothing is left to send.
    assert_eq!(rx.count(), 4, "no call after the success");
    let (_, page) = s.get("/v2/project/PROJ/notification/flaky/deliveries");
    let id = page["deliveries"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(id, *ids.iter().next().expect("id"));
    let (status, detail) = s.get(&format!(
        "/v2/project/PROJ/notification/flaky/deliveries/{id}"
    ));
    assert_eq!(status, 200);
    let codes: Vec<u64> = detail["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(codes, [500, 500, 500, 204], "{detail}");
    // Redelivery sends it once more, same id.
    let (status, _) = call(
        &s.http,
        reqwest::Method::POST,
        &s.url(&format!(
            "/v2/project/PROJ/notification/flaky/deliveries/{id}/redeliver"
        )),
        None,
    );
    assert_eq!(status, 202);
    let got = rx.wait_for(5, Duration::from_secs(10));
    assert_eq!(got[4].header("webhook-id"), id);
    // The attempt count goes on across a redelivery.
    assert_eq!(got[4].header("webhook-attempt"), "5");
}

/// Without the switch, a webhook may not call into the server's own network,
/// whatever the URL says.
#[test]
fn private_targets_are_refused_unless_allowed() {
    let s = TestServer::builder().start();
    let rx = Receiver::ok();
    create(&s, "PROJ", json!({"name": "inside", "webhook_url": rx.url}));
    let (status, out) = call(
        &s.http,
        reqwest::Method::POST,
        &s.url("/v2/project/PROJ/notification/inside/test"),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(out["outcome"], "refused", "{out}");
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE")),
        "{out}"
    );
    // The notification's own NotificationCreated event is delivered too: once
    // its first attempt is recorded (refused), the receiver had its chance.
    crate::eventually("a first delivery attempt", || {
        let (_, page) = s.get("/v2/project/PROJ/notification/inside/deliveries");
        page["deliveries"][0]["attempts"].as_u64() >= Some(1)
    });
    assert_eq!(rx.count(), 0, "the receiver was never called");
}

/// The `n` of `job_event(_, n)`, from its run job id.
fn job_number(e: &Value) -> Option<u64> {
    e["run_job_id"].as_str()?.strip_prefix("rj-")?.parse().ok()
}

/// `cds-events notification <args>` against `base`, as the admin: whether
/// it succeeded, its standard output and its standard error.
fn notification_cli(base: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["notification"])
        .args(args)
        .args(["--server", base])
        .env("CDS_EVENTS_TOKEN", ADMIN)
        .output()
        .expect("cds-events");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CLI drives the same API.
#[test]
fn the_cli_adds_lists_tests_and_removes_notifications() {
    let s = webhook_server().start();
    let rx = Receiver::ok();
    let cli = |args: &[&str]| notification_cli(&s.base, args);
    let (ok, secret, err) = cli(&[
        "add",
        "--project",
        "PROJ",
        "ci",
        "--url",
        &rx.url,
        "--filter",
        "runs=^Run",
        "--filter",
        "runs=RunJob.*",
        "--header",
        "X-Token: abc",
    ]);
    assert!(ok, "{err}");
    assert!(secret.trim().starts_with("whsec_"), "{secret}");
    let (ok, list, err) = cli(&["list", "--project", "PROJ"]);
    assert!(ok, "{err}");
    assert!(
        list.contains("ci") && list.contains("runs=^Run,RunJob.*"),
        "{list}"
    );
    let (ok, shown, _) = cli(&["show", "--project", "PROJ", "ci"]);
    assert!(ok);
    let shown: Value = serde_json::from_str(&shown).expect("json");
    assert_eq!(shown["auth"]["headers"]["X-Token"], "***");
    let (ok, out, err) = cli(&["test", "--project", "PROJ", "ci"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        rx.wait_for(1, Duration::from_secs(5))[0].header("x-token"),
        "abc"
    );
    let (ok, _, err) = cli(&["update", "--project", "PROJ", "ci", "--no-filters"]);
    assert!(ok, "{err}");
    let (ok, secret2, _) = cli(&["secret", "--project", "PROJ", "ci"]);
    assert!(ok);
    assert_eq!(secret2.trim(), secret.trim());
    let (ok, _, err) = cli(&["rm", "--project", "PROJ", "ci"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["show", "--project", "PROJ", "ci"]);
    assert!(!ok && err.contains("not found"), "{err}");
}

/// Ordering per key through the CLI and the API: set, kept by an update
/// that does not name it, replaced by `--ordered`, and refused together
/// with `ordered: true`, naming the field.
#[test]
fn the_cli_sets_keeps_and_clears_ordering_per_key() {
    let s = webhook_server().start();
    let cli = |args: &[&str]| notification_cli(&s.base, args);
    let shown = |name: &str| -> Value {
        let (ok, out, err) = cli(&["show", "--project", "PROJ", name]);
        assert!(ok, "{err}");
        serde_json::from_str(&out).expect("json")
    };
    let url = "https://example.com/hook";
    let (ok, _, err) = cli(&[
        "add",
        "--project",
        "PROJ",
        "runs",
        "--url",
        url,
        "--ordered-by",
        "workflow_run_id",
    ]);
    assert!(ok, "{err}");
    let n = shown("runs");
    assert_eq!(
        (n["ordered"].clone(), n["ordered_by"].clone()),
        (false.into(), "workflow_run_id".into())
    );
    let (ok, list, _) = cli(&["list", "--project", "PROJ"]);
    assert!(ok && list.contains("workflow_run_id"), "{list}");
    let (ok, _, err) = cli(&["update", "--project", "PROJ", "runs", "--no-filters"]);
    assert!(ok, "{err}");
    assert_eq!(shown("runs")["ordered_by"], "workflow_run_id", "kept");
    let (ok, _, err) = cli(&["update", "--project", "PROJ", "runs", "--ordered", "true"]);
    assert!(ok, "{err}");
    let n = shown("runs");
    assert_eq!(n["ordered"], true);
    assert!(n.get("ordered_by").is_none(), "{n}");
    let (ok, _, err) = cli(&[
        "add",
        "--project",
        "PROJ",
        "both",
        "--url",
        url,
        "--ordered",
        "true",
        "--ordered-by",
        "workflow",
    ]);
    assert!(!ok && err.contains("ordered_by"), "{err}");
}
