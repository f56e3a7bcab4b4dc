use super::write_loop;
use crate::message::IngestLimits;
use crate::status::Shared;
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_log::{EventLog, Seq};
use spy_log::Spy;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

/// A log that records the size of each append and refuses the first few.
mod spy_log {
    use cds_events_log::{
        Appended, EventLog, LogError, LogStats, NewEvent, Page, Query, Retention, Seq, StoredEvent,
    };
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::watch;

    #[derive(Debug)]
    pub struct Spy {
        pub inner: Box<dyn EventLog>,
        pub batches: Mutex<Vec<usize>>,
        pub refuse: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl EventLog for Spy {
        async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, LogError> {
            if self
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(LogError::Busy("refused by the test".into()));
            }
            self.batches
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(events.len());
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
}

fn message(i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"00000000-0000-4000-8000-{i:012}","type":"ProjectUpdated","payload":{{"n":{i}}},"project_key":"PROJ","user_id":"u1","username":"alice","user_mail":"","concurrency":"","timestamp":"2026-11-30T10:00:00.5+01:00"}}"#
    )
    .into_bytes()
}

fn spy(dir: &std::path::Path, refuse: usize) -> Arc<Spy> {
    let inner = SqliteLog::open(dir, SqliteOptions::default()).expect("open log");
    Arc::new(Spy {
        inner: Box::new(inner),
        batches: Default::default(),
        refuse: refuse.into(),
    })
}

/// Runs the writer over what `messages` holds, then lets it finish.
async fn drain(log: Arc<Spy>, messages: Vec<Vec<u8>>, max_batch: usize) -> Arc<Shared> {
    let shared = Arc::new(Shared::new("r".into(), "c".into(), 4));
    let (tx, rx) = tokio::sync::mpsc::channel(messages.len().max(1));
    for m in messages {
        tx.try_send(m).expect("room");
    }
    drop(tx);
    let done = CancellationToken::new();
    let l: Arc<dyn EventLog> = log;
    write_loop(
        rx,
        l,
        IngestLimits::default(),
        max_batch,
        Arc::clone(&shared),
        done,
    )
    .await;
    shared
}

#[tokio::test]
async fn a_burst_already_buffered_becomes_a_few_bounded_batches() {
    let tmp = tempfile::tempdir().expect("tmp");
    let log = spy(tmp.path(), 0);
    let shared = drain(Arc::clone(&log), (0..1200).map(message).collect(), 500).await;
    assert_eq!(*log.batches.lock().expect("lock"), vec![500, 500, 200]);
    assert_eq!(shared.ingested.load(Ordering::Relaxed), 1200);
    assert_eq!(log.stats().await.expect("stats").events, 1200);
}

#[tokio::test]
async fn an_event_seen_twice_is_stored_once_and_counted_as_a_duplicate() {
    let tmp = tempfile::tempdir().expect("tmp");
    let log = spy(tmp.path(), 0);
    let shared = drain(
        Arc::clone(&log),
        vec![message(1), message(2), message(1)],
        500,
    )
    .await;
    let snap = shared.snapshot().messages;
    assert_eq!((snap.ingested, snap.duplicates), (2, 1));
    assert_eq!(log.stats().await.expect("stats").head_seq, Seq(2));
}

#[tokio::test]
async fn undecodable_messages_are_counted_and_skipped_not_fatal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let log = spy(tmp.path(), 0);
    let shared = drain(
        Arc::clone(&log),
        vec![
            b"garbage".to_vec(),
            message(1),
            br#"{"type":"ProjectUpdated","project_key":"P"}"#.to_vec(),
            message(2),
        ],
        500,
    )
    .await;
    let snap = shared.snapshot().messages;
    assert_eq!((snap.undecodable, snap.ingested), (2, 2));
    assert!(
        log.get("00000000-0000-4000-8000-000000000002")
            .await
            .expect("get")
            .is_some()
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_append_is_retried_until_the_log_takes_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let log = spy(tmp.path(), 3);
    let shared = drain(Arc::clone(&log), (0..10).map(message).collect(), 500).await;
    assert_eq!(log.refuse.load(Ordering::SeqCst), 0, "refused three times");
    assert_eq!(*log.batches.lock().expect("lock"), vec![10]);
    assert_eq!(shared.ingested.load(Ordering::Relaxed), 10);
}
