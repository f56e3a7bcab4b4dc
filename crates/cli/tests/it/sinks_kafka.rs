//! The Kafka sink from the outside: the real server with a `[[sinks]]`
//! kafka sink, a private `tansu` broker behind a TCP proxy of the test's
//! own, and a stock client (kafka-python) reading every event, in order
//! per key, across a cut of every broker connection and across a
//! `kill -9` of the server.
//!
//! Why a proxy: tansu keeps its topics in memory, so restarting it would
//! lose what was sent before and prove nothing. The broker advertises the
//! proxy's address, so every connection the sink opens (bootstrap and
//! partition leader) goes through it; cutting the proxy shuts them all
//! down and refuses new ones until it is restored, as a broker that went
//! away and came back would.

use crate::{TestServer, eventually, job_event, json_lines};
use cds_events_sinks::kafka::testing::Tansu;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Events per batch the sink sends (and per request here).
const BATCH: usize = 50;
/// The sink's topic partitions: runs spread over them, each in order.
const PARTITIONS: i32 = 3;

/// A TCP proxy to `target` that can cut every connection it carries.
struct Proxy {
    address: String,
    down: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Listens now (the broker must advertise this address); forwards to
    /// the target given later to `forward`.
    fn bind() -> (Proxy, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let address = listener.local_addr().expect("address").to_string();
        let proxy = Proxy {
            address,
            down: Arc::new(AtomicBool::new(false)),
            live: Arc::new(Mutex::new(Vec::new())),
        };
        (proxy, listener)
    }

    fn forward(&self, listener: TcpListener, target: String) {
        let (down, live) = (Arc::clone(&self.down), Arc::clone(&self.live));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if down.load(Ordering::SeqCst) {
                    // Refused: closed at once.
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut ends = live.lock().unwrap_or_else(|e| e.into_inner());
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        ends.push(s);
                    }
                }
                drop(ends);
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
    }

    /// Shuts every connection down and refuses new ones.
    fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        let mut ends = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for s in ends.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` in a thread until either end closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        // Until either end is gone; then close both.
        let _ = std::io::copy(&mut from, &mut to);
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// A broker behind a proxy, a topic of the test's own, and the server's
/// configuration with the sink `main` on it.
struct Setup {
    _broker: Tansu,
    proxy: Proxy,
    topic: String,
    _cfg_dir: tempfile::TempDir,
    cfg: PathBuf,
}

fn setup(test: &str) -> Setup {
    let (proxy, listener) = Proxy::bind();
    let broker = Tansu::start_advertising(Some(&proxy.address));
    proxy.forward(listener, broker.address());
    let topic = format!("itsink.{test}.{}", std::process::id());
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let cfg = cfg_dir.path().join("sinks.toml");
    let text = format!(
        "[[sinks]]\nname = \"main\"\nkind = \"kafka\"\nbrokers = [\"{}\"]\ntopic = \"{topic}\"\n\
         key = \"workflow_run_id\"\npartitions = {PARTITIONS}\nbatch = {BATCH}\n\
         reconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\ntimeout = \"2s\"\nconnect_timeout = \"2s\"\n",
        proxy.address
    );
    std::fs::write(&cfg, text).expect("config file");
    Setup {
        _broker: broker,
        proxy,
        topic,
        _cfg_dir: cfg_dir,
        cfg,
    }
}

impl Setup {
    fn server(&self, data: &std::path::Path) -> TestServer {
        TestServer::builder()
            .dir(data)
            .arg("--config")
            .arg(self.cfg.to_str().expect("utf-8 path"))
            .start()
    }

    /// What kafka-python read from the topic (one JSON object per record).
    fn kafka_python(&self, expected: usize) -> Vec<Value> {
        crate::ensure_python_package("kafka", "kafka-python==3.0.12");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/clients/kafka_topic.py"
        );
        let out = Command::new("python3")
            .args([
                script,
                &self.proxy.address,
                &self.topic,
                &expected.to_string(),
                "5",
            ])
            .output()
            .expect("python3");
        json_lines(out, "kafka-python")
    }
}

fn sink(s: &TestServer) -> Value {
    s.sink_status("main")
}

/// Publishes `BATCH` events numbered from `first`, in runs `run-0` …
/// `run-4`, every seventh without a run (keyed by its project): their ids
/// and keys.
fn publish(s: &TestServer, first: u64) -> Vec<(String, String)> {
    let events: Vec<Value> = (first..first + BATCH as u64)
        .map(|i| {
            let mut e = job_event("KAFKA", i);
            e["workflow_run_id"] = if i.is_multiple_of(7) {
                json!("")
            } else {
                json!(format!("run-{}", i % 5))
            };
            e
        })
        .collect();
    let (status, answer) = s.post_json(&json!(events));
    assert_eq!(status, 200, "{answer}");
    let ids = answer["events"].as_array().expect("events");
    ids.iter()
        .zip(&events)
        .map(|(a, e)| {
            let run = e["workflow_run_id"].as_str().unwrap_or_default();
            let key = if run.is_empty() { "KAFKA" } else { run };
            (a["id"].as_str().expect("id").to_owned(), key.to_owned())
        })
        .collect()
}

/// Checks what kafka-python read against what was published: every event,
/// each key's in the order published, each on the partition Kafka's
/// default partitioner gives its key, the id in a header and the body.
/// Answers the number of duplicates.
fn check(got: &[Value], published: &[(String, String)]) -> usize {
    let mut first: HashMap<String, Vec<String>> = HashMap::new();
    let mut seen = HashSet::new();
    for m in got {
        let id = m["id"].as_str().expect("cds-events-id").to_owned();
        assert_eq!(m["body_id"].as_str(), Some(id.as_str()), "the id travels");
        assert_eq!(m["type"], "RunJobEnded");
        assert_eq!(m["partition"], m["default_partition"], "{m}");
        let key = m["key"].as_str().expect("key").to_owned();
        let run = m["body_run"].as_str().unwrap_or_default();
        assert_eq!(key, if run.is_empty() { "KAFKA" } else { run }, "{m}");
        if seen.insert(id.clone()) {
            first.entry(key).or_default().push(id);
        }
    }
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for (id, key) in published {
        expected.entry(key.clone()).or_default().push(id.clone());
    }
    assert_eq!(seen.len(), published.len(), "nothing lost");
    assert_eq!(first, expected, "every key's events in the order published");
    let partitions: HashSet<i64> = got.iter().filter_map(|m| m["partition"].as_i64()).collect();
    assert!(partitions.len() > 1, "runs spread: {partitions:?}");
    got.len() - seen.len()
}

#[test]
fn kafka_python_sees_every_event_in_order_per_key_across_a_cut_broker_connection() {
    let setup = setup("cut");
    let data = tempfile::tempdir().expect("tempdir");
    let s = setup.server(data.path());
    let mut published = Vec::new();
    let mut n = 1;
    for _ in 0..10 {
        published.extend(publish(&s, n));
        n += BATCH as u64;
    }
    // Mid-stream (most likely): every broker connection is cut.
    let sent_before = sink(&s)["sent"].as_u64().unwrap_or(0);
    setup.proxy.cut();
    for _ in 0..10 {
        published.extend(publish(&s, n));
        n += BATCH as u64;
    }
    eventually("the sink sees its broker gone", || {
        sink(&s)["state"] == "disconnected"
    });
    let while_down = sink(&s);
    assert!(while_down["lag_events"].as_u64() > Some(0), "{while_down}");
    setup.proxy.restore();
    for _ in 0..5 {
        published.extend(publish(&s, n));
        n += BATCH as u64;
    }
    eventually("the sink catches up", || {
        let m = sink(&s);
        m["lag_events"] == 0 && m["state"] == "running"
    });
    let got = setup.kafka_python(published.len());
    let duplicates = check(&got, &published);
    println!(
        "sent before the cut: {sent_before} of 500; received {} records, {} distinct, {duplicates} duplicates",
        got.len(),
        published.len()
    );
    assert!(
        duplicates <= BATCH,
        "duplicates only within the last unacknowledged batch: {duplicates}"
    );
}

#[test]
fn kafka_python_sees_every_event_in_order_per_key_across_a_kill_9_of_the_server() {
    let setup = setup("kill");
    let data = tempfile::tempdir().expect("tempdir");
    let mut s = setup.server(data.path());
    let mut published = Vec::new();
    let mut n = 1;
    for _ in 0..20 {
        published.extend(publish(&s, n));
        n += BATCH as u64;
    }
    let sent_before = sink(&s)["sent"].as_u64().unwrap_or(0);
    // Mid-stream: the sink is (most likely) still sending.
    s.kill9();
    let s = setup.server(data.path());
    for _ in 0..20 {
        published.extend(publish(&s, n));
        n += BATCH as u64;
    }
    eventually("the sink catches up", || {
        let m = sink(&s);
        m["lag_events"] == 0 && m["state"] == "running"
    });
    let got = setup.kafka_python(published.len());
    let duplicates = check(&got, &published);
    println!(
        "sent before kill -9: {sent_before} of 1000; received {} records, {} distinct, {duplicates} duplicates",
        got.len(),
        published.len()
    );
    assert!(
        duplicates <= BATCH,
        "duplicates only within the last unacknowledged batch: {duplicates}"
    );
}
