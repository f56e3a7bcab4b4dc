//! Torture (issue 16): `kill -9` twenty times at random moments under mixed
//! load, restarting on the same data directory each time.
//!
//! The load: publishers on three threads (a batch cut by a kill is sent
//! again with the same ids until acknowledged), an SSE reader that resumes
//! after each kill from the last sequence number it saw (`Last-Event-ID`),
//! and a notification to a local webhook receiver. What must hold: every
//! acknowledged event is stored exactly once at its acknowledged sequence
//! number, the log has no gap, the SSE reader saw every sequence number
//! exactly once and in order (the README's promise: a resume has no gap and
//! no duplicate), and every event of the notified project reached the
//! receiver at least once (duplicates are allowed: at least once).

use crate::receiver::Receiver;
use crate::{ADMIN, TestServer, job_event, read_sse, stream_client};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const KILLS: usize = 20;
/// The project whose events the webhook gets (one publisher's, at a lower
/// rate: deliveries are one request each).
const NOTIFIED: &str = "H";

fn start(dir: &Path) -> TestServer {
    TestServer::builder()
        .dir(dir)
        // The weaker setting is the one a crash test must prove.
        .arg("--durability")
        .arg("process-crash")
        .env("CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE", "1")
        .env(
            "CDS_EVENTS_WEBHOOKS__RETRY_SCHEDULE",
            "[0s,100ms,200ms,500ms,1s,1s,1s,1s,1s,1s,1s,1s]",
        )
        .env("CDS_EVENTS_WEBHOOKS__JITTER", "0")
        .start()
}

/// A small deterministic generator (xorshift), seeded from the clock and
/// printed, so that a failing run's moments can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Publishes batches of `size` events of project `p` until `stop`; a batch
/// whose answer is lost is sent again (same ids) until acknowledged.
fn publisher(
    w: usize,
    p: &'static str,
    size: u64,
    pause: Duration,
    base: Arc<RwLock<String>>,
    stop: Arc<AtomicBool>,
) -> HashMap<String, u64> {
    let http = crate::client_with_token(Some(ADMIN));
    let mut acked = HashMap::new();
    let mut i = 0u64;
    'batches: while !stop.load(Ordering::SeqCst) {
        let batch: Vec<Value> = (0..size)
            .map(|k| {
                let mut e = job_event(p, i * size + k);
                e["id"] = json!(format!("k{w}-{i}-{k}"));
                e
            })
            .collect();
        i += 1;
        loop {
            let url = format!("{}/v2/events", base.read().expect("lock"));
            match http.post(&url).json(&batch).send() {
                Ok(r) if r.status() == 200 => {
                    // A body cut by the kill: the batch is sent again.
                    let Ok(body) = r.json::<Value>() else {
                        continue;
                    };
                    for a in body["events"].as_array().expect("events") {
                        acked.insert(
                            a["id"].as_str().expect("id").to_owned(),
                            a["seq"].as_u64().expect("seq"),
                        );
                    }
                    break;
                }
                Ok(r) => panic!("publisher {w}: {} {:?}", r.status(), r.text()),
                Err(_) => {
                    // The server is down (or going): try again shortly,
                    // unless the run is over.
                    if stop.load(Ordering::SeqCst) {
                        break 'batches;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        std::thread::sleep(pause);
    }
    acked
}

/// Reads every event over SSE, resuming after each cut from the last
/// sequence number seen, until `stop`; what it saw, in order.
fn sse_reader(base: Arc<RwLock<String>>, seen: Arc<Mutex<Vec<u64>>>, stop: Arc<AtomicBool>) {
    let http = stream_client();
    while !stop.load(Ordering::SeqCst) {
        let last = seen.lock().expect("lock").last().copied().unwrap_or(0);
        let url = format!("{}/v2/events/stream", base.read().expect("lock"));
        let resp = match http
            .get(&url)
            .header("Last-Event-ID", last.to_string())
            .send()
        {
            Ok(r) if r.status() == 200 => r,
            _ => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        read_sse(resp, |m| {
            if let Some(id) = m.id {
                seen.lock().expect("lock").push(id);
            }
            assert!(m.event.is_none(), "the stream was ended: {m:?}");
            stop.load(Ordering::SeqCst)
        });
    }
}

#[test]
fn twenty_kill_9_under_mixed_load_lose_nothing_acknowledged_and_streams_resume_without_gaps() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = start(tmp.path());
    let rx = Receiver::ok();
    let (status, created) = crate::call(
        &s.http,
        reqwest::Method::POST,
        &s.url(&format!("/v2/project/{NOTIFIED}/notification")),
        Some(&json!({"name": "hook", "webhook_url": rx.url})),
    );
    assert_eq!(status, 201, "{created}");

    let base = Arc::new(RwLock::new(s.base.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = [("A", 20, 10), ("B", 20, 10), (NOTIFIED, 5, 50)]
        .into_iter()
        .enumerate()
        .map(|(w, (p, size, pause))| {
            let (base, stop) = (Arc::clone(&base), Arc::clone(&stop));
            std::thread::spawn(move || {
                publisher(w, p, size, Duration::from_millis(pause), base, stop)
            })
        })
        .collect();
    let seen: Arc<Mutex<Vec<u64>>> = Arc::default();
    let stream_stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (base, seen, stop) = (
            Arc::clone(&base),
            Arc::clone(&seen),
            Arc::clone(&stream_stop),
        );
        std::thread::spawn(move || sse_reader(base, seen, stop))
    };

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    for _ in 0..KILLS {
        // Sometimes while the server is still opening and catching up.
        std::thread::sleep(Duration::from_millis(50 + rng.below(1200)));
        s.kill9();
        drop(s);
        s = start(tmp.path());
        *base.write().expect("lock") = s.base.clone();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    let mut acked: HashMap<String, u64> = HashMap::new();
    for p in publishers {
        acked.extend(p.join().expect("publisher"));
    }

    // The log: every acknowledged event once, at its seq; no gap.
    let log = s.query_all("");
    let seqs: Vec<u64> = log.iter().map(|(q, _)| *q).collect();
    let head = seqs.len() as u64;
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "gap-free");
    let mut stored: HashMap<String, u64> = HashMap::new();
    for (seq, e) in &log {
        let id = e["id"].as_str().expect("id").to_owned();
        assert!(
            stored.insert(id.clone(), *seq).is_none(),
            "{id} stored twice"
        );
    }
    for (id, seq) in &acked {
        assert_eq!(stored.get(id), Some(seq), "acknowledged {id} lost or moved");
    }

    // The stream: every sequence number once, in order.
    crate::eventually("the SSE reader to reach the head", || {
        seen.lock().expect("lock").last().copied().unwrap_or(0) >= head
    });
    stream_stop.store(true, Ordering::SeqCst);
    let got = seen.lock().expect("lock").clone();
    assert_eq!(
        got,
        (1..=head).collect::<Vec<_>>(),
        "SSE: every seq once, in order, across {KILLS} resumes"
    );

    // The webhook: every event of the notified project at least once.
    let want: HashSet<&str> = log
        .iter()
        .filter(|(_, e)| e["project_key"] == NOTIFIED && e["type"] == "RunJobEnded")
        .map(|(_, e)| e["id"].as_str().expect("id"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        let calls: Vec<String> = rx
            .received()
            .iter()
            .filter(|c| c.status == Some(200))
            .filter_map(|c| c.json()["id"].as_str().map(str::to_owned))
            .collect();
        let got: HashSet<&str> = calls.iter().map(String::as_str).collect();
        let missing = want.iter().filter(|id| !got.contains(*id)).count();
        if missing == 0 {
            break calls;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} notified events never delivered",
            want.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let once: HashSet<&String> = delivered.iter().collect();
    eprintln!(
        "kill -9 x{KILLS} (seed {seed}): {head} events stored, {} acknowledged; SSE saw all {head} once; \
         {} webhook deliveries for {} notified events ({} repeated after a kill), in {:?}",
        acked.len(),
        delivered.len(),
        want.len(),
        delivered.len() - once.len(),
        started.elapsed()
    );
    drop(s);
    let _ = reader.join();
}
