//! Torture (issue 16): the disk fills up during ingest.
//!
//! The data directory is a small tmpfs of its own, filled by a ballast file
//! while publishers run. What must hold: a publish that cannot be stored
//! gets 507 `insufficient_storage` with `Retry-After` and a JSON error
//! (nothing else), queries still answer, nothing acknowledged is lost, the
//! database passes `PRAGMA integrity_check`, and once the ballast is removed
//! ingest works again by itself, without a restart.

use crate::{TestServer, job_event, succeeded};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped
/// (whatever happened in between).
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (and why) when this machine refuses the mount (not root, no
    /// `CAP_SYS_ADMIN`).
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let parent = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dir = parent.path().join("small");
        std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs {
            dir,
            _parent: parent,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a server being killed): detach it now, freed
            // once the last file closes.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Writes `path` until the filesystem has no room left; its size.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("ballast");
    let chunk = vec![0x5a_u8; 256 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = f.sync_all();
    written
}

/// `PRAGMA integrity_check` on a stopped server's database, by Python's
/// sqlite3 (an outside reader).
fn integrity_check(db: &Path) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])",
        ])
        .arg(db)
        .output()
        .expect("python3");
    succeeded(out, "python3's sqlite3").trim().to_owned()
}

/// What publishing one batch got.
enum Outcome {
    Acked(Vec<(String, u64)>),
    Full,
}

fn publish(s: &TestServer, batch: &[Value]) -> Outcome {
    let r = s
        .http
        .post(s.url("/v2/events"))
        .json(batch)
        .send()
        .expect("an answer, full disk or not");
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").cloned();
    let body: Value = r.json().unwrap_or(Value::Null);
    match status {
        200 => Outcome::Acked(
            body["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| {
                    (
                        e["id"].as_str().expect("id").to_owned(),
                        e["seq"].as_u64().expect("seq"),
                    )
                })
                .collect(),
        ),
        507 => {
            assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
            assert!(body["error"]["message"].is_string(), "{body}");
            assert!(retry_after.is_some(), "507 without Retry-After");
            Outcome::Full
        }
        other => panic!("a publish on a full disk answered {other}: {body}"),
    }
}

fn batch(round: u64) -> Vec<Value> {
    (0..100)
        .map(|k| {
            let mut e = job_event("P", round * 100 + k);
            e["id"] = json!(format!("disk-{round}-{k}"));
            e
        })
        .collect()
}

#[test]
fn a_full_disk_refuses_with_507_keeps_every_acknowledged_event_and_recovers_alone() {
    let started = Instant::now();
    let fs = match Tmpfs::mount("24m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_…: cannot mount a tmpfs here ({why})");
            return;
        }
    };
    // The server's stderr on the small disk too: a log line that cannot be
    // written must not take the writer down with it.
    let server = fs.dir.join("server");
    let s = TestServer::builder().dir(&server).start();
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut round = 0u64;
    let mut next = || {
        round += 1;
        batch(round)
    };
    for _ in 0..5 {
        match publish(&s, &next()) {
            Outcome::Acked(a) => acked.extend(a),
            Outcome::Full => panic!("full before the ballast"),
        }
    }

    // Fill the disk, then publish until refused, long enough for the
    // server's log lines to find no room either.
    let ballast = fs.dir.join("ballast");
    let ballast_bytes = fill(&ballast);
    let mut refused = 0;
    let mut acked_while_full = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while refused < 40 {
        assert!(
            Instant::now() < deadline,
            "no 507 on a full disk ({acked_while_full} batches acknowledged)"
        );
        match publish(&s, &next()) {
            Outcome::Acked(a) => {
                acked_while_full += 1;
                acked.extend(a);
            }
            Outcome::Full => refused += 1,
        }
    }
    // Reads need no room.
    let (status, page) = s.get("/v2/events?project_key=P&limit=10");
    assert_eq!(status, 200, "a query on a full disk: {page}");
    // The other stores say the same: a notification, a token.
    for (path, body) in [
        (
            "/v2/project/P/notification",
            json!({"name": "hook", "webhook_url": "https://example.org/hook"}),
        ),
        (
            "/v2/auth/tokens",
            json!({"name": "t", "grants": ["read:*"]}),
        ),
    ] {
        let (status, answer) =
            crate::call(&s.http, reqwest::Method::POST, &s.url(path), Some(&body));
        assert_eq!(status, 507, "{path} on a full disk: {answer}");
        assert_eq!(answer["error"]["code"], "insufficient_storage", "{answer}");
    }
    // A while full: the checkpointers fail every pass (ten a second), and
    // say so once each.
    std::thread::sleep(Duration::from_secs(1));
    let warned = s.logs().matches("checkpoint failed").count();
    assert!(
        warned <= 3,
        "{warned} checkpoint warnings in a second\n{}",
        s.logs_tail(10)
    );

    // Free the space: ingest resumes by itself.
    std::fs::remove_file(&ballast).expect("remove the ballast");
    let mut resumed_after = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "ingest did not resume once space was freed ({resumed_after} refusals since)\n{}",
            s.logs_tail(20)
        );
        match publish(&s, &next()) {
            Outcome::Acked(a) => {
                acked.extend(a);
                break;
            }
            Outcome::Full => {
                resumed_after += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    for _ in 0..5 {
        match publish(&s, &next()) {
            Outcome::Acked(a) => acked.extend(a),
            Outcome::Full => panic!("refused again after the space was freed"),
        }
    }

    // Every acknowledged event once, at its sequence number; gap-free.
    let check = |s: &TestServer| {
        let all = s.query_all("");
        let seqs: Vec<u64> = all.iter().map(|(q, _)| *q).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "gap-free"
        );
        let stored: HashMap<String, u64> = all
            .iter()
            .map(|(q, e)| (e["id"].as_str().expect("id").to_owned(), *q))
            .collect();
        assert_eq!(stored.len(), all.len(), "an id stored twice");
        for (id, seq) in &acked {
            assert_eq!(stored.get(id), Some(seq), "acknowledged {id} lost or moved");
        }
        all.len()
    };
    let stored = check(&s);

    // No corruption: the files pass SQLite's own check, and a restart
    // reads the same log back.
    let mut s = s;
    let (status, logs) = s.terminate();
    assert!(status.success(), "clean stop: {status:?}\n{logs}");
    drop(s);
    for db in ["events.db", "auth.db", "webhooks.db"] {
        let path = server.join("data").join(db);
        assert!(
            path.exists(),
            "{} is where the server kept it",
            path.display()
        );
        assert_eq!(integrity_check(&path), "ok", "{db}");
    }
    let s = TestServer::builder().dir(&server).start();
    assert_eq!(check(&s), stored);
    drop(s);
    eprintln!(
        "disk full: {} events acknowledged ({acked_while_full} batches of them after the ballast of {} MiB), \
         {refused} refusals with 507, {resumed_after} more before the freed space was used, \
         {warned} checkpoint warnings while full, in {:?}",
        acked.len(),
        ballast_bytes >> 20,
        started.elapsed()
    );
}

/// The disk fills while webhook attempts are in flight: their results
/// cannot be recorded. The worker holds those deliveries and records them
/// again until the disk has room, instead of sending them again and again
/// (each resend failing to record in turn: thousands of calls a second to
/// the endpoint, and as many error lines). Once space is freed, every event
/// is delivered.
#[test]
fn a_full_disk_during_webhook_attempts_holds_them_instead_of_resending() {
    let fs = match Tmpfs::mount("24m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!(
                "SKIPPED a_full_disk_during_webhook_attempts_…: cannot mount a tmpfs here ({why})"
            );
            return;
        }
    };
    let s = TestServer::builder()
        .dir(&fs.dir)
        .env("CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE", "1")
        .start();
    // Slow answers: the results come back once the disk is full.
    let rx = crate::receiver::Receiver::with(|_| Some((200, Duration::from_millis(1500))));
    let (status, out) = crate::call(
        &s.http,
        reqwest::Method::POST,
        &s.url("/v2/project/P/notification"),
        Some(&json!({"name": "hook", "webhook_url": rx.url})),
    );
    assert_eq!(status, 201, "{out}");
    let events = batch(1);
    assert!(matches!(publish(&s, &events), Outcome::Acked(_)));
    rx.wait_for(1, Duration::from_secs(20));
    let ballast = fs.dir.join("ballast");
    fill(&ballast);
    std::thread::sleep(Duration::from_secs(6));
    let while_full = rx.count();
    // Each delivery is sent at most a few times while its result waits.
    assert!(
        while_full <= 3 * events.len(),
        "{while_full} calls to the endpoint for {} deliveries while the disk was full\n{}",
        events.len(),
        s.logs_tail(10)
    );
    std::fs::remove_file(&ballast).expect("remove the ballast");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got: std::collections::HashSet<String> = rx
            .received()
            .iter()
            .filter_map(|r| r.json()["id"].as_str().map(str::to_owned))
            .collect();
        if events
            .iter()
            .all(|e| got.contains(e["id"].as_str().expect("id")))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events delivered once space was freed",
            got.len(),
            events.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Held, not resent: an endpoint called twice for the same delivery is
    // the exception (a lease that ended while its result waited).
    let calls = rx.count();
    eprintln!(
        "disk full during webhook attempts: {while_full} calls for {} deliveries while full, {calls} in all",
        events.len()
    );
    assert!(
        calls <= events.len() + events.len() / 10,
        "{calls} calls for {} deliveries: resent instead of held",
        events.len()
    );
}
