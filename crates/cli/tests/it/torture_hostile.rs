//! Torture (issue 16): hostile clients. 5,000 connections that never send,
//! slowloris heads, a websocket frame announced at 16 MiB, an SSE reader
//! that never reads. While each goes on, a normal client still publishes
//! and queries (each answer within a generous bound); after, the server has
//! closed the hostile connections by itself and holds no more file
//! descriptors than before.
//!
//! The server starts with a soft open-files limit of 1024 (`prlimit`), as
//! a service manager may leave it: it must raise it itself.

use crate::{ADMIN, TestServer, job_event};
use serde_json::{Value, json};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `http.header_timeout` (and `http.write_timeout`) under test, short so
/// that the test is.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// A normal client's request answered within this, whatever goes on: a
/// bound for failures on a loaded 2-core machine, not a latency target.
const PROMPT: Duration = Duration::from_secs(5);

fn hostile_server() -> TestServer {
    TestServer::builder()
        .wrapped_by(&["prlimit", "--nofile=1024:"])
        .env("CDS_EVENTS_HTTP__HEADER_TIMEOUT", "2s")
        .env("CDS_EVENTS_HTTP__WRITE_TIMEOUT", "2s")
        .start()
}

fn addr(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

fn open_fds(s: &TestServer) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", s.child.id()))
        .expect("the server's fds")
        .count()
}

/// The server's resident memory, KiB.
fn rss_kib(s: &TestServer) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", s.child.id()))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// The server's open-files limit: (soft, hard).
fn nofile(s: &TestServer) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.child.id())).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[3].to_owned(), f[4].to_owned())
}

/// A normal client, on a connection of its own each time: publishes one
/// event and reads it back, each answer within [`PROMPT`].
fn still_served(s: &TestServer, n: u64) {
    let http = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(PROMPT * 4)
        .build()
        .expect("client");
    let t = Instant::now();
    let r = http
        .post(s.url("/v2/events"))
        .bearer_auth(ADMIN)
        .json(&json!([job_event("OK", n)]))
        .send()
        .expect("publish");
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().expect("json")["events"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let published = t.elapsed();
    let t = Instant::now();
    let r = http
        .get(s.url(&format!("/v2/events/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .expect("get");
    assert_eq!(r.status(), 200);
    let read = t.elapsed();
    assert!(
        published < PROMPT && read < PROMPT,
        "a normal client waited {published:?} to publish, {read:?} to read"
    );
}

/// Whether the server has closed `c` (end of stream or reset), waiting at
/// most `most`; what it sent first is skipped.
fn closed_within(mut c: &TcpStream, most: Duration) -> bool {
    let deadline = Instant::now() + most;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        c.set_read_timeout(Some(left)).expect("timeout");
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Waits until the server holds no more descriptors than `baseline` (and a
/// few for what the normal client left in passing).
fn fds_back_to(s: &TestServer, baseline: usize) {
    crate::eventually("the server to free its descriptors", || {
        open_fds(s) <= baseline + 8
    });
}

#[test]
fn five_thousand_silent_connections_are_dropped_and_others_still_served() {
    // This test's own limit first: 5,000 sockets and the rest.
    let soft = rlimit::increase_nofile_limit(u64::MAX).expect("raise the open files limit");
    assert!(
        soft >= 6_000,
        "this test needs 6,000 open files; the hard limit here is {soft}"
    );
    let s = hostile_server();
    let (soft, hard) = nofile(&s);
    assert_eq!(
        soft, hard,
        "the server raised its soft limit to the hard one"
    );
    still_served(&s, 0);
    let baseline = open_fds(&s);
    let rss_before = rss_kib(&s);

    let t = Instant::now();
    let silent: Vec<TcpStream> = (0..5_000)
        .map(|_| TcpStream::connect(addr(&s)).expect("connect"))
        .collect();
    let opened = t.elapsed();
    let most = open_fds(&s);
    let rss_open = rss_kib(&s);
    for n in 1..=3 {
        still_served(&s, n);
    }
    // Each is closed by the server, past its header timeout.
    let unclosed = silent
        .iter()
        .filter(|c| !closed_within(c, HEADER_TIMEOUT * 5))
        .count();
    assert_eq!(unclosed, 0, "silent connections still open");
    fds_back_to(&s, baseline);
    still_served(&s, 4);
    eprintln!(
        "5,000 silent connections opened in {opened:?} ({most} server descriptors then), \
         all closed by the server after {:?}; server RSS {rss_before} KiB before, {rss_open} with them, {} after",
        t.elapsed(),
        rss_kib(&s)
    );
}

/// One slowloris: a request head trickled one byte every 100 ms. Whether
/// the server closed it within `most`, and whether it ever answered 200.
fn slowloris(addr: String, most: Duration) -> (bool, bool) {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_nonblocking(true).expect("nonblocking");
    let _ = c.write_all(b"GET /v2/events HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let deadline = Instant::now() + most;
    let mut answer = Vec::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if c.write_all(b"a").is_err() {
            return (true, false);
        }
        let mut buf = [0u8; 1024];
        match c.read(&mut buf) {
            Ok(0) => return (true, answer.starts_with(b"HTTP/1.1 200")),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return (true, false),
        }
    }
    (false, answer.starts_with(b"HTTP/1.1 200"))
}

#[test]
fn slowloris_heads_are_cut_at_the_header_timeout_and_others_still_served() {
    let s = hostile_server();
    still_served(&s, 0);
    let baseline = open_fds(&s);
    let loris: Vec<_> = (0..50)
        .map(|_| {
            let a = addr(&s);
            std::thread::spawn(move || slowloris(a, HEADER_TIMEOUT * 5))
        })
        .collect();
    for n in 1..=5 {
        still_served(&s, n);
        std::thread::sleep(Duration::from_millis(300));
    }
    for l in loris {
        let (closed, answered) = l.join().expect("slowloris");
        assert!(closed, "a slowloris head kept its connection");
        assert!(!answered, "a slowloris head was answered");
    }
    fds_back_to(&s, baseline);
}

#[test]
fn a_websocket_frame_announced_at_16_mib_is_refused_from_its_header() {
    let s = hostile_server();
    still_served(&s, 0);
    let baseline = open_fds(&s);
    let mut c = crate::ws::raw_websocket(&s, "/v2/ws");
    // A masked text frame of 16 MiB: its header, then its first MiB only.
    let mut frame = vec![0x81, 0x80 | 127];
    frame.extend_from_slice(&(16u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    c.write_all(&frame).expect("frame header");
    let _ = c.write_all(&vec![b'a'; 1 << 20]);
    still_served(&s, 1);
    assert!(
        closed_within(&c, Duration::from_secs(10)),
        "the server waited for the rest of a 16 MiB frame"
    );
    still_served(&s, 2);
    fds_back_to(&s, baseline);
}

fn sse_connections(s: &TestServer) -> f64 {
    s.metrics()
        .lines()
        .find(|l| l.starts_with("cds_events_stream_connections{kind=\"sse\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn an_sse_reader_that_never_reads_is_dropped_and_others_still_served() {
    let s = hostile_server();
    let baseline = open_fds(&s);
    let mut c = TcpStream::connect(addr(&s)).expect("connect");
    write!(
        c,
        "GET /v2/events/stream?since=0 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
    )
    .expect("request");
    crate::eventually("the stream to open", || sse_connections(&s) == 1.0);
    // Far more than the socket buffers hold, so that writes to it wait.
    let t = Instant::now();
    for round in 0..30 {
        s.publish_jobs("P", round * 500, 500);
        still_served(&s, round);
    }
    let published = t.elapsed();
    crate::eventually("the server to drop the reader that never reads", || {
        sse_connections(&s) == 0.0
    });
    still_served(&s, 100);
    fds_back_to(&s, baseline);
    // It is gone on the client's side too (after what was buffered).
    assert!(closed_within(&c, Duration::from_secs(10)));
    eprintln!(
        "15,000 events published in {published:?} beside an SSE reader that never reads; dropped after {:?}",
        t.elapsed()
    );
}
