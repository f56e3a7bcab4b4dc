//! The peers binary against the machine's NATS (4222) and Redis (6379), a
//! few hundred events each, under a tag of its own that is removed at the
//! end: what it reports sending is what the broker holds.

use std::process::Command;

fn peers(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_peers"))
        .args(args)
        .output()
        .expect("peers runs");
    assert!(
        out.status.success(),
        "peers {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// Deletes the tag's stream and key even when an assertion failed.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_peers"))
            .args(["cleanup", "--tag", &self.0])
            .status();
    }
}

#[test]
fn every_event_sent_reaches_the_broker_and_cleanup_removes_it() {
    let tag = format!("peerssmoke{}", std::process::id());
    let _cleanup = Cleanup(tag.clone());
    let small = ["--events", "400", "--connections", "4", "--tag", &tag];

    // JetStream: async (batches of 100, 64 acks in flight) then one ack at a
    // time; the ordered consumer reads back all 450, in order.
    let r = peers(
        &[
            &[
                "ingest",
                "--to",
                "nats",
                "--batch",
                "100",
                "--in-flight",
                "64",
            ][..],
            &small,
        ]
        .concat(),
    );
    assert_eq!(r["events"], 400);
    let r = peers(&[
        "ingest", "--to", "nats", "--batch", "1", "--events", "50", "--ids", "v4", "--tag", &tag,
    ]);
    assert_eq!(r["events"], 50);
    assert!(
        r["p99_ms"].as_f64().is_some(),
        "single-event acks are timed: {r}"
    );
    let r = peers(&["replay", "--from", "nats", "--events", "450", "--tag", &tag]);
    assert_eq!(r["events"], 450);

    // Redis Streams: XLEN says what arrived.
    let r = peers(&[&["ingest", "--to", "redis", "--batch", "100"][..], &small].concat());
    assert_eq!(r["events"], 400);
    let client = redis::Client::open("redis://127.0.0.1:6379").expect("redis url");
    let mut con = client.get_connection().expect("redis on 6379");
    let key = format!("{tag}:events");
    let len: u64 = redis::cmd("XLEN").arg(&key).query(&mut con).expect("XLEN");
    assert_eq!(len, 400);

    // Bare SQLite: the binary checks the row count itself.
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("ceiling.db");
    let r = peers(
        &[
            &[
                "ingest",
                "--to",
                "sqlite",
                "--batch",
                "100",
                "--db",
                db.to_str().expect("utf-8 path"),
            ][..],
            &small,
        ]
        .concat(),
    );
    assert_eq!(r["events"], 400);

    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_peers"))
            .args(args)
            .output()
            .expect("peers runs")
            .status
            .success()
    };
    assert!(run(&["cleanup", "--tag", &tag]));
    assert!(
        !run(&["replay", "--from", "nats", "--events", "1", "--tag", &tag]),
        "the stream is gone"
    );
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&key)
        .query(&mut con)
        .expect("EXISTS");
    assert_eq!(exists, 0);
}
