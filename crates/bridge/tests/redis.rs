//! The bridge against the machine's Redis (127.0.0.1:6379), on channels of
//! each test's own: what only a real server shows. (The end-to-end tests,
//! through the `cds-events` binary, are in `crates/cli/tests/it/bridge.rs`.)

use cds_events_bridge::{Bridge, BridgeConfig, BridgeStatus, IngestLimits, LinkState};
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_log::{
    Appended, EventLog, LogError, LogStats, NewEvent, Page, Query, Retention, Seq, StoredEvent,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const REDIS: &str = "redis://127.0.0.1:6379";

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "cds-events-bridge-test-{tag}-{}-{nanos}",
        std::process::id()
    )
}

fn message(i: usize) -> String {
    format!(
        r#"{{"id":"00000000-0000-4000-8000-{i:012}","type":"ProjectUpdated","payload":{{"n":{i}}},"project_key":"PROJ","user_id":"u1","username":"alice","user_mail":"","concurrency":"","timestamp":"2026-11-30T10:00:00.5+01:00"}}"#
    )
}

/// A log whose appends wait until the gate opens: a log that cannot keep up.
#[derive(Debug)]
struct Gated {
    inner: SqliteLog,
    open: watch::Receiver<bool>,
}

#[async_trait::async_trait]
impl EventLog for Gated {
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, LogError> {
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        self.inner.append(events).await
    }
    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, LogError> {
        self.inner.get(id).await
    }
    async fn query(&self, query: Query) -> Result<Page, LogError> {
        self.inner.query(query).await
    }
    async fn read_after(&self, after: Seq, limit: usize) -> Result<Vec<StoredEvent>, LogError> {
        self.inner.read_after(after, limit).await
    }
    async fn read_seqs(&self, seqs: Vec<Seq>) -> Result<Vec<StoredEvent>, LogError> {
        self.inner.read_seqs(seqs).await
    }
    fn head(&self) -> watch::Receiver<Seq> {
        self.inner.head()
    }
    async fn consumer_position(&self, consumer: &str) -> Result<Option<Seq>, LogError> {
        self.inner.consumer_position(consumer).await
    }
    async fn set_consumer_position(&self, consumer: &str, seq: Seq) -> Result<(), LogError> {
        self.inner.set_consumer_position(consumer, seq).await
    }
    async fn consumer_paused(&self, consumer: &str) -> Result<bool, LogError> {
        self.inner.consumer_paused(consumer).await
    }
    async fn set_consumer_paused(&self, consumer: &str, paused: bool) -> Result<(), LogError> {
        self.inner.set_consumer_paused(consumer, paused).await
    }
    async fn purge(&self, retention: Retention, batch: usize) -> Result<u64, LogError> {
        self.inner.purge(retention, batch).await
    }
    async fn stats(&self) -> Result<LogStats, LogError> {
        self.inner.stats().await
    }
    async fn close(&self) -> Result<(), LogError> {
        self.inner.close().await
    }
}

async fn until(bridge: &Bridge, what: &str, f: impl Fn(&BridgeStatus) -> bool) -> BridgeStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = bridge.status();
        if f(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn publish(con: &mut redis::aio::MultiplexedConnection, channel: &str, m: &str) -> i64 {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(m)
        .query_async(con)
        .await
        .expect("PUBLISH")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_cannot_keep_up_costs_a_reported_gap_not_an_unbounded_backlog() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (open_tx, open) = watch::channel(false);
    let log = Arc::new(Gated {
        inner: SqliteLog::open(tmp.path(), SqliteOptions::default()).expect("log"),
        open,
    });
    let channel = unique("overflow");
    let bridge = Bridge::new(
        BridgeConfig {
            cds_redis_url: Some(REDIS.into()),
            channel: channel.clone(),
            client_name: unique("name"),
            buffer: 4,
            max_batch: 2,
            reconnect_min: Duration::from_millis(50),
            ..BridgeConfig::default()
        },
        IngestLimits::default(),
    )
    .expect("bridge");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(bridge.clone().run(log.clone(), shutdown.clone()));
    until(&bridge, "the subscription", |s| {
        s.state == LinkState::Subscribed
    })
    .await;

    let mut con = redis::Client::open(REDIS)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let mut delivered = 0;
    for i in 0..40 {
        delivered += publish(&mut con, &channel, &message(i)).await;
    }
    // The writer holds one batch, the buffer four messages: the rest cannot
    // wait anywhere, so the subscription is dropped and a gap opened.
    let s = until(&bridge, "the overflow", |s| s.messages.dropped > 0).await;
    assert!(s.messages.received <= delivered as u64);
    until(&bridge, "the gap to open", |s| s.gap_open_since.is_some()).await;
    let _ = open_tx.send(true);
    let s = until(&bridge, "the subscription back", |s| {
        s.state == LinkState::Subscribed && s.windows_total == 1
    })
    .await;
    assert!(
        s.windows[0].reason.starts_with("buffer full"),
        "{:?}",
        s.windows[0]
    );
    // Everything taken into the buffer is stored; nothing else was kept.
    let s = until(&bridge, "the buffer drained", |s| {
        s.messages.ingested == s.messages.received - s.messages.dropped
    })
    .await;
    assert!(
        s.messages.ingested <= 6,
        "at most a batch and the buffer: {s:?}"
    );
    assert_eq!(
        log.stats().await.expect("stats").events,
        s.messages.ingested
    );

    // After the gap, events flow again.
    assert_eq!(publish(&mut con, &channel, &message(1000)).await, 1);
    let id = "00000000-0000-4000-8000-000000001000";
    let deadline = Instant::now() + Duration::from_secs(20);
    while log.get(id).await.expect("get").is_none() {
        assert!(
            Instant::now() < deadline,
            "the event after the gap was not stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    task.await.expect("bridge task");
    assert_eq!(bridge.status().state, LinkState::Stopped);
}

#[tokio::test]
async fn an_unreachable_redis_opens_a_gap_from_the_start_and_says_why() {
    let tmp = tempfile::tempdir().expect("tmp");
    let log = Arc::new(SqliteLog::open(tmp.path(), SqliteOptions::default()).expect("log"));
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let bridge = Bridge::new(
        BridgeConfig {
            cds_redis_url: Some(format!("redis://:pw-secret@127.0.0.1:{port}")),
            connect_timeout: Duration::from_millis(500),
            ..BridgeConfig::default()
        },
        IngestLimits::default(),
    )
    .expect("bridge");
    let shutdown = CancellationToken::new();
    let started = chrono::Utc::now();
    let task = tokio::spawn(bridge.clone().run(log, shutdown.clone()));
    let s = until(&bridge, "the failure", |s| s.last_error.is_some()).await;
    assert_eq!(s.state, LinkState::Reconnecting);
    let since = s.gap_open_since.expect("a gap is open");
    assert!(
        since <= started + chrono::TimeDelta::seconds(1),
        "{since} vs {started}"
    );
    assert!(s.windows.is_empty(), "not closed yet");
    let shown = format!("{s:?} {}", serde_json::to_string(&s).expect("json"));
    assert!(!shown.contains("pw-secret"), "{shown}");
    shutdown.cancel();
    task.await.expect("bridge task");
}
