//! Faults on three instances sharing one PostgreSQL (issue 12, "Faults"):
//! publishers on all three at once, a websocket on one, an SSE reader on
//! another, a webhook receiver; then `kill -9` of one instance (the one
//! leading the webhooks) mid-load, and a restart of PostgreSQL mid-load.
//!
//! PostgreSQL is a private server ([`TempCluster`]): restarting the
//! machine's would fail the other tests running meanwhile.
//!
//! What must hold: every event acknowledged with a 200 is stored once, at
//! the sequence number it was acknowledged with, and nothing is stored that
//! was never sent; the log stays gap-free; while PostgreSQL is away,
//! publishers get 503 with `Retry-After` and a JSON error (nothing else);
//! the kill costs the clients of the other instances nothing; both streams
//! see every sequence number once, in order, without ending; every webhook
//! is delivered, each event under one `webhook-id`, and an event is sent
//! twice only for an attempt in flight at the kill (counted and printed).

use crate::receiver::{Received, Receiver};
use crate::{ADMIN, Lines, TestServer, job_event, read_sse, stream_client};
use cds_events_store::pg::testing::TempCluster;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most webhook calls in flight at once, over the cluster: also the most
/// duplicates a kill may cause.
const IN_FLIGHT: usize = 8;

/// The phases of the run, as publishers see them when an answer comes.
const LOAD: u8 = 0;
const KILLED: u8 = 1;
const PG_DOWN: u8 = 2;
const PG_BACK: u8 = 3;

fn instance(cluster: &TempCluster) -> TestServer {
    TestServer::builder()
        .arg("--postgres")
        .arg(&cluster.url())
        .env("CDS_EVENTS_WEBHOOKS__KEY", crate::postgres::KEY)
        .env("CDS_EVENTS_STORAGE__POSTGRES_POOL_SIZE", "8")
        .env("CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE", "1")
        .env(
            "CDS_EVENTS_WEBHOOKS__RETRY_SCHEDULE",
            "[0s,200ms,500ms,1s,1s,1s,1s,1s,1s,1s,1s,1s]",
        )
        .env("CDS_EVENTS_WEBHOOKS__JITTER", "0")
        .env("CDS_EVENTS_WEBHOOKS__TIMEOUT", "5s")
        // Longer than the outage below (renewals fail while PostgreSQL is
        // away), short enough that a dead instance's claims pass quickly.
        .env("CDS_EVENTS_WEBHOOKS__LEASE", "6s")
        .env(
            "CDS_EVENTS_WEBHOOKS__MAX_IN_FLIGHT_PER_ENDPOINT",
            &IN_FLIGHT.to_string(),
        )
        .start()
}

/// What one publisher saw.
#[derive(Debug, Default)]
struct Published {
    /// Acknowledged with a 200: id → seq.
    acked: HashMap<String, u64>,
    /// Every id ever sent (acknowledged or not).
    sent: HashSet<String>,
    /// 503s, each checked for `Retry-After` and a JSON error, with the phase.
    unavailable: Vec<u8>,
    /// Requests that failed without an answer (the killed instance's).
    cut: usize,
    /// Anything else: (phase, status, body).
    unexpected: Vec<(u8, u16, String)>,
}

/// Publishes batches of 4 events every 100 ms until `stop`, to `targets[0]`
/// and, once an instance is dead, to the next; a batch is sent again (same
/// ids) until it is acknowledged.
fn publisher(
    name: usize,
    targets: Vec<(String, Arc<AtomicBool>)>,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
) -> Published {
    let http = crate::client_with_token(Some(ADMIN));
    let mut out = Published::default();
    let mut target = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let batch: Vec<Value> = (0..4)
            .map(|_| {
                n += 1;
                let mut e = job_event("P", n);
                e["id"] = json!(format!("p{name}-{n}"));
                e
            })
            .collect();
        out.sent.extend(
            batch
                .iter()
                .map(|e| e["id"].as_str().expect("id").to_owned()),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "publisher {name}: a batch never acknowledged"
            );
            let (url, dead) = &targets[target];
            if dead.load(Ordering::SeqCst) {
                target = (target + 1) % targets.len();
                continue;
            }
            match http.post(format!("{url}/v2/events")).json(&batch).send() {
                Err(e) => {
                    // Only the killed instance may drop a request (it is
                    // marked dead before the kill).
                    assert!(dead.load(Ordering::SeqCst), "publisher {name}: {e}");
                    out.cut += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let retry_after = r.headers().get("retry-after").cloned();
                    let at = phase.load(Ordering::SeqCst);
                    let body: Value = r.json().unwrap_or(Value::Null);
                    match status {
                        200 => {
                            for e in body["events"].as_array().expect("events") {
                                out.acked.insert(
                                    e["id"].as_str().expect("id").to_owned(),
                                    e["seq"].as_u64().expect("seq"),
                                );
                            }
                            break;
                        }
                        503 if retry_after.is_some()
                            && body["error"]["code"].is_string()
                            && body["error"]["message"].is_string() =>
                        {
                            out.unavailable.push(at);
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        _ => {
                            out.unexpected.push((at, status, body.to_string()));
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    out
}

/// The Python websocket client on `s`, following the job queue from the
/// start; its lines as they come.
fn websocket(s: &TestServer) -> (Child, Lines) {
    crate::ws::ensure_websocket_client();
    let url = format!("{}/v2/ws?since=0", s.base.replacen("http", "ws", 1));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/clients/ws_client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args([
            url,
            ADMIN.to_owned(),
            "120".to_owned(),
            "1000000".to_owned(),
            json!({"type": "queue"}).to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let lines = Lines::of(child.stdout.take().expect("stdout"));
    (child, lines)
}

/// A query on `url` of the cluster's own database, as strings.
fn sql(url: &str, query: &str) -> Vec<String> {
    let (url, query) = (url.to_owned(), query.to_owned());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            use cds_events_store::pg::tokio_postgres;
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            tokio::spawn(conn);
            client
                .query(&query, &[])
                .await
                .expect("query")
                .iter()
                .filter_map(|r| r.get::<_, Option<String>>(0))
                .collect()
        })
}

fn instance_id(s: &TestServer) -> String {
    let (_, st) = s.get("/mon/status");
    st["instance"].as_str().expect("instance").to_owned()
}

/// Successful webhook calls for job events: (webhook-id, event id).
fn delivered(calls: &[Received]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.status == Some(200) && c.json()["type"] == "RunJobEnded")
        .map(|c| {
            (
                c.header("webhook-id").to_owned(),
                c.json()["id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// An SSE reader of project P's events, from `after`, on its own thread.
struct SseReader {
    seen: Arc<Mutex<Vec<crate::Message>>>,
    ended: Arc<AtomicBool>,
}

impl SseReader {
    fn open(s: &TestServer, after: u64) -> SseReader {
        let resp = stream_client()
            .get(s.url("/v2/events/stream?project_key=P"))
            .header("Last-Event-ID", after.to_string())
            .send()
            .expect("SSE");
        assert_eq!(resp.status(), 200);
        let reader = SseReader {
            seen: Arc::default(),
            ended: Arc::default(),
        };
        let (seen, ended) = (Arc::clone(&reader.seen), Arc::clone(&reader.ended));
        std::thread::spawn(move || {
            read_sse(resp, |m| {
                seen.lock().expect("lock").push(m.clone());
                false
            });
            ended.store(true, Ordering::SeqCst);
        });
        reader
    }

    fn seqs(&self) -> Vec<u64> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|m| m.id)
            .collect()
    }

    fn last_id(&self) -> u64 {
        self.seqs().last().copied().unwrap_or(0)
    }

    /// Waits for `last` (or the end of the stream), checks the stream was
    /// never told to stop, and answers the sequence numbers it saw.
    fn until_end(&self, last: u64) -> Vec<u64> {
        wait_until(
            "an SSE reader to reach the end",
            Duration::from_secs(30),
            || self.last_id() >= last || self.ended.load(Ordering::SeqCst),
        );
        let msgs = self.seen.lock().expect("lock").clone();
        assert!(
            msgs.iter().all(|m| m.event.is_none()),
            "the SSE stream was ended: {:?}",
            msgs.iter().find(|m| m.event.is_some())
        );
        self.seqs()
    }
}

fn wait_until(what: &str, most: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + most;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_instances_survive_a_kill_and_a_postgres_restart_under_load() {
    let started = Instant::now();
    let cluster = TempCluster::start().expect("a private PostgreSQL");
    let mut nodes: Vec<TestServer> = (0..3).map(|_| instance(&cluster)).collect();
    let ids: Vec<String> = nodes.iter().map(instance_id).collect();
    let rx = Receiver::with(|_| Some((200, Duration::from_millis(10))));
    let (status, created) = crate::call(
        &nodes[0].http,
        reqwest::Method::POST,
        &nodes[0].url("/v2/project/P/notification"),
        Some(&json!({"name": "hook", "webhook_url": rx.url,
                     "filters": {"jobs": {"event": ["RunJobEnded"]}}})),
    );
    assert_eq!(status, 201, "{created}");

    // The instance to kill: the one leading the webhooks, so that the lead
    // passes too. The streams are on the other two.
    let mut leader = String::new();
    wait_until(
        "an instance to lead the webhooks",
        Duration::from_secs(20),
        || {
            leader = sql(&cluster.url(), "SELECT leader FROM webhook_state")
                .into_iter()
                .next()
                .unwrap_or_default();
            ids.contains(&leader)
        },
    );
    let victim = ids.iter().position(|i| *i == leader).expect("leader");
    let (ws_node, sse_node) = match victim {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };

    let (mut ws_child, ws_lines) = websocket(&nodes[ws_node]);
    let ws_seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let ws_reader = {
        let seen = Arc::clone(&ws_seen);
        std::thread::spawn(move || {
            for line in ws_lines.0.iter() {
                let msg: Value = serde_json::from_str(&line).unwrap_or(json!({"raw": line}));
                seen.lock().expect("lock").push(msg);
            }
        })
    };
    let sse = SseReader::open(&nodes[sse_node], 0);
    // A stream on the instance to be killed: an in-flight request of its
    // own, resumed on another instance after the kill.
    let cut_stream = SseReader::open(&nodes[victim], 0);

    // Publishers on all three at once.
    let dead: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::new(AtomicBool::new(false))).collect();
    let phase = Arc::new(AtomicU8::new(LOAD));
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..3)
        .map(|p| {
            let targets: Vec<(String, Arc<AtomicBool>)> = (0..3)
                .map(|k| {
                    let k = (p + k) % 3;
                    (nodes[k].base.clone(), Arc::clone(&dead[k]))
                })
                .collect();
            let (phase, stop) = (Arc::clone(&phase), Arc::clone(&stop));
            std::thread::spawn(move || publisher(p, targets, phase, stop))
        })
        .collect();

    std::thread::sleep(Duration::from_secs(3));
    let at_kill = delivered(&rx.received()).len();
    phase.store(KILLED, Ordering::SeqCst);
    dead[victim].store(true, Ordering::SeqCst);
    nodes[victim].kill9();
    wait_until(
        "the killed instance's stream to end",
        Duration::from_secs(10),
        || cut_stream.ended.load(Ordering::SeqCst),
    );
    let cut_at = cut_stream.last_id();
    let resumed = SseReader::open(&nodes[sse_node], cut_at);
    std::thread::sleep(Duration::from_secs(3));

    phase.store(PG_DOWN, Ordering::SeqCst);
    cluster.stop().expect("stop PostgreSQL");
    std::thread::sleep(Duration::from_secs(2));
    cluster.start_again().expect("start PostgreSQL");
    phase.store(PG_BACK, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::SeqCst);

    let mut all = Published::default();
    for p in publishers {
        let one = p.join().expect("publisher");
        all.acked.extend(one.acked);
        all.sent.extend(one.sent);
        all.unavailable.extend(one.unavailable);
        all.cut += one.cut;
        all.unexpected.extend(one.unexpected);
    }
    let survivor = &nodes[ws_node];

    // Answers: 200, or 503 with Retry-After while PostgreSQL was away; a
    // request dropped only by the killed instance.
    assert!(all.unexpected.is_empty(), "{:?}", all.unexpected);
    assert!(
        all.unavailable.iter().all(|p| *p >= PG_DOWN),
        "a 503 before PostgreSQL went away (the kill must cost the others nothing): {:?}",
        all.unavailable
    );
    assert!(
        !all.unavailable.is_empty(),
        "PostgreSQL's restart was seen as 503s"
    );

    // Every acknowledged event stored once, at its acknowledged seq; nothing
    // stored that was never sent; the log without a gap.
    let log = survivor.query_all("");
    let seqs: Vec<u64> = log.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    let mut stored: HashMap<String, u64> = HashMap::new();
    for (seq, e) in &log {
        let id = e["id"].as_str().expect("id").to_owned();
        assert!(
            stored.insert(id.clone(), *seq).is_none(),
            "{id} stored twice"
        );
    }
    for (id, seq) in &all.acked {
        assert_eq!(stored.get(id), Some(seq), "acknowledged {id} at {seq}");
    }
    let jobs: Vec<(u64, String)> = log
        .iter()
        .filter(|(_, e)| e["type"] == "RunJobEnded")
        .map(|(s, e)| (*s, e["id"].as_str().expect("id").to_owned()))
        .collect();
    for (_, id) in &jobs {
        assert!(all.sent.contains(id), "{id} stored but never sent");
    }

    // Each stream saw every sequence number it matches once, in order, and
    // never ended.
    let project_seqs: Vec<u64> = log
        .iter()
        .filter(|(_, e)| e["project_key"] == "P")
        .map(|(s, _)| *s)
        .collect();
    let job_seqs: Vec<u64> = jobs.iter().map(|(s, _)| *s).collect();
    let last_job = *job_seqs.last().expect("jobs");
    let last_p = *project_seqs.last().expect("events of P");
    let sse_seqs = sse.until_end(last_p);
    assert_eq!(sse_seqs, project_seqs, "SSE: every seq once, in order");
    // The cut stream: what it got before the kill, then the rest from
    // another instance, resumed by Last-Event-ID.
    let mut cut_seqs = cut_stream.seqs();
    assert_eq!(cut_seqs.last().copied().unwrap_or(0), cut_at);
    cut_seqs.extend(resumed.until_end(last_p));
    assert_eq!(
        cut_seqs, project_seqs,
        "the killed instance's stream, resumed"
    );
    wait_until(
        "the websocket to reach the end",
        Duration::from_secs(30),
        || {
            ws_seen
                .lock()
                .expect("lock")
                .iter()
                .any(|m| m["seq"].as_u64() == Some(last_job) || m["status"] != "OK")
        },
    );
    let ws_msgs = ws_seen.lock().expect("lock").clone();
    assert!(
        ws_msgs.iter().all(|m| m["status"] == "OK"),
        "the websocket was told: {:?}",
        ws_msgs.iter().find(|m| m["status"] != "OK")
    );
    let ws_seqs: Vec<u64> = ws_msgs.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(ws_seqs, job_seqs, "websocket: every seq once, in order");

    // Every job event delivered, under one webhook-id each; then, once
    // nothing is pending, the duplicates (resends of attempts in flight at
    // the kill) counted.
    let want: HashSet<&String> = jobs.iter().map(|(_, id)| id).collect();
    wait_until("every webhook delivered", Duration::from_secs(60), || {
        let got: HashSet<String> = delivered(&rx.received())
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        want.iter().all(|id| got.contains(*id))
    });
    wait_until("no delivery pending", Duration::from_secs(30), || {
        let (_, page) =
            survivor.get("/v2/project/P/notification/hook/deliveries?status=pending&limit=1");
        page["deliveries"].as_array().is_some_and(|d| d.is_empty())
    });
    let calls = delivered(&rx.received());
    let mut webhook_of: HashMap<&str, &str> = HashMap::new();
    for (wid, id) in &calls {
        let first = *webhook_of.entry(id.as_str()).or_insert(wid.as_str());
        assert_eq!(first, wid.as_str(), "{id} dispatched twice");
    }
    assert_eq!(
        webhook_of.len(),
        want.len(),
        "only stored job events delivered"
    );
    let duplicates = calls.len() - webhook_of.len();
    eprintln!(
        "torture: {} events stored ({} acknowledged, {} sent), {} 503s while PostgreSQL restarted, \
         {} requests cut by the kill, a stream cut at seq {cut_at} and resumed elsewhere, \
         {at_kill} webhooks delivered before the kill, {duplicates} duplicate deliveries, in {:?}",
        jobs.len(),
        all.acked.len(),
        all.sent.len(),
        all.unavailable.len(),
        all.cut,
        started.elapsed()
    );
    assert!(
        duplicates <= IN_FLIGHT,
        "{duplicates} duplicates; at most the {IN_FLIGHT} attempts in flight at the kill"
    );

    let _ = ws_child.kill();
    let _ = ws_child.wait();
    drop(nodes);
    let _ = ws_reader.join();
}
