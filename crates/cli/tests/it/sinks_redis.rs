//! The Redis sink from the outside: the real server with a `kind = "redis"`
//! sink publishing on a channel, a run-job channel and a stream of each
//! test's own (on the machine's Redis, 127.0.0.1:6379; the stream deleted
//! after), read by redis-py (a client no one here wrote), across a
//! `kill -9` of the server.

use crate::{Lines, TestServer, eventually, job_event};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const REDIS: &str = "redis://127.0.0.1:6379";
/// Events per batch the sink sends (and per request here).
const BATCH: usize = 50;

/// The keys and channels of one test.
struct Names {
    channel: String,
    run_job: String,
    stream: String,
}

fn names(test: &str) -> Names {
    let n = format!("itsink:{}", crate::unique(test));
    Names {
        channel: format!("{n}:ui"),
        run_job: format!("{n}:job"),
        stream: format!("{n}:stream"),
    }
}

fn config_file(dir: &Path, n: &Names) -> PathBuf {
    let path = dir.join("sinks.toml");
    let text = format!(
        "[[sinks]]\nname = \"cds-ui\"\nkind = \"redis\"\nurl = \"{REDIS}\"\nchannel = \"{}\"\n\
         run_job_channel = \"{}\"\nstream = \"{}\"\nbatch = {BATCH}\nreconnect_min = \"50ms\"\n",
        n.channel, n.run_job, n.stream
    );
    std::fs::write(&path, text).expect("config file");
    path
}

/// redis-py, subscribed (it said `ready`) and reading until it has seen
/// `expected` distinct events on the channel, or nothing for `idle` seconds.
struct RedisPy {
    child: Child,
    lines: Lines,
}

fn redis_py(n: &Names, expected: usize, idle: f64) -> RedisPy {
    crate::ensure_python_package("redis", "redis");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/clients/redis_sink.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .args([REDIS, &n.channel, &n.run_job, &n.stream])
        .args([expected.to_string(), idle.to_string(), "--delete".into()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let lines = Lines::of(child.stdout.take().expect("stdout"));
    assert_eq!(lines.next("redis-py subscribed"), "ready");
    RedisPy { child, lines }
}

impl RedisPy {
    /// Every message it read (channel, run-job channel, then the stream).
    fn finish(mut self) -> Vec<Value> {
        let status = self.child.wait().expect("redis-py");
        assert!(status.success(), "redis-py failed");
        self.lines
            .rest()
            .iter()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

/// Publishes `n` events of project `p` numbered from `first`, every third
/// a `RunJobEnqueued`; their ids and types.
fn publish(s: &TestServer, p: &str, first: u64, n: usize) -> Vec<(String, String)> {
    let batch: Vec<Value> = (first..first + n as u64)
        .map(|i| {
            let mut e = job_event(p, i);
            if i % 3 == 0 {
                e["type"] = json!("RunJobEnqueued");
                e["status"] = json!("Waiting");
            }
            e
        })
        .collect();
    let (status, answer) = s.post_json(&json!(batch));
    assert_eq!(status, 200, "{answer}");
    let ids = answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned());
    ids.zip(
        batch
            .iter()
            .map(|e| e["type"].as_str().expect("type").to_owned()),
    )
    .collect()
}

fn sink(s: &TestServer) -> Value {
    s.sink_status("cds-ui")
}

/// The ids `source` brought, in order.
fn from(got: &[Value], source: &str) -> Vec<String> {
    got.iter()
        .filter(|m| m["source"] == source)
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

/// The first arrival of each id, and how many arrived again.
fn firsts_and_duplicates(ids: &[String]) -> (Vec<String>, usize) {
    let mut seen = HashSet::new();
    let first: Vec<String> = ids.iter().filter(|i| seen.insert(*i)).cloned().collect();
    let dups = ids.len() - first.len();
    (first, dups)
}

#[test]
fn redis_py_reads_every_event_in_order_on_the_channel_the_run_job_channel_and_the_stream() {
    let n = names("order");
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_file(cfg_dir.path(), &n);
    let s = TestServer::builder()
        .arg("--config")
        .arg(cfg.to_str().expect("utf-8 path"))
        .start();
    let reader = redis_py(&n, 6 * BATCH, 10.0);
    let mut published = Vec::new();
    for k in 0..6 {
        published.extend(publish(&s, "RDS", 1 + (k * BATCH) as u64, BATCH));
    }
    let got = reader.finish();
    let all: Vec<String> = published.iter().map(|(id, _)| id.clone()).collect();
    let enqueued: Vec<String> = published
        .iter()
        .filter(|(_, t)| t == "RunJobEnqueued")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(from(&got, "channel"), all, "every event, in order, once");
    assert_eq!(
        from(&got, "run_job"),
        enqueued,
        "RunJobEnqueued on the run-job channel"
    );
    assert_eq!(
        from(&got, "stream"),
        all,
        "the stream holds every event, in order"
    );
    let stream: Vec<&Value> = got.iter().filter(|m| m["source"] == "stream").collect();
    for (m, (_, t)) in stream.iter().zip(&published) {
        assert_eq!(m["type"].as_str(), Some(t.as_str()), "{m}");
    }
    assert!(
        stream
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()),
        "the seq field grows"
    );
    assert_eq!(sink(&s)["sent"], 6 * BATCH);
}

#[test]
fn redis_py_sees_every_event_in_order_across_a_kill_9_of_the_server() {
    let n = names("kill");
    let data = tempfile::tempdir().expect("tempdir");
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_file(cfg_dir.path(), &n);
    let start = || {
        TestServer::builder()
            .dir(data.path())
            .arg("--config")
            .arg(cfg.to_str().expect("utf-8 path"))
            .start()
    };
    let mut s = start();
    // Subscribed straight to Redis, it stays through the server's death.
    let reader = redis_py(&n, 40 * BATCH, 30.0);
    let mut published = Vec::new();
    let mut next = 1;
    for _ in 0..20 {
        published.extend(publish(&s, "KILL", next, BATCH));
        next += BATCH as u64;
    }
    let sent_before = sink(&s)["sent"].as_u64().unwrap_or(0);
    // Mid-stream: the sink is (most likely) still sending.
    s.kill9();
    let s = start();
    for _ in 0..20 {
        published.extend(publish(&s, "KILL", next, BATCH));
        next += BATCH as u64;
    }
    eventually("the sink catches up", || {
        let m = sink(&s);
        m["lag_events"] == 0 && m["state"] == "running"
    });
    let got = reader.finish();
    let all: Vec<String> = published.iter().map(|(id, _)| id.clone()).collect();
    let enqueued: Vec<String> = published
        .iter()
        .filter(|(_, t)| t == "RunJobEnqueued")
        .map(|(id, _)| id.clone())
        .collect();
    let (channel, channel_dups) = firsts_and_duplicates(&from(&got, "channel"));
    let (run_job, run_job_dups) = firsts_and_duplicates(&from(&got, "run_job"));
    let (stream, stream_dups) = firsts_and_duplicates(&from(&got, "stream"));
    println!(
        "sent before kill -9: {sent_before} of 1000; duplicates: channel {channel_dups}, \
         run-job channel {run_job_dups}, stream {stream_dups} (batch {BATCH})"
    );
    assert_eq!(stream, all, "the stream: nothing lost, in order");
    assert_eq!(channel, all, "the channel: nothing lost, in order");
    assert_eq!(
        run_job, enqueued,
        "the run-job channel: nothing lost, in order"
    );
    for dups in [channel_dups, stream_dups, run_job_dups] {
        assert!(
            dups <= BATCH,
            "duplicates only within the last unacknowledged batch: {dups}"
        );
    }
}

#[test]
fn what_a_redis_sink_publishes_another_servers_bridge_stores_once_under_the_same_ids() {
    let n = names("bridge");
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let a_cfg = cfg_dir.path().join("a.toml");
    std::fs::write(
        &a_cfg,
        format!(
            "[[sinks]]\nname = \"to-b\"\nkind = \"redis\"\nurl = \"{REDIS}\"\nchannel = \"{}\"\n\
             run_job_channel = \"\"\nbatch = {BATCH}\n",
            n.channel
        ),
    )
    .expect("config file");
    // B reads the channel as it reads CDS's `event:ui`.
    let b = TestServer::builder()
        .arg("--cds-redis")
        .arg(REDIS)
        .env("CDS_EVENTS_BRIDGE__CHANNEL", &n.channel)
        .env(
            "CDS_EVENTS_BRIDGE__CLIENT_NAME",
            &format!("{}-b", n.channel),
        )
        .start();
    let mut con = redis::Client::open(REDIS)
        .and_then(|c| c.get_connection())
        .expect("the machine's Redis on 127.0.0.1:6379");
    eventually("B's bridge subscribes", || {
        let (_, subscribed): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&n.channel)
            .query(&mut con)
            .expect("NUMSUB");
        subscribed == 1
    });
    let a = TestServer::builder()
        .arg("--config")
        .arg(a_cfg.to_str().expect("utf-8 path"))
        .start();
    let mut published = Vec::new();
    for k in 0..4 {
        published.extend(publish(&a, "BRIDGED", 1 + (k * BATCH) as u64, BATCH));
    }
    let ids: Vec<String> = published.into_iter().map(|(id, _)| id).collect();
    eventually("A's sink sends every event", || {
        a.sink_status("to-b")["sent"] == ids.len()
    });
    eventually("B stores every event", || {
        b.ids("&project_key=BRIDGED").len() >= ids.len()
    });
    let on_a = a.query_all("&project_key=BRIDGED");
    let on_b = b.query_all("&project_key=BRIDGED");
    let b_ids: Vec<&str> = on_b.iter().filter_map(|(_, e)| e["id"].as_str()).collect();
    assert_eq!(b_ids, ids, "each event once, under its id, in order");
    for ((_, from_a), (_, on_b)) in on_a.iter().zip(&on_b) {
        assert_eq!(from_a, on_b, "B stores the event A sent, field for field");
    }
    let bridge = b.get("/mon/status").1["bridge"].clone();
    println!("B's bridge after {} events: {bridge}", ids.len());
}

/// Two servers on one PostgreSQL database, both configured with the same
/// sink (kept alive with the database and the configuration's folder).
struct Pair {
    servers: [TestServer; 2],
    _db: cds_events_store::pg::testing::TempDatabase,
    _cfg_dir: tempfile::TempDir,
}

impl Pair {
    fn start(n: &Names) -> Pair {
        let db = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(cds_events_store::pg::testing::TempDatabase::create())
            .expect("a test database on the local PostgreSQL");
        let cfg_dir = tempfile::tempdir().expect("tempdir");
        let cfg = config_file(cfg_dir.path(), n);
        let start = || {
            TestServer::builder()
                .arg("--postgres")
                .arg(db.url())
                .env("CDS_EVENTS_WEBHOOKS__KEY", crate::postgres::KEY)
                .arg("--config")
                .arg(cfg.to_str().expect("utf-8 path"))
                .start()
        };
        Pair {
            servers: [start(), start()],
            _db: db,
            _cfg_dir: cfg_dir,
        }
    }

    /// Which server sends, once one does and the other stands by.
    fn holder(&self) -> usize {
        let mut found = None;
        eventually("one server sends, the other stands by", || {
            let states: Vec<Value> = self
                .servers
                .iter()
                .map(|s| sink(s)["state"].clone())
                .collect();
            found = states.iter().position(|s| s == "running");
            states.contains(&json!("running")) && states.contains(&json!("standby"))
        });
        found.expect("a sender")
    }
}

/// One sends, the other stands by; the sender `kill -9`ed, the other takes
/// over from the stored position. redis-py sees every event in order,
/// again at most the one batch in flight.
#[test]
fn two_servers_on_one_postgres_send_each_event_from_one_and_hand_over_at_a_kill_9() {
    let n = names("lead");
    let mut pair = Pair::start(&n);
    let first = pair.holder();
    let other = 1 - first;
    let servers = &mut pair.servers;
    let reader = redis_py(&n, 20 * BATCH, 30.0);
    let mut published = Vec::new();
    let mut next = 1;
    for _ in 0..10 {
        published.extend(publish(&servers[other], "LEAD", next, BATCH));
        next += BATCH as u64;
    }
    let sent_before = sink(&servers[first])["sent"].as_u64().unwrap_or(0);
    assert_eq!(
        sink(&servers[other])["sent"],
        0,
        "the standby sends nothing"
    );
    // A replay is the sender's to do: the standby says who holds the sink.
    let (status, err) = crate::call(
        &servers[other].http,
        reqwest::Method::POST,
        &servers[other].url("/v2/sinks/cds-ui/replay?from=1"),
        None,
    );
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "not_leading", "{err}");
    servers[first].kill9();
    eventually("the other server takes over", || {
        sink(&servers[other])["state"] == "running"
    });
    for _ in 0..10 {
        published.extend(publish(&servers[other], "LEAD", next, BATCH));
        next += BATCH as u64;
    }
    eventually("the new sender catches up", || {
        sink(&servers[other])["lag_events"] == 0
    });
    let got = reader.finish();
    let all: Vec<String> = published.iter().map(|(id, _)| id.clone()).collect();
    let (channel, dups) = firsts_and_duplicates(&from(&got, "channel"));
    println!("sent before kill -9: {sent_before} of 500; duplicates: {dups} (batch {BATCH})");
    assert_eq!(channel, all, "nothing lost, in order");
    assert!(dups <= BATCH, "duplicates only within one batch: {dups}");
}

/// A pause asked of the server on standby stops the one that sends (it
/// reads the stored pause every second), and a resume asked there again
/// lets it send what came meanwhile: nothing lost, nothing sent while paused.
#[test]
fn a_pause_asked_of_the_standby_holds_on_the_sender_and_so_does_the_resume() {
    let n = names("pause-lead");
    let pair = Pair::start(&n);
    let holder = pair.holder();
    let (sender, standby) = (&pair.servers[holder], &pair.servers[1 - holder]);
    let reader = redis_py(&n, 2 * BATCH, 30.0);
    let mut published = publish(standby, "PAUSE", 1, BATCH);
    let sent = |s: &TestServer| sink(s)["sent"].as_u64().unwrap_or(0);
    eventually("the first events are sent", || sent(sender) == BATCH as u64);
    let (status, out) = crate::call(
        &standby.http,
        reqwest::Method::POST,
        &standby.url("/v2/sinks/cds-ui/pause"),
        None,
    );
    assert_eq!(status, 200, "{out}");
    eventually("the sender sees the pause", || {
        sink(sender)["state"] == "paused"
    });
    published.extend(publish(standby, "PAUSE", 1 + BATCH as u64, BATCH));
    eventually("the paused sink's lag shows", || {
        sink(sender)["lag_events"] == BATCH
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(sent(sender), BATCH as u64, "nothing is sent while paused");
    let (status, out) = crate::call(
        &standby.http,
        reqwest::Method::POST,
        &standby.url("/v2/sinks/cds-ui/resume"),
        None,
    );
    assert_eq!(status, 200, "{out}");
    eventually("the sender sends what came meanwhile", || {
        sent(sender) == 2 * BATCH as u64 && sink(sender)["state"] == "running"
    });
    let got = reader.finish();
    let all: Vec<String> = published.iter().map(|(id, _)| id.clone()).collect();
    let (channel, dups) = firsts_and_duplicates(&from(&got, "channel"));
    assert_eq!(channel, all, "nothing lost, in order");
    assert_eq!(dups, 0, "a pause repeats nothing");
}
