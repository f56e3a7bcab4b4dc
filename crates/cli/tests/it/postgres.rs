//! Several `cds-events serve` on one PostgreSQL database (`--postgres`):
//! each test makes a database of its own on the machine's PostgreSQL
//! (`CDS_EVENTS_TEST_POSTGRES`) and drops it at the end.

use crate::{ADMIN, TestServer, job_event, read_sse, stream_client, succeeded};
use cds_events_store::pg::testing::TempDatabase;
use serde_json::{Value, json};
use std::collections::HashSet;

/// A throw-away database (the test itself is not async).
fn database() -> TempDatabase {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(TempDatabase::create())
        .expect("a test database on the local PostgreSQL")
}

/// The webhooks master key every instance of a cluster shares (base64 of
/// 32 bytes).
pub const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn instance(db: &TempDatabase) -> TestServer {
    TestServer::builder()
        .arg("--postgres")
        .arg(db.url())
        .env("CDS_EVENTS_WEBHOOKS__KEY", KEY)
        .start()
}

#[test]
fn an_event_published_on_one_instance_is_queried_and_streamed_on_another() {
    let db = database();
    let a = instance(&db);
    let b = instance(&db);
    let (_, sa) = a.get("/mon/status");
    let (_, sb) = b.get("/mon/status");
    assert_eq!(sa["backend"], json!("postgresql"));
    assert_eq!(sb["backend"], json!("postgresql"));
    assert_eq!(sa["storage"]["backend"], json!("postgresql"));
    assert_ne!(sa["instance"], sb["instance"], "two instances, two ids");

    // A live stream on B, opened before anything is published.
    let sse = stream_client()
        .get(b.url("/v2/events/stream?project_key=P"))
        .header("Last-Event-ID", "0")
        .send()
        .expect("stream on B");
    assert_eq!(sse.status(), 200);
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        read_sse(sse, |m| {
            if m.id.is_some() {
                n += 1;
            }
            n >= 60
        })
    });

    // Publishers on both instances at once.
    let pa = std::thread::spawn({
        let (http, url) = (a.http.clone(), a.url("/v2/events"));
        move || publish(&http, &url, 0)
    });
    let pb = std::thread::spawn({
        let (http, url) = (b.http.clone(), b.url("/v2/events"));
        move || publish(&http, &url, 1000)
    });
    let mut acked: Vec<String> = pa.join().expect("A");
    acked.extend(pb.join().expect("B"));
    assert_eq!(acked.len(), 60);

    // Either instance answers for the whole log, in one order.
    let on_a = a.query_all("&project_key=P");
    let on_b = b.query_all("&project_key=P");
    assert_eq!(on_a, on_b);
    let seqs: Vec<u64> = on_a.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=60).collect::<Vec<u64>>());
    let stored: HashSet<String> = on_a
        .iter()
        .map(|(_, e)| e["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(stored, acked.into_iter().collect::<HashSet<_>>());

    // The stream on B saw every event, A's included, each once, in order.
    let streamed: Vec<u64> = reader
        .join()
        .expect("reader")
        .iter()
        .filter_map(|m| m.id)
        .collect();
    assert_eq!(streamed, seqs);

    // Tokens are shared: one created on A works on B at once, a revoked one
    // is refused there.
    let (status, created) = crate::call(
        &a.http,
        reqwest::Method::POST,
        &a.url("/v2/auth/tokens"),
        Some(&json!({"name": "reader", "grants": ["read:*"]})),
    );
    assert_eq!(status, 201, "{created}");
    let secret = created["token"].as_str().expect("token").to_owned();
    let on_b = crate::client_with_token(Some(&secret));
    assert_eq!(
        crate::call(
            &on_b,
            reqwest::Method::GET,
            &b.url("/v2/events?limit=1"),
            None
        )
        .0,
        200
    );
    let id = created["id"].as_str().expect("id");
    let (status, _) = crate::call(
        &a.http,
        reqwest::Method::DELETE,
        &a.url(&format!("/v2/auth/tokens/{id}")),
        None,
    );
    assert!(status == 200 || status == 204, "revoke: {status}");
    crate::eventually("B to refuse the revoked token", || {
        crate::call(
            &on_b,
            reqwest::Method::GET,
            &b.url("/v2/events?limit=1"),
            None,
        )
        .0 == 401
    });

    // The same id sent to the other instance is the same event.
    let (_, again) = b.post_json(&json!([on_a[0].1.clone()]));
    assert_eq!(again["events"][0]["duplicate"], json!(true), "{again}");
    assert_eq!(again["events"][0]["seq"], json!(1));
}

/// 30 events in batches of 3; the ids acknowledged.
fn publish(http: &reqwest::blocking::Client, url: &str, base: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..10 {
        let batch: Vec<Value> = (0..3).map(|k| job_event("P", base + n * 3 + k)).collect();
        let resp: Value = http
            .post(url)
            .json(&batch)
            .send()
            .expect("publish")
            .json()
            .expect("json");
        for e in resp["events"].as_array().expect("events") {
            ids.push(e["id"].as_str().expect("id").to_owned());
        }
    }
    ids
}

#[test]
fn a_log_on_postgresql_survives_its_instances() {
    let db = database();
    let mut a = instance(&db);
    a.post_json(&json!([job_event("P", 1), job_event("P", 2)]));
    let before = a.query_all("");
    a.terminate();
    let b = instance(&db);
    assert_eq!(b.query_all(""), before);
    let (_, st) = b.get("/mon/status");
    assert_eq!(st["storage"]["head_seq"], json!(2));
    // Nothing of the log was written to the data directory.
    assert!(!b.dir.join("events.db").exists());
    assert!(!b.dir.join("webhooks.db").exists());
    assert!(!b.dir.join("auth.db").exists());
}

#[test]
fn starting_on_postgresql_without_the_shared_webhooks_key_is_a_clear_error() {
    let db = database();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(crate::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--postgres", db.url()])
        .arg("--data-dir")
        .arg(dir.path())
        .env("CDS_EVENTS_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("webhooks.key"), "{err}");
}

#[test]
fn migrate_creates_every_store_then_exits_and_instances_starting_together_share_it() {
    let db = database();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(crate::BIN)
        .args(["migrate", "--postgres", db.url()])
        .arg("--data-dir")
        .arg(dir.path())
        .env("CDS_EVENTS_WEBHOOKS__KEY", KEY)
        .output()
        .expect("run");
    assert!(succeeded(out, "migrate").contains("postgresql"));
    let components = query_strings(&db, "SELECT component FROM cds_events_schema ORDER BY 1");
    assert!(
        components.iter().any(|c| c == "log") && components.iter().any(|c| c == "webhooks"),
        "{components:?}"
    );
    // Three instances started at once (each migrating under the lock)
    // all come up.
    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().expect("tempdir"))
        .collect();
    let mut children: Vec<_> = dirs
        .iter()
        .map(|d| {
            std::process::Command::new(crate::BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--postgres", db.url()])
                .arg("--data-dir")
                .arg(d.path())
                .env("CDS_EVENTS_WEBHOOKS__KEY", KEY)
                .env("CDS_EVENTS_ADMIN_TOKEN", ADMIN)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in &mut children {
        let lines = crate::Lines::of(child.stdout.take().expect("stdout"));
        loop {
            if lines
                .next("an instance to listen")
                .starts_with("listening on")
            {
                break;
            }
        }
    }
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn query_strings(db: &TempDatabase, sql: &str) -> Vec<String> {
    let sql = sql.to_owned();
    let url = db.url().to_owned();
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
                .query(&sql, &[])
                .await
                .expect("query")
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect()
        })
}
