//! Live streams: SSE with exact resume, through our client and through curl.

use crate::{ADMIN, Lines, TestServer, client_with_token, job_event, read_sse, stream_client};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A publisher keeps writing while the reader disconnects three times and
/// resumes with Last-Event-ID: every sequence number arrives once, in order.
#[test]
fn sse_resume_across_disconnects_loses_and_repeats_nothing() {
    let s = TestServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let url = s.url("/v2/events");
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let http = client_with_token(Some(ADMIN));
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 400 {
                let batch: Vec<Value> = (0..5)
                    .map(|k| job_event(if k % 2 == 0 { "A" } else { "B" }, n * 5 + k))
                    .collect();
                http.post(&url).json(&batch).send().expect("publish");
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let client = stream_client();
    let mut seen: Vec<u64> = Vec::new();
    let mut last: Option<u64> = None;
    for round in 0..4 {
        let mut req = client.get(s.url("/v2/events/stream?project_key=A"));
        req = match last {
            Some(l) => req.header("Last-Event-ID", l.to_string()),
            None => req.query(&[("since", "0")]),
        };
        let resp = req.send().expect("stream");
        assert_eq!(resp.status(), 200);
        let want = if round < 3 { 60 } else { 1200 - 60 * 3 };
        let mut count = 0;
        let msgs = read_sse(resp, |m| {
            if m.id.is_some() {
                count += 1;
            }
            count >= want
        });
        for m in msgs.iter().filter(|m| m.id.is_some()) {
            let ev: Value = serde_json::from_str(&m.data).expect("json");
            assert_eq!(ev["project_key"], json!("A"));
            assert!(
                ev.get("seq").is_none(),
                "the seq is the SSE id, not in the event"
            );
            seen.push(m.id.expect("id"));
        }
        last = seen.last().copied();
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().expect("publisher");
    let all_a: Vec<u64> = s
        .query_all("&project_key=A")
        .into_iter()
        .map(|(q, _)| q)
        .collect();
    assert_eq!(seen, all_a, "every event of A once, in order");
}

/// A client that no one here wrote: curl, resuming with Last-Event-ID.
#[test]
fn curl_reads_the_stream_and_resumes() {
    let s = TestServer::start();
    s.post_json(&json!(
        (0..6).map(|i| job_event("A", i)).collect::<Vec<_>>()
    ));
    let out = std::process::Command::new("curl")
        .args([
            "-sN",
            "--max-time",
            "2",
            "-H",
            &format!("Authorization: Bearer {ADMIN}"),
            "-H",
            "Last-Event-ID: 3",
        ])
        .arg(s.url("/v2/events/stream?project_key=A"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .collect();
    assert_eq!(ids, ["4", "5", "6"], "{text}");
    assert!(text.starts_with("retry: "), "{text}");
}

#[test]
fn streams_obey_grants_and_accept_a_ticket() {
    let s = TestServer::start();
    let reader = s.token(&["read:A"]);
    let r = client_with_token(Some(&reader));
    assert_eq!(
        r.get(s.url("/v2/events/stream?project_key=B"))
            .send()
            .expect("b")
            .status(),
        403
    );
    assert_eq!(
        client_with_token(None)
            .get(s.url("/v2/events/stream"))
            .send()
            .expect("none")
            .status(),
        401
    );
    s.post_json(&json!([job_event("B", 1), job_event("A", 2)]));
    // A browser: ticket in the URL, no header; gets only what the token may read.
    let t: Value = r
        .post(s.url("/v2/auth/ticket"))
        .send()
        .expect("ticket")
        .json()
        .expect("json");
    let url = s.url(&format!(
        "/v2/events/stream?since=0&ticket={}",
        t["ticket"].as_str().expect("t")
    ));
    cds_events_client::install_crypto_provider();
    let plain = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let resp = plain.get(&url).send().expect("stream");
    assert_eq!(resp.status(), 200);
    let msgs = read_sse(resp, |m| m.id.is_some());
    let ev: Value = serde_json::from_str(&msgs.last().expect("one").data).expect("json");
    assert_eq!(
        (ev["project_key"].as_str(), msgs.last().expect("one").id),
        (Some("A"), Some(2))
    );
}

#[test]
fn shutdown_tells_stream_clients_where_to_resume() {
    let mut s = TestServer::start();
    s.post_json(&json!([job_event("A", 1), job_event("A", 2)]));
    let resp = stream_client()
        .get(s.url("/v2/events/stream?since=0"))
        .send()
        .expect("stream");
    let (seen, events) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        read_sse(resp, |m| {
            if m.id.is_some() {
                let _ = seen.send(());
            }
            m.event.is_some()
        })
    });
    for _ in 0..2 {
        events
            .recv_timeout(crate::WAIT)
            .expect("both events on the stream");
    }
    let (status, logs) = s.terminate();
    assert!(status.success(), "{logs}");
    let msgs = reader.join().expect("reader");
    let last = msgs.last().expect("messages");
    assert_eq!(last.event.as_deref(), Some("shutdown"));
    assert_eq!(
        serde_json::from_str::<Value>(&last.data).expect("json"),
        json!({"resume_from": 2})
    );
}

/// `cds-events listen` follows the stream, and after the server restarts it
/// reconnects and resumes where it stopped: nothing missed, nothing twice.
#[test]
fn listen_reconnects_and_resumes_across_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = TestServer::builder().dir(tmp.path()).start();
    s.post_json(&json!(
        (0..3).map(|i| job_event("A", i)).collect::<Vec<_>>()
    ));
    // The restarted server must be on the same address: take this one's port.
    let port = s.base.rsplit(':').next().expect("port").to_owned();
    let mut listener = std::process::Command::new(crate::BIN)
        .args([
            "listen",
            "--server",
            &s.base,
            "--token",
            ADMIN,
            "--project",
            "A",
            "--since",
            "0",
            "--json",
            "--count",
            "6",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("listen");
    let stdout = Lines::of(listener.stdout.take().expect("stdout"));
    let stderr = Lines::of(listener.stderr.take().expect("stderr"));
    // The server stops once the listener has printed the first three.
    let mut lines: Vec<String> = (1..=3)
        .map(|n| stdout.next(&format!("event {n} from listen")))
        .collect();
    s.terminate();
    drop(s);
    let s = TestServer::builder()
        .dir(tmp.path())
        .listen(&format!("127.0.0.1:{port}"))
        .start();
    s.post_json(&json!(
        (3..6).map(|i| job_event("A", i)).collect::<Vec<_>>()
    ));
    lines.extend(stdout.rest());
    let (seqs, stderr) = listened(listener, &lines, stderr);
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "{stderr}");
    assert!(stderr.contains("resuming after 3"), "{stderr}");
}

/// `cds-events listen` without `--since` starts from now; if the server is
/// killed (no `shutdown` message, so no `resume_from`) before the first
/// event, what is published after the restart and before the listener is
/// back still comes: "now" was fixed at the first connection.
#[test]
fn listen_from_now_misses_nothing_across_a_kill_9_before_its_first_event() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = TestServer::builder().dir(tmp.path()).start();
    s.post_json(&json!([job_event("A", 0)]));
    let port = s.base.rsplit(':').next().expect("port").to_owned();
    let mut listener = std::process::Command::new(crate::BIN)
        .args(["listen", "--server", &s.base, "--token", ADMIN])
        .args(["--project", "A", "--json", "--count", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("listen");
    let stdout = Lines::of(listener.stdout.take().expect("stdout"));
    let stderr = Lines::of(listener.stderr.take().expect("stderr"));
    crate::eventually("the listener is connected", || {
        s.metrics()
            .contains("cds_events_stream_connections{kind=\"sse\"} 1")
    });
    s.kill9();
    drop(s);
    // Down long enough for the listener to back off past the restart.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let s = TestServer::builder()
        .dir(tmp.path())
        .listen(&format!("127.0.0.1:{port}"))
        .start();
    s.post_json(&json!(
        (1..4).map(|i| job_event("A", i)).collect::<Vec<_>>()
    ));
    let lines: Vec<String> = (1..=3)
        .map(|n| stdout.next(&format!("event {n} after the restart")))
        .collect();
    let (seqs, stderr) = listened(listener, &lines, stderr);
    assert_eq!(seqs, [2, 3, 4], "{stderr}");
}

/// Once `cds-events listen --json` has exited (successfully), the sequence
/// numbers of the lines it printed, and what it said on stderr.
fn listened(
    mut listener: std::process::Child,
    lines: &[String],
    stderr: Lines,
) -> (Vec<u64>, String) {
    let stderr = stderr.rest().join("\n");
    let status = listener.wait().expect("listen exit");
    assert!(status.success(), "{stderr}");
    let seqs = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect();
    (seqs, stderr)
}
