//! CDS's websocket protocol, spoken by a Python `websocket-client`.

use crate::{ADMIN, Lines, TestServer, eventually, job_event, json_lines};
use serde_json::{Value, json};
use std::process::Command;

/// The Python `websocket-client` package, installed from PyPI on first use.
pub fn ensure_websocket_client() {
    crate::ensure_python_package("websocket", "websocket-client");
}

/// Runs the Python client: sends `messages`, returns what it received.
pub(crate) fn python_ws(
    s: &TestServer,
    query: &str,
    token: &str,
    messages: &[Value],
    seconds: f64,
    most: usize,
) -> Vec<Value> {
    let url = format!("{}/v2/ws{query}", s.base.replacen("http", "ws", 1));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/clients/ws_client.py");
    ensure_websocket_client();
    let out = Command::new("python3")
        .arg(script)
        .args([url, token.to_owned(), seconds.to_string(), most.to_string()])
        .args(messages.iter().map(Value::to_string))
        .output()
        .expect("python3");
    json_lines(out, "python client")
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

/// A single `events` filter catches up through the log's query, as SSE
/// does: a resume point further back than `stream.max_catchup` is served,
/// not refused, and a reader of some projects whose filter names none
/// still gets only those projects.
#[test]
fn an_events_filter_catches_up_from_any_distance_within_its_grants() {
    let s = TestServer::builder()
        .env("CDS_EVENTS_STREAM__MAX_CATCHUP", "5")
        .start();
    let (status, out) = s.post_json(&json!(
        (0..12)
            .map(|i| job_event(if i % 3 == 0 { "B" } else { "A" }, i))
            .collect::<Vec<_>>()
    ));
    assert_eq!(status, 200, "{out}");
    let seqs_of = |project: &str| -> Vec<u64> {
        out["events"]
            .as_array()
            .expect("events")
            .iter()
            .enumerate()
            .filter(|(i, _)| (i % 3 == 0) == (project == "B"))
            .filter_map(|(_, e)| e["seq"].as_u64())
            .collect()
    };
    let got =
        |msgs: &[Value]| -> Vec<u64> { msgs.iter().filter_map(|m| m["seq"].as_u64()).collect() };
    let from_the_start = |filter: Value, token: &str| {
        python_ws(
            &s,
            "",
            token,
            &[json!({"filters": [filter], "resume_from": 0})],
            1.5,
            20,
        )
    };
    let msgs = from_the_start(json!({"type": "events", "project_key": "A"}), ADMIN);
    assert_eq!(got(&msgs), seqs_of("A"), "{msgs:?}");
    let msgs = from_the_start(json!({"type": "events"}), ADMIN);
    assert_eq!(got(&msgs), (1..=12).collect::<Vec<u64>>(), "{msgs:?}");
    // A reader of A alone, asking for every project: its grants are not a
    // log query, so the catch-up is bounded, and never shows B.
    let reader = s.token(&["read:A"]);
    let msgs = from_the_start(json!({"type": "events"}), &reader);
    assert!(
        got(&msgs).iter().all(|seq| seqs_of("A").contains(seq)),
        "{msgs:?}"
    );
}

#[test]
fn shutdown_tells_websocket_clients_where_to_resume() {
    let mut s = TestServer::start();
    s.post_json(&json!([job_event("A", 1), job_event("A", 2)]));
    let url = format!("{}/v2/ws?since=0", s.base.replacen("http", "ws", 1));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/clients/ws_client.py");
    ensure_websocket_client();
    let mut child = Command::new("python3")
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
    let out = Lines::of(child.stdout.take().expect("stdout"));
    // The server stops once the client has both events.
    let mut lines = vec![out.next("the first event"), out.next("the second event")];
    let (status, logs) = s.terminate();
    assert!(status.success(), "{logs}");
    lines.extend(out.rest());
    child.wait().expect("client");
    let msgs: Vec<Value> = lines
        .iter()
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
        ensure_websocket_client();
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

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A websocket client that stops reading does not slow another subscriber,
/// and the server does not buffer the stream for it: its memory stays flat
/// while 80 MB of events go by.
/// One round of 40 batches of 1,000 padded events published as fast as the
/// server takes them, read live by an SSE reader: every event arrives, in
/// order; answers the reader's p99 from acknowledgement to arrival, and the
/// server's RSS half-way through and at the end (KiB).
fn sse_round(s: &TestServer, round: u64) -> (std::time::Duration, u64, u64) {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    const BATCHES: u64 = 40;
    const PER_BATCH: u64 = 1000;
    let pid = s.child.id();
    let head = s.get("/mon/status").1["storage"]["head_seq"]
        .as_u64()
        .expect("head");
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
        .get(s.url("/v2/events/stream"))
        .bearer_auth(ADMIN)
        .header("Last-Event-ID", head.to_string())
        .send()
        .expect("stream");
    let (reading, started) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut arrivals: Vec<(u64, Instant)> = Vec::new();
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { break };
            let _ = reading.send(());
            if let Some(id) = line.strip_prefix("id: ") {
                arrivals.push((id.parse().expect("id"), Instant::now()));
                if arrivals.len() as u64 == BATCHES * PER_BATCH {
                    break;
                }
            }
        }
        arrivals
    });
    // Publishing starts once the reader reads (the stream's first lines).
    started
        .recv_timeout(crate::WAIT)
        .expect("the reader reading");
    let mut half = rss_kib(pid);
    let padding = "p".repeat(4000);
    let mut acked: Vec<(u64, Instant)> = Vec::new();
    for b in 0..BATCHES {
        if b == BATCHES / 2 {
            half = rss_kib(pid);
        }
        let batch: Vec<Value> = (0..PER_BATCH)
            .map(|i| {
                let mut e = job_event("A", (round * BATCHES + b) * PER_BATCH + i);
                e["payload"] = json!({"padding": padding});
                e
            })
            .collect();
        let (status, out) = s.post_json(&json!(batch));
        // 80 MB a round: a full disk shows here, so say what the server said.
        assert_eq!(status, 200, "{out}\n{}", s.logs_tail(20));
        let now = Instant::now();
        acked.extend(
            out["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|a| (a["seq"].as_u64().expect("seq"), now)),
        );
    }
    let arrivals = reader.join().expect("reader");
    let end = rss_kib(pid);
    let seqs: Vec<u64> = arrivals.iter().map(|(q, _)| *q).collect();
    assert_eq!(seqs, acked.iter().map(|(q, _)| *q).collect::<Vec<_>>());
    let mut lat: Vec<Duration> = arrivals
        .iter()
        .zip(&acked)
        .map(|((_, got), (_, ack))| got.saturating_duration_since(*ack))
        .collect();
    lat.sort();
    (lat[lat.len() * 99 / 100], half, end)
}

#[test]
fn a_stalled_client_neither_slows_others_nor_grows_memory() {
    use std::time::Duration;
    // Its p99 is a latency: measured with no other test server running.
    let _alone = crate::exclusive_timing();
    let s = TestServer::builder()
        .env("CDS_EVENTS_STREAM__QUEUE", "64")
        .start();
    s.post_json(&job_event("A", 0));
    // The same load without the stalled client, on the same server in the
    // same run: what this machine does (it also warms the server's caches).
    let (alone_p99, _, _) = sse_round(&s, 1);
    // The stalled one: subscribes to everything, reads the first event (so
    // it is known to be subscribed), then reads nothing.
    let url = format!("{}/v2/ws?since=0", s.base.replacen("http", "ws", 1));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/clients/ws_client.py");
    ensure_websocket_client();
    let mut stalled = Command::new("python3")
        .arg(script)
        .args([
            url,
            ADMIN.to_owned(),
            "-60".into(),
            "1".into(),
            json!({"type": "events"}).to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let out = Lines::of(stalled.stdout.take().expect("stdout"));
    let first: Value =
        serde_json::from_str(&out.next("the stalled client's one event")).expect("json");
    assert_eq!(first["seq"], 1, "{first}");
    assert_eq!(out.next("the client stalling"), "stalled");
    let (p99, before, after) = sse_round(&s, 2);
    stalled.kill().ok();
    stalled.wait().ok();
    // The live reader's latency stayed what it is without a stalled client
    // (a hub waiting for the stalled one would hold every reader until the
    // ping timeout, a minute).
    let bound = (alone_p99 * 3).max(Duration::from_millis(1000));
    assert!(
        p99 < bound,
        "p99 {p99:?} with a stalled client connected, {alone_p99:?} without"
    );
    // 80 MB went by in the measured round; the server kept none of it for
    // the stalled client.
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("rss before {before} KiB, after {after} KiB, p99 {p99:?} (alone {alone_p99:?})");
    assert!(grown_mib < 40, "server grew by {grown_mib} MiB");
}

/// A websocket opened by hand over TCP: the handshake, then nothing unless
/// the test writes it, so it can play a peer that never answers a ping.
pub(crate) fn raw_websocket(s: &TestServer, path: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let addr = s.base.trim_start_matches("http://");
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {ADMIN}\r\n\r\n"
    )
    .expect("handshake");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).expect("handshake answer");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// One masked text frame, as a client must send it.
fn client_text_frame(text: &str) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    assert!(text.len() < 126);
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Reads until the server closes the connection; returns how long it took.
fn time_until_closed(
    tcp: &mut std::net::TcpStream,
    most: std::time::Duration,
) -> std::time::Duration {
    use std::io::Read;
    let start = std::time::Instant::now();
    tcp.set_read_timeout(Some(most)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("the server did not close the connection within {most:?}: {e}"),
        }
    }
}

/// A peer that stops answering pings (a dead host, a frozen laptop) is
/// closed after `stream.ping_timeout`, not kept forever.
#[test]
fn a_peer_that_never_answers_pings_is_closed_after_the_ping_timeout() {
    use std::io::Write;
    use std::time::Duration;
    let s = TestServer::builder()
        .env("CDS_EVENTS_STREAM__PING_INTERVAL", "200ms")
        .env("CDS_EVENTS_STREAM__PING_TIMEOUT", "700ms")
        .start();
    let mut tcp = raw_websocket(&s, "/v2/ws");
    tcp.write_all(&client_text_frame(r#"{"type":"events"}"#))
        .expect("filter");
    let took = time_until_closed(&mut tcp, Duration::from_secs(10));
    assert!(
        took >= Duration::from_millis(600),
        "closed too early: {took:?}"
    );
    // A client that answers pings (the Python client pongs by itself) stays
    // past the timeout and gets an event published 1.5 s after it connected
    // (however late a loaded machine starts it).
    eventually("the raw websocket's slot to be freed", || {
        !s.metrics()
            .contains("cds_events_stream_connections{kind=\"ws\"} 1")
    });
    let publisher = std::thread::scope(|scope| {
        scope.spawn(|| {
            eventually("the Python client to connect", || {
                s.metrics()
                    .contains("cds_events_stream_connections{kind=\"ws\"} 1")
            });
            // The wait is the test: well past the 700 ms ping timeout.
            std::thread::sleep(Duration::from_millis(1500));
            s.post_json(&job_event("A", 1))
        });
        python_ws(&s, "", ADMIN, &[json!({"type": "events"})], 10.0, 1)
    });
    assert_eq!(types(&publisher), ["RunJobEnded"], "{publisher:?}");
}

/// A websocket that never says what it wants is an idle connection; it is
/// told why and closed after `stream.filter_timeout`.
#[test]
fn a_websocket_without_a_filter_is_closed_after_the_filter_timeout() {
    use std::time::Duration;
    let s = TestServer::builder()
        .env("CDS_EVENTS_STREAM__FILTER_TIMEOUT", "500ms")
        .start();
    let mut tcp = raw_websocket(&s, "/v2/ws");
    let took = time_until_closed(&mut tcp, Duration::from_secs(10));
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    // The Python client hears the reason.
    let msgs = python_ws(&s, "", ADMIN, &[], 3.0, 1);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["status"], "KO");
    assert!(
        msgs[0]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no filter set within")),
        "{msgs:?}"
    );
}

/// `stream.max_connections` bounds open streams: the next one gets 503 with
/// `Retry-After`, and a slot freed by a closing stream is taken again.
#[test]
fn streaming_connections_beyond_the_limit_get_503_until_one_closes() {
    use std::time::Duration;
    let s = TestServer::builder()
        .env("CDS_EVENTS_STREAM__MAX_CONNECTIONS", "2")
        .start();
    let first = raw_websocket(&s, "/v2/ws");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let second = http
        .get(s.url("/v2/events/stream"))
        .bearer_auth(ADMIN)
        .send()
        .expect("stream");
    assert_eq!(second.status(), 200);
    let third = http
        .get(s.url("/v2/events/stream"))
        .bearer_auth(ADMIN)
        .send()
        .expect("stream");
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["retry-after"], "5");
    let body: Value = third.json().expect("json");
    assert_eq!(body["error"]["code"], "too_many_connections");
    drop(first);
    crate::eventually("a freed slot", || {
        http.get(s.url("/v2/events/stream"))
            .bearer_auth(ADMIN)
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    drop(second);
}
