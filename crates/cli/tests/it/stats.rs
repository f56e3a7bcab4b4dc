//! `GET /v2/events/stats` (and `cds-events stats`): events per minute and
//! family over a window, for what the token may read, and a window too long
//! or too finely cut refused naming the field.

use crate::{ADMIN, BIN, TestServer, call, client_with_token, job_event, succeeded};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::Command;

fn at(mut e: Value, ts: &str) -> Value {
    e["timestamp"] = json!(ts);
    e
}

#[test]
fn stats_count_per_bucket_and_family_for_what_the_token_reads() {
    let s = TestServer::start();
    let events = json!([
        at(job_event("A", 1), "2024-01-01T09:59:59Z"),
        at(job_event("A", 2), "2024-01-01T10:00:00Z"),
        at(job_event("A", 3), "2024-01-01T10:00:30Z"),
        at(job_event("B", 4), "2024-01-01T10:01:00Z"),
        at(
            json!({"type": "AnalysisDone", "project_key": "B", "vcs_name": "g", "repository": "r",
                  "status": "Success"}),
            "2024-01-01T10:02:59Z"
        ),
        at(
            json!({"type": "HatcheryCreated", "hatchery": "swarm"}),
            "2024-01-01T10:02:00Z"
        ),
        at(job_event("A", 5), "2024-01-01T10:03:00Z"),
    ]);
    let (status, answer) = s.post_json(&events);
    assert_eq!(status, 200, "{answer}");

    let window = "since=2024-01-01T10:00:00Z&until=2024-01-01T10:03:00Z&step=1m";
    let (status, all) = s.get(&format!("/v2/events/stats?{window}"));
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["step_seconds"], 60);
    assert_eq!(all["total"], 5, "{all}");
    assert!(
        all["families"]
            .as_array()
            .expect("families")
            .contains(&json!("WorkflowRunJob"))
    );
    let buckets = all["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 3);
    assert_eq!(buckets[0]["start"], "2024-01-01T10:00:00Z");
    assert_eq!(buckets[0]["by_family"], json!({"WorkflowRunJob": 2}));
    assert_eq!(buckets[1]["by_family"], json!({"WorkflowRunJob": 1}));
    assert_eq!(
        buckets[2]["by_family"],
        json!({"Analysis": 1, "Hatchery": 1})
    );

    // A reader of project B alone sees B's events only.
    let reader_b = client_with_token(Some(&s.token(&["read:B"])));
    let (status, mine) = call(
        &reader_b,
        Method::GET,
        &s.url(&format!("/v2/events/stats?{window}")),
        None,
    );
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["total"], 2, "{mine}");
    assert_eq!(mine["buckets"][2]["by_family"], json!({"Analysis": 1}));

    // The CLI prints the same count, as JSON or as a table.
    let cli = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["stats", "--server", &s.base, "--token", ADMIN])
            .args([
                "--since",
                "2024-01-01T10:00:00Z",
                "--until",
                "2024-01-01T10:03:00Z",
            ])
            .args(["--step", "1m"])
            .args(extra)
            .output()
            .expect("cli");
        succeeded(out, "stats")
    };
    let printed: Value = serde_json::from_str(&cli(&["--json"])).expect("json");
    assert_eq!(printed, all);
    let table = cli(&[]);
    assert!(
        table.contains("WorkflowRunJob") && table.contains("Hatchery"),
        "{table}"
    );
    assert!(
        table.contains("5 events from 2024-01-01T10:00:00Z to 2024-01-01T10:03:00Z"),
        "{table}"
    );

    // The default window is the last hour, by minute.
    let (status, recent) = s.get("/v2/events/stats");
    assert_eq!(status, 200, "{recent}");
    assert_eq!(recent["buckets"].as_array().map(Vec::len), Some(60));
    assert_eq!(recent["total"], 0);
}

#[test]
fn stats_refuse_a_long_window_or_too_many_buckets_naming_the_field() {
    let s = TestServer::start();
    for (query, field) in [
        (
            "since=2024-01-01T00:00:00Z&until=2024-01-02T00:00:01Z",
            "since",
        ),
        (
            "since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z",
            "since",
        ),
        ("since=yesterday", "since"),
        ("until=soon", "until"),
        ("step=0", "step"),
        ("step=1d", "step"),
        (
            "since=2024-01-01T00:00:00Z&until=2024-01-02T00:00:00Z&step=59s",
            "step",
        ),
    ] {
        let (status, body) = s.get(&format!("/v2/events/stats?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(
            body["error"]["details"][0]["field"], field,
            "{query}: {body}"
        );
    }
    let (status, _) =
        s.get("/v2/events/stats?since=2024-01-01T00:00:00Z&until=2024-01-02T00:00:00Z");
    assert_eq!(status, 200, "exactly 24 hours by minute is allowed");
}
