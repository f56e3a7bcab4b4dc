//! What survives a restart and a crash.

use crate::{TestServer, job_event};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[test]
fn restart_keeps_everything_and_sequence_numbers_continue() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut s = TestServer::builder().dir(tmp.path()).start();
    let (_, a) = s.post_json(&json!([
        job_event("P", 1),
        job_event("P", 2),
        job_event("Q", 3)
    ]));
    let before = s.query_all("");
    let (status, logs) = s.terminate();
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status:?}\n{logs}"
    );
    assert!(logs.contains("event log closed"), "{logs}");
    drop(s);

    let s = TestServer::builder().dir(tmp.path()).start();
    assert_eq!(s.query_all(""), before);
    let (_, b) = s.post_json(&json!(job_event("P", 4)));
    assert_eq!(b["events"][0]["seq"], json!(4));
    let (_, retry) = s.post_json(&json!([job_event("P", 1)]));
    assert_ne!(
        retry["events"][0]["seq"], a["events"][0]["seq"],
        "a fresh id is a new event"
    );
}

/// `kill -9` while clients publish; after a restart every acknowledged event
/// is there exactly once with its acknowledged sequence number, and the log
/// reads back whole and in order.
#[test]
fn kill_9_while_publishing_loses_no_acknowledged_event() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The weaker durability setting is the one the crash test must prove.
    let mut s = TestServer::builder()
        .dir(tmp.path())
        .arg("--durability")
        .arg("process-crash")
        .start();
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut publishers = Vec::new();
    for w in 0..4 {
        let url = s.url("/v2/events");
        let acked = Arc::clone(&acked);
        publishers.push(std::thread::spawn(move || {
            let http = crate::client_with_token(Some(crate::ADMIN));
            for i in 0.. {
                let batch: Vec<_> = (0..50)
                    .map(|k| {
                        let mut e = job_event(&format!("P{w}"), i * 50 + k);
                        e["id"] = json!(format!("w{w}-{i}-{k}"));
                        e
                    })
                    .collect();
                let Ok(r) = http.post(&url).json(&batch).send() else {
                    return;
                };
                if !r.status().is_success() {
                    return;
                }
                let Ok(body) = r.json::<serde_json::Value>() else {
                    return;
                };
                let mut acked = acked.lock().expect("lock");
                for a in body["events"].as_array().expect("events") {
                    acked.insert(
                        a["id"].as_str().expect("id").to_owned(),
                        a["seq"].as_u64().expect("seq"),
                    );
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().expect("lock").len() < 5_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();
    for p in publishers {
        p.join().expect("publisher");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 1_000,
        "the publishers got going ({} acked)",
        acked.len()
    );
    drop(s);

    let s = TestServer::builder().dir(tmp.path()).start();
    let all = s.query_all("");
    let mut ids = HashSet::new();
    let mut last = 0;
    for (seq, ev) in &all {
        assert!(*seq > last, "sequence strictly increasing");
        last = *seq;
        let id = ev["id"].as_str().expect("id");
        assert!(ids.insert(id.to_owned()), "{id} stored twice");
        cds_events_model::decode_event(&ev.to_string(), &Default::default())
            .expect("every stored event decodes");
    }
    let by_id: HashMap<&str, u64> = all
        .iter()
        .map(|(s, e)| (e["id"].as_str().expect("id"), *s))
        .collect();
    for (id, seq) in &acked {
        assert_eq!(
            by_id.get(id.as_str()),
            Some(seq),
            "acknowledged {id} lost or moved"
        );
    }
    // Unacknowledged events may be there (committed, answer lost in the kill),
    // but only whole batches of them.
    assert!(all.len() >= acked.len());
    assert_eq!(all.len() % 50, 0, "batches are all-or-nothing");
    // And the log still takes writes, continuing after the last sequence.
    let (_, next) = s.post_json(&job_event("P", 0));
    assert_eq!(next["events"][0]["seq"], json!(last + 1));
    eprintln!(
        "acked {} events, {} stored after kill -9",
        acked.len(),
        all.len()
    );
}
