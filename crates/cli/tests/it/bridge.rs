//! The CDS bridge, with the machine's Redis (127.0.0.1:6379) playing CDS:
//! messages are published on a channel of each test's own (so tests running
//! side by side never cross) exactly as CDS encodes them, while the real
//! server is subscribed; its connection is killed by its client name.
//! Also the bridge's documented alternative: the request a CDS project
//! notification sends, accepted as is by `POST /v2/events`.

use crate::{BIN, TestServer, eventually, succeeded, unique};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

const REDIS: &str = "redis://127.0.0.1:6379";

fn redis() -> redis::Connection {
    redis::Client::open(REDIS)
        .and_then(|c| c.get_connection())
        .expect("the machine's Redis on 127.0.0.1:6379")
}

/// A full event as CDS's Go code writes it (`json.Marshal` of
/// `sdk.FullEventV2`): its field order, empty fields left out but
/// `user_mail` and `concurrency`, `<`, `>` and `&` escaped, the time with
/// its zone offset and nanoseconds.
fn cds_event(id: &str, project: &str, n: u64) -> String {
    format!(
        r#"{{"id":"{id}","type":"RunJobEnded","payload":{{"job":"compile \u003c{n}\u003e","if":"a \u0026\u0026 b"}},"project_key":"{project}","vcs_name":"github","repository":"ovh/cds","workflow":"build","workflow_run_id":"run-{project}","run_job_id":"rj-{n}","run_number":{n},"run_attempt":1,"region":"eu","hatchery":"swarm","model_type":"docker","job_id":"compile","status":"Success","user_id":"u1","username":"alice","user_mail":"","concurrency":"","timestamp":"2026-11-30T11:15:00.123456789+01:00"}}"#
    )
}

/// Go's `json.Marshal` of a string (HTML-safe escaping, as Go does).
fn go_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.Unquote` of a double-quoted literal, for the escapes
/// `go_json_string` writes.
fn go_unquote(q: &str) -> String {
    let inner = &q[1..q.len() - 1];
    let mut out = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next().expect("escape") {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex: String = it.by_ref().take(4).collect();
                let v = u32::from_str_radix(&hex, 16).expect("hex");
                out.push(char::from_u32(v).expect("char"));
            }
            other => out.push(other),
        }
    }
    out
}

/// What CDS's `pushToWebsockets` publishes for an event: its JSON, given
/// to the cache's `Publish`, which marshals the string and unquotes it
/// again. The two cancel: the message is the event's JSON itself.
fn cds_publish(con: &mut redis::Connection, channel: &str, event_json: &str) -> i64 {
    let message = go_unquote(&go_json_string(event_json));
    assert_eq!(message, event_json, "Publish leaves the JSON as it was");
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query(con)
        .expect("PUBLISH")
}

fn subscribers(con: &mut redis::Connection, channel: &str) -> i64 {
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query(con)
        .expect("NUMSUB");
    n
}

/// Kills the connections named `name` (CLIENT KILL has no name filter:
/// find their ids in CLIENT LIST). Returns how many.
fn kill_by_name(con: &mut redis::Connection, name: &str) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(con)
        .expect("CLIENT LIST");
    let needle = format!(" name={name} ");
    let ids: Vec<String> = list
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .map(str::to_owned)
        })
        .collect();
    for id in &ids {
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query(con)
            .expect("CLIENT KILL");
    }
    ids.len()
}

fn bridged(channel: &str, name: &str) -> TestServer {
    TestServer::builder()
        .arg("--cds-redis")
        .arg(REDIS)
        .env("CDS_EVENTS_BRIDGE__CHANNEL", channel)
        .env("CDS_EVENTS_BRIDGE__CLIENT_NAME", name)
        // Long enough for the test to publish into the gap.
        .env("CDS_EVENTS_BRIDGE__RECONNECT_MIN", "1s")
        .start()
}

fn bridge_status(s: &TestServer) -> Value {
    let (code, st) = s.get("/mon/status");
    assert_eq!(code, 200, "{st}");
    st["bridge"].clone()
}

fn time(v: &Value) -> DateTime<Utc> {
    v.as_str().expect("time").parse().expect("RFC 3339")
}

#[test]
fn every_event_published_while_subscribed_is_stored_once_and_the_gap_is_reported() {
    let (channel, name, project) = (
        unique("cds-events-it-ch"),
        unique("cds-events-it-bridge"),
        "BRIDGE",
    );
    let s = bridged(&channel, &name);
    let mut con = redis();
    eventually("the bridge's subscription", || {
        subscribers(&mut con, &channel) == 1
    });
    assert_eq!(bridge_status(&s)["state"], "subscribed");

    // Publish steadily; kill the bridge's connection after 100 delivered
    // events; go on until it is back and 100 more were delivered.
    // PUBLISH answers how many subscribers got each message: that is the
    // truth the bridge is held to.
    let mut delivered = Vec::new();
    let mut gap: Vec<(DateTime<Utc>, String)> = Vec::new();
    let (mut killed, mut after) = (false, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 0u64;
    while after < 100 {
        assert!(Instant::now() < deadline, "the bridge did not come back");
        n += 1;
        let id = format!("00000000-0000-4000-8000-{n:012}");
        let sent_at = Utc::now();
        match cds_publish(&mut con, &channel, &cds_event(&id, project, n)) {
            1 => {
                delivered.push(id);
                if killed && !gap.is_empty() {
                    after += 1;
                }
            }
            0 => gap.push((sent_at, id)),
            other => panic!("{other} subscribers on a channel of this test's own"),
        }
        if delivered.len() == 100 && !killed {
            assert_eq!(
                kill_by_name(&mut con, &name),
                1,
                "one connection named {name}"
            );
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!gap.is_empty(), "some events were published into the gap");

    eventually("every delivered event stored", || {
        s.query_all(&format!("&project_key={project}")).len() >= delivered.len()
    });
    let stored = s.ids(&format!("&project_key={project}"));
    let unique_stored: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique_stored.len(), stored.len(), "no event stored twice");
    assert_eq!(
        unique_stored,
        delivered.iter().collect::<HashSet<_>>(),
        "exactly the delivered events"
    );
    // CDS's own id, and the payload byte for byte.
    let (_, first) = s.get(&format!("/v2/events/{}", delivered[0]));
    assert_eq!(first["payload"]["if"], "a && b");

    let b = bridge_status(&s);
    assert_eq!(b["state"], "subscribed", "{b}");
    assert_eq!(b["windows_total"], 1, "{b}");
    let w = &b["windows"][0];
    let (start, end) = (time(&w["start"]), time(&w["end"]));
    for (sent_at, id) in &gap {
        assert!(
            start <= *sent_at && *sent_at <= end,
            "{id} published at {sent_at} outside the window {w}"
        );
    }
    assert_eq!(w["reason"], "connection closed", "{w}");
    assert!(time(&b["connected_since"]) >= end);
    assert_eq!(b["messages"]["ingested"], delivered.len(), "{b}");
    assert_eq!(b["messages"]["undecodable"], 0, "{b}");

    let metrics = s.metrics();
    for needle in [
        "cds_events_bridge_gaps_total 1".to_owned(),
        "cds_events_bridge_connected 1".to_owned(),
        format!("cds_events_bridge_ingested_total {}", delivered.len()),
        "cds_events_bridge_gap_seconds_total".to_owned(),
    ] {
        assert!(metrics.contains(&needle), "metrics lack {needle}");
    }
    let logs = s.logs();
    assert!(logs.contains("subscription lost"), "{logs}");
    assert!(logs.contains("subscribed again"), "{logs}");
}

#[test]
fn undecodable_messages_are_counted_and_logged_briefly_and_duplicates_stored_once() {
    let (channel, name) = (unique("cds-events-it-ch"), unique("cds-events-it-bridge"));
    let s = bridged(&channel, &name);
    let mut con = redis();
    eventually("the bridge's subscription", || {
        subscribers(&mut con, &channel) == 1
    });
    let garbage = format!("not json {}", "x".repeat(5000));
    let id = "5b1c7a3e-0d4f-4e8a-9c2b-1a2b3c4d5e6f";
    let event = cds_event(id, "UNDEC", 1);
    for m in [
        garbage.as_str(),
        &event.replace(&format!(r#""id":"{id}","#), ""),
        &event,
        &event,
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(m)
            .query(&mut con)
            .expect("publish");
    }
    eventually("four messages handled", || {
        let m = &bridge_status(&s)["messages"];
        m["ingested"].as_u64().unwrap_or(0)
            + m["duplicates"].as_u64().unwrap_or(0)
            + m["undecodable"].as_u64().unwrap_or(0)
            == 4
    });
    let m = bridge_status(&s)["messages"].clone();
    assert_eq!(
        (m["received"].as_u64(), m["undecodable"].as_u64()),
        (Some(4), Some(2)),
        "{m}"
    );
    assert_eq!(
        (m["ingested"].as_u64(), m["duplicates"].as_u64()),
        (Some(1), Some(1)),
        "{m}"
    );
    assert_eq!(s.ids("&project_key=UNDEC"), vec![id.to_owned()]);
    let logs = s.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("undecodable message"))
        .expect("a warning for the garbage");
    assert!(line.contains("not json xxx"), "{line}");
    assert!(
        line.len() < 1000,
        "a short excerpt, not the message: {line}"
    );
    assert!(
        s.metrics()
            .contains("cds_events_bridge_undecodable_total{reason=\"invalid_event\"} 1")
    );
}

#[test]
fn a_password_never_shows_in_config_status_or_logs() {
    let secret = "hunter2-bridge-secret";
    // `config` prints the URL masked and leaves the password field out.
    let out = Command::new(BIN)
        .args([
            "config",
            "--cds-redis",
            &format!("redis://:{secret}@cds-redis:6379/0"),
        ])
        .env("CDS_EVENTS_BRIDGE__PASSWORD", secret)
        .output()
        .expect("run");
    let text = succeeded(out, "config");
    assert!(
        text.contains("cds_redis_url = \"redis://:***@cds-redis:6379/0\""),
        "{text}"
    );
    assert!(!text.contains(secret), "{text}");
    // A password that looks like a number stays the text it is.
    let out = Command::new(BIN)
        .args(["config", "--cds-redis", "redis://cds-redis"])
        .env("CDS_EVENTS_BRIDGE__PASSWORD", "007")
        .output()
        .expect("run");
    succeeded(out, "config");
    // A bad URL is a clear error at start, masked too.
    let out = Command::new(BIN)
        .args([
            "config",
            "--cds-redis",
            &format!("http://:{secret}@cds-redis"),
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bridge.cds_redis_url") && err.contains("scheme"),
        "{err}"
    );
    assert!(!err.contains(secret), "{err}");
    // This Redis has no such user: the login fails, and the error is shown
    // without the secret. (A password alone would be accepted: the default
    // user of a Redis without ACLs takes any.)
    let s = TestServer::builder()
        .arg("--cds-redis")
        .arg(&format!("redis://nobody:{secret}@127.0.0.1:6379"))
        .env(
            "CDS_EVENTS_BRIDGE__CLIENT_NAME",
            &unique("cds-events-it-pw"),
        )
        .start();
    eventually("the failed login in the status", || {
        bridge_status(&s)["last_error"].is_string()
    });
    let b = bridge_status(&s);
    assert_eq!(b["state"], "reconnecting", "{b}");
    assert!(b["gap_open_since"].is_string(), "{b}");
    assert_eq!(b["redis"], "redis://nobody:***@127.0.0.1:6379", "{b}");
    let shown = format!("{b}\n{}", s.logs());
    assert!(!shown.contains(secret), "{shown}");
}

/// The request CDS's `pushNotifications` sends for a project notification
/// (`engine/api/event_v2`): `http.NewRequest("POST", url, body)` with the
/// JSON of the full event, the notification's auth headers set on it, sent
/// by Go's client. No Content-Type: Go sets none for a bare body. Written
/// here byte for byte as Go's HTTP/1.1 client writes it.
#[test]
fn the_request_a_cds_project_notification_sends_is_accepted_as_is() {
    let s = TestServer::start();
    let token = s.token(&["publish:NOTIF"]);
    let id = "9d5e0a4c-3b2f-4f61-8a7e-6c5d4b3a2f10";
    let body = cds_event(id, "NOTIF", 7);
    let host = s.base.trim_start_matches("http://");
    let request = format!(
        "POST /v2/events HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\nAuthorization: Bearer {token}\r\nAccept-Encoding: gzip\r\n\r\n{body}",
        body.len()
    );
    let mut tcp = std::net::TcpStream::connect(host).expect("connect");
    tcp.set_read_timeout(Some(crate::WAIT)).expect("timeout");
    tcp.write_all(request.as_bytes()).expect("send");
    let answer = read_response(&mut tcp);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&format!("\"id\":\"{id}\"")), "{answer}");
    let (code, stored) = s.get(&format!("/v2/events/{id}"));
    assert_eq!(code, 200);
    assert_eq!(stored["workflow_run_id"], "run-NOTIF");
    assert_eq!(stored["payload"]["job"], "compile <7>");
}

/// One HTTP/1.1 response: the head, then `Content-Length` bytes of body.
fn read_response(tcp: &mut std::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .expect("content-length");
            if buf.len() >= head_end + 4 + length {
                return text;
            }
        }
        let n = tcp.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed mid-response: {text}");
        buf.extend_from_slice(&chunk[..n]);
    }
}
