//! A notification's health over the last 24 hours, as the API and the CLI
//! show it.

use super::{create, webhook_server};
use crate::receiver::Receiver;
use crate::{ADMIN, BIN, job_event, succeeded};
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

/// Two failures then a success on one delivery, one failure then a success
/// on another, then a receiver that always fails: every attempt counted,
/// and the failed delivery counted as such.
#[test]
fn health_counts_every_attempt_of_the_last_24_hours_and_the_failed_deliveries() {
    let s = webhook_server().start();
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let rx = Receiver::with(move |_| {
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Calls 1, 2 fail, 3 succeeds (job 1); 4 fails, 5 succeeds (job 2);
        // every call after fails (job 3, five attempts then failed).
        let ok = n == 2 || n == 4;
        Some((if ok { 204 } else { 500 }, Duration::ZERO))
    });
    create(
        &s,
        "PROJ",
        json!({"name": "flaky", "webhook_url": rx.url, "filters": {"jobs": {"event": ["RunJobEnded"]}}}),
    );
    let (status, empty) = s.get("/v2/project/PROJ/notification/flaky/health");
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["attempts"], 0, "{empty}");
    assert!(empty.get("success_rate").is_none(), "{empty}");
    s.post_json(&job_event("PROJ", 1));
    rx.wait_for(3, Duration::from_secs(10));
    s.post_json(&job_event("PROJ", 2));
    rx.wait_for(5, Duration::from_secs(10));
    s.post_json(&job_event("PROJ", 3));
    crate::eventually("job 3's delivery failed", || {
        let (_, h) = s.get("/v2/project/PROJ/notification/flaky/health");
        h["failed"] == 1
    });
    let (_, h) = s.get("/v2/project/PROJ/notification/flaky/health");
    let calls = rx.count() as u64;
    assert_eq!(calls, 10, "3 + 2 + 5 attempts");
    assert_eq!(h["attempts"], calls, "{h}");
    assert_eq!(h["succeeded"], 2, "{h}");
    assert_eq!(h["success_rate"], 0.2, "{h}");
    assert_eq!(h["pending"], 0, "{h}");
    assert!(h["p95_latency_ms"].as_i64().is_some(), "{h}");
    assert!(h["since"].as_str().is_some(), "{h}");
    let (status, _) = s.get("/v2/project/PROJ/notification/nope/health");
    assert_eq!(status, 404);
    // The CLI prints the same figures.
    let out = Command::new(BIN)
        .args(["notification", "health", "--project", "PROJ", "flaky"])
        .args(["--server", &s.base])
        .env("CDS_EVENTS_TOKEN", ADMIN)
        .output()
        .expect("cds-events");
    let printed: Value =
        serde_json::from_str(&succeeded(out, "notification health")).expect("JSON");
    for field in ["attempts", "succeeded", "success_rate", "pending", "failed"] {
        assert_eq!(printed[field], h[field], "{field}: {printed}");
    }
}
