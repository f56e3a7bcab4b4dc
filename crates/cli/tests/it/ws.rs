//! CDS's websocket protocol, spoken by a Python `websocket-client`.

use crate::{ADMIN, TestServer, job_event};
use serde_json::{Value, json};
use std::process::Command;

/// Runs the Python client: sends `messages`, returns what it received.
fn python_ws(
    s: &TestServer,
    query: &str,
    token: &str,
    messages: &[Value],
    seconds: f64,
    most: usize,
) -> Vec<Value> {
    let url = format!("{}/v2/ws{query}", s.base.replacen("http", "ws", 1));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/clients/ws_client.py");
    let out = Command::new("python3")
        .arg(script)
        .args([url, token.to_owned(), seconds.to_string(), most.to_string()])
        .args(messages.iter().map(Value::to_string))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn types(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| m["event"]["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Every kind of event, in two projects, plus global ones.
fn publish_everything(s: &TestServer) {
    let run = |t: &str, p: &str, wf: &str| {
        json!({"type": t, "project_key": p, "workflow": wf, "workflow_run_id": format!("r-{p}-{wf}"), "status": "Building",
               "user_id": "u1", "username": "alice",
               "payload": {"contexts": {"git": {"ref": format!("refs/heads/{}", if wf == "build" { "main" } else { "dev" })}}}})
    };
    let mut events = vec![
        json!({"type": "RepositoryCreated", "project_key": "A", "vcs_name": "gh", "repository": "a/r", "user_id": "u", "username": "n"}),
        json!({"type": "AnalysisStart", "project_key": "A", "vcs_name": "gh", "repository": "a/r", "status": "InProgress"}),
        json!({"type": "EntityCreated", "project_key": "A", "vcs_name": "gh", "repository": "a/r", "entity": "w.yml"}),
        run("RunCrafted", "A", "build"),
        run("RunBuilding", "A", "deploy"),
        json!(job_event("A", 1)),
        json!({"type": "RunJobEnqueued", "project_key": "B", "workflow": "w", "workflow_run_id": "x", "run_job_id": "j", "job_id": "c", "region": "eu", "status": "Waiting"}),
        json!({"type": "RunJobRunResultAdded", "project_key": "A", "run_result": "x.tgz"}),
        run("RunEnded", "A", "build"),
        json!({"type": "EventProjectPurge", "project_key": "A", "purge_report_id": "r1"}),
        json!({"type": "EventProjectPurge", "project_key": "A", "purge_report_id": "r2"}),
        json!({"type": "RegionCreated", "region": "eu", "user_id": "u", "username": "n"}),
        json!({"type": "AnalysisDone", "project_key": "B", "vcs_name": "gh", "repository": "b/r", "status": "Success"}),
    ];
    events.push(run("RunRestart", "A", "build"));
    let (status, out) = s.post_json(&json!(events));
    assert_eq!(status, 200, "{out}");
}

/// Spec §5's table, filter by filter, message by message.
#[test]
fn each_cds_filter_receives_exactly_its_events() {
    let s = TestServer::start();
    publish_everything(&s);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"type": "project", "project_key": "A"}),
            vec!["RepositoryCreated", "AnalysisStart"],
        ),
        (
            json!({"type": "project-runs", "project_key": "A"}),
            vec!["RunCrafted", "RunBuilding", "RunEnded", "RunRestart"],
        ),
        (
            json!({"type": "project-runs", "project_key": "A", "project_runs_params": "workflow=build"}),
            vec!["RunCrafted", "RunEnded", "RunRestart"],
        ),
        (
            json!({"type": "project-runs", "project_key": "A", "project_runs_params": "branch=dev"}),
            vec!["RunBuilding"],
        ),
        (
            json!({"type": "project-purge-report", "project_key": "A", "purge_report_id": "r2"}),
            vec!["EventProjectPurge"],
        ),
        (
            json!({"type": "queue"}),
            vec!["RunJobEnded", "RunJobEnqueued"],
        ),
        (json!({"type": "global"}), vec!["RegionCreated"]),
        (
            json!([{"type": "project", "project_key": "B"}, {"type": "global"}]),
            vec!["RegionCreated", "AnalysisDone"],
        ),
        (
            json!({"type": "events", "project_key": "A", "types": "RunJob*"}),
            vec!["RunJobEnded", "RunJobRunResultAdded"],
        ),
    ];
    for (filter, want) in cases {
        let msgs = python_ws(
            &s,
            "?since=0",
            ADMIN,
            std::slice::from_ref(&filter),
            1.0,
            want.len() + 1,
        );
        assert_eq!(types(&msgs), want, "filter {filter}");
        let mut last = 0;
        for m in &msgs {
            assert_eq!(
                (m["status"].as_str(), m["error"].as_str()),
                (Some("OK"), Some("")),
                "{m}"
            );
            let seq = m["seq"].as_u64().expect("seq beside the event");
            assert!(seq > last, "in order");
            last = seq;
            assert!(m["event"].get("seq").is_none());
        }
    }
}

#[test]
fn invalid_and_forbidden_filters_get_ko_and_the_connection_stays_open() {
    let s = TestServer::start();
    publish_everything(&s);
    let reader = s.token(&["read:B"]);
    let msgs = python_ws(
        &s,
        "?since=0",
        &reader,
        &[
            json!({"type": "nope"}),
            json!({"type": "project"}),
            json!({"type": "project-purge-report", "project_key": "A"}),
            json!({"type": "project", "project_key": "A"}),
            json!({"type": "global"}),
            json!({"type": "project", "project_key": "B"}),
        ],
        1.5,
        10,
    );
    let kos: Vec<&str> = msgs
        .iter()
        .filter(|m| m["status"] == "KO")
        .filter_map(|m| m["error"].as_str())
        .collect();
    assert_eq!(
        kos,
        [
            "invalid or empty given filter type: nope",
            "missing project key",
            "missing project key or report id",
            "not allowed to read project A",
            "not allowed to read global events",
        ]
    );
    for m in msgs.iter().filter(|m| m["status"] == "KO") {
        assert_eq!(
            m["event"]["timestamp"],
            json!("0001-01-01T00:00:00Z"),
            "CDS's zero event"
        );
    }
    let oks: Vec<&Value> = msgs.iter().filter(|m| m["status"] == "OK").collect();
    assert_eq!(oks.len(), 1, "the last, valid filter works: {msgs:?}");
    assert_eq!(oks[0]["event"]["type"], json!("AnalysisDone"));
    // A reader's queue carries only its projects.
    let msgs = python_ws(&s, "?since=0", &reader, &[json!({"type": "queue"})], 1.0, 5);
    assert_eq!(types(&msgs), ["RunJobEnqueued"]);
}

#[test]
fn resume_from_replays_the_log_after_that_sequence() {
    let s = TestServer::start();
    let (_, out) = s.post_json(&json!(
        (0..10).map(|i| job_event("A", i)).collect::<Vec<_>>()
    ));
    let fifth = out["events"][4]["seq"].as_u64().expect("seq");
    let msgs = python_ws(
        &s,
        "",
        ADMIN,
        &[json!({"filters": [{"type": "events", "project_key": "A"}], "resume_from": fifth})],
        1.0,
        20,
    );
    let seqs: Vec<u64> = msgs.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(seqs, ((fifth + 1)..=10).collect::<Vec<u64>>());
}

#[test]
fn shutdown_tells_websocket_clients_where_to_resume() {
    let mut s = TestServer::start();
    s.post_json(&json!([job_event("A", 1), job_event("A", 2)]));
    let url = format!("{}/v2/ws?since=0", s.base.replacen("http", "ws", 1));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/clients/ws_client.py");
    let child = Command::new("python3")
        .arg(script)
        .args([
            url,
            ADMIN.to_owned(),
            "10".to_owned(),
            "10".to_owned(),
            json!({"type": "queue"}).to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::thread::sleep(std::time::Duration::from_millis(800));
    let (status, logs) = s.terminate();
    assert!(status.success(), "{logs}");
    let out = child.wait_with_output().expect("client");
    let msgs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert_eq!(msgs[2]["status"], json!("KO"));
    assert_eq!(msgs[2]["resume_from"], json!(2));
}

/// A hatchery follows the job queue of its regions, across projects, and
/// needs a hatchery grant to do so.
#[test]
fn the_hatchery_queue_carries_the_jobs_of_its_regions() {
    let s = TestServer::start();
    let mut us = job_event("B", 7);
    us["type"] = json!("RunJobEnqueued");
    us["region"] = json!("us");
    let mut eu = job_event("A", 8);
    eu["type"] = json!("RunJobEnqueued");
    s.post_json(&json!([eu, us, job_event("A", 9), {"type": "RunCrafted", "project_key": "A", "region": "eu"}]));
    let hatchery = s.token(&["hatchery:eu"]);
    let url = |who: &str| {
        let url = format!(
            "{}/v2/hatchery/ws?since=0",
            s.base.replacen("http", "ws", 1)
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/clients/ws_client.py");
        let out = Command::new("python3")
            .arg(script)
            .args([url, who.to_owned(), "1".into(), "10".into()])
            .output()
            .expect("python");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect::<Vec<Value>>()
    };
    let msgs = url(&hatchery);
    assert_eq!(types(&msgs), ["RunJobEnqueued", "RunJobEnded"]);
    assert!(msgs.iter().all(|m| m["event"]["region"] == json!("eu")));
    let all = url(&s.token(&["hatchery:*"]));
    assert_eq!(
        types(&all),
        ["RunJobEnqueued", "RunJobEnqueued", "RunJobEnded"]
    );
    let reader = url(&s.token(&["read:*"]));
    assert_eq!(reader, [json!({"handshake_status": 403})]);
}
