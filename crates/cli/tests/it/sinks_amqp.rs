//! The RabbitMQ sink from the outside: `[[sinks]]` with `kind = "amqp"` in
//! the server's configuration and a stock AMQP client (pika) reading a
//! durable queue bound to the test's own exchange, across the broker
//! closing the sink's connection and across a `kill -9` of the server.

use crate::{BIN, TestServer, eventually, json_lines, succeeded};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Events per batch the sink sends (and per request here).
const BATCH: usize = 50;

/// An exchange and a queue of this test's own.
fn namespace(test: &str) -> (String, String) {
    let n = crate::unique(test);
    (format!("itsink.{n}"), format!("itsink.{n}.q"))
}

/// A configuration file with an AMQP sink `name` publishing the events of
/// `project` to `exchange`.
fn config_file(dir: &Path, name: &str, exchange: &str, project: &str) -> PathBuf {
    let path = dir.join("sinks.toml");
    let text = format!(
        "[[sinks]]\nname = \"{name}\"\nkind = \"amqp\"\nurl = \"{AMQP}\"\nexchange = \"{exchange}\"\n\
         filter = \"project_key={project}\"\nbatch = {BATCH}\nreconnect_min = \"50ms\"\n\
         reconnect_max = \"1s\"\n"
    );
    std::fs::write(&path, text).expect("config file");
    path
}

/// Runs the pika script: `--setup` (exchange, durable queue, binding), or
/// reads what the queue holds (one JSON object per message).
fn pika(exchange: &str, queue: &str, expected: usize, idle: f64, flag: &str) -> Vec<Value> {
    crate::ensure_python_package("pika", "pika");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/clients/amqp_queue.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .args([
            AMQP,
            exchange,
            queue,
            &expected.to_string(),
            &idle.to_string(),
            flag,
        ])
        .output()
        .expect("python3");
    json_lines(out, "pika")
}

/// Waits until the sink `name` of a new server has taken its starting
/// position: a new sink starts at the log's head, so what is published
/// before that is never sent. One event of another project (filtered
/// out) is published, and the sink is waited for to have passed it.
fn wait_for_the_sinks_start(s: &TestServer, name: &str) {
    s.publish_jobs("WARMUP", 1, 1);
    eventually("the sink takes its start", || {
        let m = s.sink_status(name);
        m["position"].as_u64().is_some_and(|p| p >= 1) && m["position"] == m["head"]
    });
}

/// Closes, with the broker's own CLI, the connections of the sink `name`
/// (the sink names its connection `cds-events sink <name>`); how many.
fn close_sink_connections(name: &str) -> usize {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "-s", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl (as root)");
    let listed = succeeded(out, "rabbitmqctl list_connections");
    let quoted = format!("\"cds-events sink {name}\"");
    let pids: Vec<String> = listed
        .lines()
        .filter(|l| l.contains(&quoted))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    for pid in &pids {
        let closed = Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "cds-events test: cut"])
            .status()
            .expect("rabbitmqctl");
        assert!(closed.success());
    }
    pids.len()
}

/// Checks what pika read: every published event, in order of first
/// arrival, as a persistent JSON message routed `<project>.<Type>`;
/// prints and answers the number of duplicates.
fn check(got: &[Value], published: &[String], project: &str, what: &str) -> usize {
    let mut first = Vec::new();
    let mut seen = HashSet::new();
    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in got {
        let id = m["id"].as_str().expect("message_id").to_owned();
        assert_eq!(m["body_id"].as_str(), Some(id.as_str()), "the id travels");
        assert_eq!(m["routing_key"], format!("{project}.RunJobEnded"));
        assert_eq!(m["type"], "RunJobEnded");
        assert_eq!(
            (&m["delivery_mode"], &m["content_type"]),
            (&json!(2), &json!("application/json"))
        );
        assert!(m["seq"].as_u64().is_some_and(|s| s > 0), "{m}");
        *copies.entry(id.clone()).or_default() += 1;
        if seen.insert(id.clone()) {
            first.push(id);
        }
    }
    let duplicates = got.len() - first.len();
    println!(
        "{what}: received {} messages, {} distinct of {} published, {duplicates} duplicates",
        got.len(),
        first.len(),
        published.len()
    );
    let missing: Vec<usize> = published
        .iter()
        .enumerate()
        .filter(|(_, id)| !seen.contains(*id))
        .map(|(i, _)| i)
        .collect();
    assert!(
        missing.is_empty(),
        "lost: {} events, at {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(first, published, "nothing lost, in order");
    assert!(
        duplicates <= BATCH,
        "duplicates only within the last unacknowledged batch: {duplicates}"
    );
    duplicates
}

#[test]
fn pika_sees_every_event_in_order_across_the_broker_closing_the_sinks_connection() {
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let (exchange, queue) = namespace("cut");
    pika(&exchange, &queue, 0, 0.0, "--setup");
    let name = format!("amqp-cut-{}", std::process::id());
    let cfg = config_file(cfg_dir.path(), &name, &exchange, "CUT");
    let s = TestServer::builder()
        .arg("--config")
        .arg(cfg.to_str().expect("utf-8 path"))
        .start();
    wait_for_the_sinks_start(&s, &name);
    let mut published = Vec::new();
    let mut n = 1;
    for _ in 0..5 {
        published.extend(s.publish_jobs("CUT", n, BATCH));
        n += BATCH as u64;
    }
    eventually("the sink sends its first events", || {
        s.sink_status(&name)["sent"].as_u64().unwrap_or(0) > 0
    });
    // The broker closes the connection while events keep coming.
    let cutter = std::thread::spawn({
        let name = name.clone();
        move || close_sink_connections(&name)
    });
    // (Bounded: rabbitmqctl takes a second or two.)
    for _ in 0..200 {
        if cutter.is_finished() {
            break;
        }
        published.extend(s.publish_jobs("CUT", n, BATCH));
        n += BATCH as u64;
    }
    assert_eq!(cutter.join().expect("cutter"), 1, "the sink's connection");
    let at_cut = s.sink_status(&name);
    println!(
        "connection closed with {} events published, {} sent, {} not yet acknowledged",
        published.len(),
        at_cut["sent"],
        at_cut["lag_events"]
    );
    for _ in 0..10 {
        published.extend(s.publish_jobs("CUT", n, BATCH));
        n += BATCH as u64;
    }
    eventually("the sink catches up", || {
        let m = s.sink_status(&name);
        m["lag_events"] == 0 && m["state"] == "running"
    });
    let status = s.sink_status(&name);
    assert_eq!(status["kind"], "amqp");
    assert!(
        status["failed"].as_u64().is_some_and(|f| f >= 1),
        "the cut was felt and got over: {status}"
    );
    let got = pika(&exchange, &queue, published.len(), 5.0, "--delete");
    check(
        &got,
        &published,
        "CUT",
        "broker connection closed mid-stream",
    );
    // The URL's password is masked in what `config` prints.
    let out = Command::new(BIN)
        .args(["config", "--config", cfg.to_str().expect("utf-8")])
        .output()
        .expect("config");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("amqp://guest:***@127.0.0.1:5672/%2f"),
        "{printed}"
    );
    assert!(!printed.contains("guest:guest"), "{printed}");
}

#[test]
fn pika_sees_every_event_in_order_across_a_kill_9_of_the_server() {
    let data = tempfile::tempdir().expect("tempdir");
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let (exchange, queue) = namespace("kill");
    pika(&exchange, &queue, 0, 0.0, "--setup");
    let name = format!("amqp-kill-{}", std::process::id());
    let cfg = config_file(cfg_dir.path(), &name, &exchange, "KILL");
    let start = || {
        TestServer::builder()
            .dir(data.path())
            .arg("--config")
            .arg(cfg.to_str().expect("utf-8 path"))
            .start()
    };
    let mut s = start();
    wait_for_the_sinks_start(&s, &name);
    let mut published = Vec::new();
    let mut n = 1;
    for _ in 0..20 {
        published.extend(s.publish_jobs("KILL", n, BATCH));
        n += BATCH as u64;
    }
    let sent_before = s.sink_status(&name)["sent"].as_u64().unwrap_or(0);
    // Mid-stream: the sink is (most likely) still sending.
    s.kill9();
    let s = start();
    for _ in 0..20 {
        published.extend(s.publish_jobs("KILL", n, BATCH));
        n += BATCH as u64;
    }
    eventually("the sink catches up", || {
        let m = s.sink_status(&name);
        m["lag_events"] == 0 && m["state"] == "running"
    });
    let got = pika(&exchange, &queue, published.len(), 5.0, "--delete");
    println!("sent before kill -9: {sent_before} of 1000");
    check(&got, &published, "KILL", "kill -9 of the server mid-stream");
}
