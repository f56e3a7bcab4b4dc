//! A feed whose catch-up finds the log away (its database restarting)
//! waits and goes on: the subscriber sees every event once, in order,
//! rather than an error.

use async_trait::async_trait;
use cds_events_hub::{Feed, FeedOptions, Hub};
use cds_events_log::conformance::event;
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_log::{
    Appended, EventLog, LogError, LogStats, NewEvent, Page, Query, Retention, Seq, StoredEvent,
};
use cds_events_model::EventType;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A log whose reads fail with `Busy` while `away` is set (counted in
/// `refused`), as the PostgreSQL log's do while its server restarts.
#[derive(Debug)]
struct Outage {
    inner: SqliteLog,
    away: AtomicBool,
    refused: AtomicUsize,
}

impl Outage {
    fn check(&self) -> Result<(), LogError> {
        if self.away.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(LogError::Busy("connection refused".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl EventLog for Outage {
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, LogError> {
        self.inner.append(events).await
    }
    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, LogError> {
        self.check()?;
        self.inner.get(id).await
    }
    async fn query(&self, query: Query) -> Result<Page, LogError> {
        self.check()?;
        self.inner.query(query).await
    }
    async fn read_after(&self, after: Seq, limit: usize) -> Result<Vec<StoredEvent>, LogError> {
        self.check()?;
        self.inner.read_after(after, limit).await
    }
    async fn read_seqs(&self, seqs: Vec<Seq>) -> Result<Vec<StoredEvent>, LogError> {
        self.check()?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_that_finds_the_log_away_waits_and_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outage = Arc::new(Outage {
        inner: SqliteLog::open(dir.path(), SqliteOptions::default()).expect("open"),
        away: AtomicBool::new(false),
        refused: AtomicUsize::new(0),
    });
    let log: Arc<dyn EventLog> = outage.clone();
    let shutdown = CancellationToken::new();
    let hub = Hub::start(Arc::clone(&log), shutdown.clone());
    let batch: Vec<NewEvent> = (0..5)
        .map(|i| NewEvent::from(event(EventType::RunJobEnded, "P", i)))
        .collect();
    log.append(batch).await.expect("append");
    let mut head = log.head();
    head.wait_for(|h| *h >= Seq(5)).await.expect("head");

    outage.away.store(true, Ordering::SeqCst);
    // A filter's catch-up queries the log from the resume point.
    let every: Arc<dyn cds_events_hub::Matcher> =
        Arc::new(cds_events_model::EventFilter::default());
    let mut feed = Feed::open(&hub, every, Some(Seq(0)), FeedOptions::default())
        .await
        .expect("open");
    let reader = tokio::spawn(async move {
        let mut seqs = Vec::new();
        for _ in 0..5 {
            let e = tokio::time::timeout(Duration::from_secs(20), feed.next())
                .await
                .expect("in time")
                .expect("an event, not an error");
            seqs.push(e.seq.0);
        }
        seqs
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outage.refused.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed tried the log"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    outage.away.store(false, Ordering::SeqCst);
    assert_eq!(reader.await.expect("reader"), vec![1, 2, 3, 4, 5]);
    shutdown.cancel();
}
