//! Operating the service: monitoring, configuration, retention, the CLI.

use crate::{BIN, TestServer, eventually, job_event, succeeded};
use serde_json::{Value, json};
use std::process::Command;

#[test]
fn status_version_and_metrics_report_the_log() {
    let s = TestServer::start();
    s.post_json(&json!([job_event("P", 1), job_event("P", 2), {"type": "UserCreated", "user_id": "u", "username": "n"}]));
    let (status, st) = s.get("/mon/status");
    assert_eq!(status, 200);
    assert_eq!(st["status"], json!("ok"));
    assert_eq!(st["storage"]["events"], json!(3));
    assert_eq!(st["storage"]["head_seq"], json!(3));
    assert!(st["storage"]["bytes_on_disk"].as_u64().expect("bytes") > 0);
    assert_eq!(st["backend"], json!("sqlite"));
    let instance = st["instance"].as_str().expect("an instance id");
    assert!(
        instance.contains(&format!("-{}-", s.child.id())),
        "the id names the process: {instance}"
    );
    let (_, again) = s.get("/mon/status");
    assert_eq!(
        again["instance"], st["instance"],
        "one id for the process's life"
    );
    let (_, v) = s.get("/mon/version");
    assert_eq!(v["version"], json!(env!("CARGO_PKG_VERSION")));
    let text = s.metrics();
    for needle in [
        "cds_events_ingested_total{type=\"RunJobEnded\"} 2",
        "cds_events_ingested_total{type=\"UserCreated\"} 1",
        "cds_events_http_request_duration_seconds_bucket",
        "cds_events_commit_duration_seconds_bucket",
        "cds_events_ingest_batch_events_bucket",
        "cds_events_log_bytes",
        "cds_events_log_events 3",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}

/// The live-task gauge follows the connections: up while they are open,
/// back down once they are gone (what the soak benchmark watches).
#[test]
fn the_task_gauge_rises_with_connections_and_falls_back() {
    let s = TestServer::start();
    let tasks = || -> u64 {
        let text = s.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix("cds_events_runtime_alive_tasks "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no task gauge in:\n{text}")) as u64
    };
    let base = tasks();
    let addr = s.url("").trim_start_matches("http://").to_owned();
    let open: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(&addr).expect("connect"))
        .collect();
    eventually("20 more tasks while 20 connections are open", || {
        tasks() >= base + 20
    });
    drop(open);
    eventually("the tasks end with their connections", || {
        tasks() <= base + 2
    });
}

#[test]
fn config_layers_file_then_environment_then_flags() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("c.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1111\"\ndata_dir = \"/from/file\"\n[storage]\ndurability = \"process-crash\"\n[retention]\nmax_age = \"7days\"\n",
    )
    .expect("write");
    let run = |env: &[(&str, &str)], args: &[&str]| -> String {
        let mut c = Command::new(BIN);
        c.arg("config").arg("--config").arg(&file).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        succeeded(c.output().expect("run"), "config")
    };
    let from_file = run(&[], &[]);
    assert!(
        from_file.contains("listen = \"127.0.0.1:1111\""),
        "{from_file}"
    );
    assert!(from_file.contains("durability = \"process-crash\""));
    assert!(from_file.contains("max_age = \"7days\""));
    let env = run(
        &[
            ("CDS_EVENTS_LISTEN", "127.0.0.1:2222"),
            ("CDS_EVENTS_STORAGE__DURABILITY", "power-loss"),
        ],
        &[],
    );
    assert!(
        env.contains("listen = \"127.0.0.1:2222\"") && env.contains("durability = \"power-loss\""),
        "{env}"
    );
    assert!(env.contains("data_dir = \"/from/file\""));
    let flags = run(
        &[("CDS_EVENTS_LISTEN", "127.0.0.1:2222")],
        &["--listen", "127.0.0.1:3333", "--data-dir", "/flag"],
    );
    assert!(
        flags.contains("listen = \"127.0.0.1:3333\"") && flags.contains("data_dir = \"/flag\""),
        "{flags}"
    );

    // Mistakes are reported, not ignored.
    std::fs::write(&file, "lisen = \"x\"\n").expect("write");
    let out = Command::new(BIN)
        .arg("config")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
    // So are values out of their range, by name.
    let out = Command::new(BIN)
        .arg("config")
        .env("CDS_EVENTS_WEBHOOKS__YIELD_CPU", "1.5")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("webhooks.yield_cpu"));
}

#[test]
fn the_postgres_url_comes_from_environment_or_flag_and_is_printed_without_its_password() {
    let config = |env: Option<&str>, flag: Option<&str>| -> String {
        let mut c = Command::new(BIN);
        c.arg("config");
        if let Some(url) = env {
            c.env("CDS_EVENTS_STORAGE__POSTGRES_URL", url);
        }
        if let Some(url) = flag {
            c.args(["--postgres", url]);
        }
        succeeded(c.output().expect("run"), "config")
    };
    assert!(!config(None, None).contains("postgres_url"));
    let env = config(Some("postgres://cds:hunter2@db-a/events"), None);
    assert!(
        env.contains("postgres_url = \"postgres://cds:***@db-a/events\""),
        "{env}"
    );
    let flag = config(
        Some("postgres://cds:hunter2@db-a/events"),
        Some("host=db-b user=cds password=hunter2"),
    );
    assert!(flag.contains("host=db-b user=cds password=***"), "{flag}");
    assert!(!env.contains("hunter2") && !flag.contains("hunter2"));
}

#[test]
fn retention_purges_oldest_first_and_cursors_continue() {
    let s = TestServer::builder()
        .env("CDS_EVENTS_RETENTION__MAX_EVENTS", "10")
        .env("CDS_EVENTS_RETENTION__INTERVAL", "100ms")
        .env("CDS_EVENTS_RETENTION__BATCH", "3")
        .start();
    let batch: Vec<Value> = (0..30).map(|i| job_event("P", i)).collect();
    s.post_json(&json!(batch));
    eventually("the purge to keep 10 events", || {
        s.get("/mon/status").1["storage"]["events"] == json!(10)
    });
    let kept = s.query_all("");
    assert_eq!(
        kept.iter().map(|(q, _)| *q).collect::<Vec<_>>(),
        (21..=30).collect::<Vec<u64>>()
    );
    let (_, page) = s.get("/v2/events?cursor=5&limit=1");
    assert_eq!(
        page["events"][0]["seq"],
        json!(21),
        "a cursor in the purged range continues at the oldest kept"
    );
}

fn cli(s: &TestServer, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut c = Command::new(BIN);
    c.args(args)
        .env("CDS_EVENTS_SERVER", &s.base)
        .env("CDS_EVENTS_TOKEN", crate::ADMIN);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The upgrade path between two servers (an embedded data dir to a
/// PostgreSQL one, say): `query --all -o ndjson` then `publish -f`, which
/// keeps every event whole (ids and times included) and the order.
#[test]
fn a_log_copied_with_query_ndjson_and_publish_keeps_its_events_and_order() {
    let from = TestServer::start();
    let mut events: Vec<Value> = (0..30).map(|i| job_event("PROJ", i)).collect();
    events.push(json!({"type": "UserCreated", "user_id": "u1", "username": "n"}));
    from.post_json(&json!(events));
    let (ok, dump, err) = cli(
        &from,
        &["query", "--all", "--limit", "7", "-o", "ndjson"],
        None,
    );
    assert!(ok, "{err}");
    assert_eq!(dump.lines().count(), 31, "{dump}");
    let to = TestServer::start();
    let (ok, _, err) = cli(&to, &["publish", "--file", "-"], Some(&dump));
    assert!(ok, "{err}");
    let original = from.query_all("");
    let copied = to.query_all("");
    assert_eq!(
        copied
            .iter()
            .map(|(_, e)| e.to_string())
            .collect::<Vec<_>>(),
        original
            .iter()
            .map(|(_, e)| e.to_string())
            .collect::<Vec<_>>(),
        "same events, same order, ids and times kept"
    );
    // Run again (an interrupted copy resumed): nothing is stored twice.
    let (ok, _, err) = cli(&to, &["publish", "--file", "-"], Some(&dump));
    assert!(ok, "{err}");
    assert!(err.contains("(31 already stored)"), "{err}");
    assert_eq!(to.query_all("").len(), 31);
}

#[test]
fn cli_publishes_queries_and_lists_types() {
    let s = TestServer::start();
    let (ok, out, err) = cli(
        &s,
        &[
            "publish",
            "--type",
            "RunCrafted",
            "--project",
            "PROJ",
            "--field",
            "workflow=build",
            "--field",
            "run_number=7",
            "--payload",
            "{\"k\":1}",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("1 "), "{out}");
    let ndjson: String = (0..20)
        .map(|i| format!("{}\n", job_event("PROJ", i)))
        .collect();
    let (ok, _, err) = cli(
        &s,
        &["publish", "--file", "-", "--batch", "7"],
        Some(&ndjson),
    );
    assert!(ok, "{err}");
    assert!(err.contains("published 20 events"), "{err}");
    let (ok, _, err) = cli(&s, &["publish", "--type", "RunCrafted"], None);
    assert!(!ok);
    assert!(err.contains("project_key"), "{err}");
    let bad = format!("{}\n{{\"type\":\"Nope\"}}\n", job_event("PROJ", 1));
    let (ok, _, err) = cli(&s, &["publish", "--file", "-"], Some(&bad));
    assert!(!ok);
    assert!(err.contains("line 2"), "{err}");

    let (ok, out, _) = cli(
        &s,
        &[
            "query",
            "--project",
            "PROJ",
            "--type",
            "RunCrafted",
            "-o",
            "json",
        ],
        None,
    );
    assert!(ok);
    let line: Value = serde_json::from_str(out.trim()).expect("one json line");
    assert_eq!(line["seq"], json!(1));
    assert_eq!(line["event"]["run_number"], json!(7));
    let (ok, out, _) = cli(
        &s,
        &["query", "--type", "RunJob*", "--limit", "5", "--all"],
        None,
    );
    assert!(ok);
    assert_eq!(out.lines().count(), 21, "header and 20 rows:\n{out}");
    let (ok, out, _) = cli(&s, &["types"], None);
    assert!(
        ok && out.contains("WorkflowRunJob (project)") && out.contains("RunJobEnqueued"),
        "{out}"
    );
}

#[test]
fn simulate_drives_realistic_traffic() {
    let s = TestServer::start();
    let (ok, out, err) = cli(
        &s,
        &[
            "simulate",
            "--events",
            "3000",
            "--batch",
            "100",
            "--connections",
            "3",
            "--projects",
            "5",
            "--json",
        ],
        None,
    );
    assert!(ok, "{err}");
    let summary: Value = serde_json::from_str(out.trim()).expect("json summary");
    assert_eq!(summary["units"], json!(3000));
    assert_eq!(summary["errors"], json!(0));
    let all = s.query_all("");
    assert_eq!(all.len(), 3000);
    // The traffic covers the run and job life of spec §2.
    for t in [
        "RunCrafted",
        "RunBuilding",
        "RunJobEnqueued",
        "RunJobScheduled",
        "RunJobBuilding",
        "RunJobEnded",
        "RunEnded",
        "AnalysisStart",
    ] {
        assert!(all.iter().any(|(_, e)| e["type"] == json!(t)), "no {t}");
    }
    let (ok, out, err) = cli(
        &s,
        &[
            "simulate",
            "--workload",
            "read",
            "--events",
            "200",
            "--projects",
            "5",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("read: 200 requests"), "{out}");
}

#[test]
fn simulate_measures_delivery_to_subscribers() {
    let s = TestServer::start();
    let (ok, out, err) = cli(
        &s,
        &[
            "simulate",
            "--events",
            "2000",
            "--batch",
            "50",
            "--connections",
            "2",
            "--subscribers",
            "2",
            "--json",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(!err.contains("never reached"), "{err}");
    let summary: Value = serde_json::from_str(out.trim()).expect("json summary");
    assert_eq!(
        summary["latency"]["delivery"]["count"],
        json!(4000),
        "2 subscribers x 2000 events: {summary}"
    );
}

/// `cds-events types | head`: a reader that closed its end is not a crash.
#[test]
fn a_closed_stdout_ends_quietly() {
    let s = TestServer::start();
    // A pipe whose reading end is already closed: the first write fails
    // with EPIPE, every time.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(BIN)
        .arg("types")
        .env("CDS_EVENTS_SERVER", &s.base)
        .env("CDS_EVENTS_TOKEN", crate::ADMIN)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
