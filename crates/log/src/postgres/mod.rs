//! The event log on PostgreSQL, for several cds-events instances sharing
//! one database.
//!
//! The plumbing is the store crate's (`cds_events_store::pg`): the pool, the
//! versioned layout (component `log`, `schema.rs`), `LISTEN`. What is here is
//! the log's SQL and the one promise a shared database makes hard: sequence
//! numbers are assigned at commit, strictly increasing in commit order, with
//! no gap, as every reader on every instance sees them — a reader that has
//! seen `n` never later sees a new event below `n`. A `bigserial` does not
//! give that (numbers are taken before commit, transactions commit in any
//! order, a rollback leaves a hole). Here every append transaction first
//! locks the one row of `log_head`, numbers its events after the value it
//! finds, and commits; the lock is released once the commit is visible, so
//! the next appender, on any instance, numbers and commits after it. Each
//! instance group-commits its concurrent appends in one transaction
//! (`writer.rs`), so the cluster-wide serialization costs one round trip per
//! group. Ids are unique: a retried id, on any instance, is found inside the
//! serialized transaction and answered with its original seq.
//!
//! `head()` moves with this instance's commits at once, and with other
//! instances' through `LISTEN cds_events_head` plus a periodic read of
//! `log_head` (`head.rs`); the hub and the webhooks engine follow the log
//! through it, so live fan-out works across instances.
//!
//! A consumer that must run once between the instances (a broker sink)
//! takes its lead here ([`ConsumerLeads`], `lead.rs`): a session advisory
//! lock per consumer, and a term that fences its position writes.
//!
//! Queries walk ordered indexes over windows of sequence numbers
//! (`query.rs`); purges and figures are in `retention.rs`.
//!
//! PostgreSQL's errors never leave this module: the database being away
//! (`cds_events_store::pg::is_unavailable`) is [`LogError::Busy`] (the
//! server answers 503), anything else [`LogError::Backend`].

mod counts;
mod head;
mod lead;
mod query;
mod retention;
mod schema;
mod writer;

pub use lead::session_name as lead_session_name;

use crate::{
    Appended, ConsumerLeads, CountQuery, EventLog, Lead, LogError, LogStats, NewEvent, Page, Query,
    Retention, Seq, StoredEvent, TypeCount,
};
use async_trait::async_trait;
use cds_events_store::Error;
use cds_events_store::pg::deadpool_postgres::Object;
use cds_events_store::pg::{PgOptions, PgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the log behaves on top of the connection settings ([`PgOptions`]:
/// URL, pool size, statement timeout).
#[derive(Debug, Clone)]
pub struct PgLogOptions {
    /// How often `log_head` is read, in case notifications were lost.
    pub head_poll: Duration,
    /// Longest a query walks before answering what it found with a cursor.
    pub query_budget: Duration,
}

impl Default for PgLogOptions {
    fn default() -> Self {
        PgLogOptions {
            head_poll: Duration::from_secs(1),
            query_budget: Duration::from_millis(500),
        }
    }
}

/// The PostgreSQL event log. Open one per process; share it as
/// `Arc<dyn EventLog>`.
#[derive(Debug)]
pub struct PgLog {
    pool: PgPool,
    writer: mpsc::Sender<writer::Msg>,
    head: watch::Receiver<Seq>,
    options: PgLogOptions,
    closed: AtomicBool,
    stop: CancellationToken,
    tasks: TaskTracker,
}

/// The store crate's errors as the log's.
fn log_error(e: Error) -> LogError {
    match e {
        Error::SchemaTooNew { path, found, known } => LogError::SchemaTooNew { path, found, known },
        Error::Closed => LogError::Closed,
        e if e.is_unavailable() => LogError::Busy(e.to_string()),
        other => LogError::Backend(Box::new(other)),
    }
}

impl PgLog {
    /// Connects, creates or migrates the log's tables, and starts the writer
    /// and the head follower.
    pub async fn open(pg: &PgOptions, options: PgLogOptions) -> Result<PgLog, LogError> {
        let pool = PgPool::connect(pg).await.map_err(log_error)?;
        schema::LAYOUT.apply(&pool).await.map_err(log_error)?;
        let start = head::read(&pool).await.map_err(log_error)?;
        let (head_tx, head_rx) = watch::channel(start);
        let head_tx = Arc::new(head_tx);
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let writer = writer::spawn(pool.clone(), Arc::clone(&head_tx), &tasks);
        let follow = head::follow(pg.clone(), pool.clone(), head_tx, options.head_poll);
        let stopped = stop.clone();
        tasks.spawn(async move { stopped.run_until_cancelled(follow).await });
        tasks.close();
        Ok(PgLog {
            pool,
            writer,
            head: head_rx,
            options,
            closed: AtomicBool::new(false),
            stop,
            tasks,
        })
    }

    /// The error to answer: once closed, whatever failed, the log is closed.
    fn error(&self, e: Error) -> LogError {
        if self.closed.load(Ordering::Acquire) {
            LogError::Closed
        } else {
            log_error(e)
        }
    }

    async fn conn(&self) -> Result<Object, LogError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        self.pool.get().await.map_err(|e| self.error(e))
    }

    /// The walk and PostgreSQL's plan for `query`'s first window, for docs
    /// and tests.
    pub async fn explain(&self, query: Query) -> Result<Vec<String>, LogError> {
        let conn = self.conn().await?;
        query::explain(&conn, &query)
            .await
            .map_err(|e| self.error(e))
    }
}

impl Drop for PgLog {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn stored(row: &cds_events_store::pg::tokio_postgres::Row) -> StoredEvent {
    StoredEvent::new(
        Seq(row.get::<_, i64>(0) as u64),
        Arc::from(row.get::<_, String>(1)),
    )
}

#[async_trait]
impl EventLog for PgLog {
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, LogError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(writer::Msg::Append(events, reply))
            .await
            .map_err(|_| LogError::Closed)?;
        match answer.await {
            Ok(r) => r.map_err(|e| self.error(e)),
            Err(_) => Err(LogError::Closed),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, LogError> {
        let conn = self.conn().await?;
        let r: Result<_, Error> = async {
            let st = conn
                .prepare_cached("SELECT seq, body FROM log_events WHERE id = $1")
                .await?;
            Ok(conn.query_opt(&st, &[&id]).await?.as_ref().map(stored))
        }
        .await;
        r.map_err(|e| self.error(e))
    }

    async fn query(&self, q: Query) -> Result<Page, LogError> {
        let conn = self.conn().await?;
        query::run(&conn, &q, self.options.query_budget)
            .await
            .map_err(|e| self.error(e))
    }

    async fn count(&self, q: CountQuery) -> Result<Vec<TypeCount>, LogError> {
        let conn = self.conn().await?;
        counts::run(&conn, &q).await.map_err(|e| self.error(e))
    }

    async fn read_after(&self, after: Seq, limit: usize) -> Result<Vec<StoredEvent>, LogError> {
        let conn = self.conn().await?;
        let r: Result<_, Error> = async {
            let st = conn
                .prepare_cached(
                    "SELECT seq, body FROM log_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .await?;
            let rows = conn
                .query(&st, &[&(after.0 as i64), &(limit as i64)])
                .await?;
            Ok(rows.iter().map(stored).collect())
        }
        .await;
        r.map_err(|e| self.error(e))
    }

    async fn read_seqs(&self, seqs: Vec<Seq>) -> Result<Vec<StoredEvent>, LogError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn().await?;
        let wanted: Vec<i64> = seqs.iter().map(|s| s.0 as i64).collect();
        let r: Result<_, Error> = async {
            let st = conn
                .prepare_cached("SELECT seq, body FROM log_events WHERE seq = ANY($1::bigint[])")
                .await?;
            let found: std::collections::HashMap<u64, StoredEvent> = conn
                .query(&st, &[&wanted])
                .await?
                .iter()
                .map(|r| {
                    let e = stored(r);
                    (e.seq.0, e)
                })
                .collect();
            Ok(seqs
                .iter()
                .filter_map(|s| found.get(&s.0).cloned())
                .collect())
        }
        .await;
        r.map_err(|e| self.error(e))
    }

    fn head(&self) -> watch::Receiver<Seq> {
        self.head.clone()
    }

    async fn consumer_position(&self, consumer: &str) -> Result<Option<Seq>, LogError> {
        let conn = self.conn().await?;
        let r: Result<_, Error> = async {
            let st = conn
                .prepare_cached("SELECT seq FROM log_consumers WHERE name = $1")
                .await?;
            Ok(conn
                .query_opt(&st, &[&consumer])
                .await?
                .map(|r| Seq(r.get::<_, i64>(0) as u64)))
        }
        .await;
        r.map_err(|e| self.error(e))
    }

    async fn set_consumer_position(&self, consumer: &str, seq: Seq) -> Result<(), LogError> {
        let conn = self.conn().await?;
        let r: Result<_, Error> = async {
            let st = conn
                .prepare_cached(
                    "INSERT INTO log_consumers (name, seq, updated_at) VALUES ($1, $2, now())
                     ON CONFLICT (name) DO UPDATE
                     SET seq = excluded.seq, updated_at = excluded.updated_at",
                )
                .await?;
            conn.execute(&st, &[&consumer, &(seq.0 as i64)]).await?;
            Ok(())
        }
        .await;
        r.map_err(|e| self.error(e))
    }

    async fn consumer_paused(&self, consumer: &str) -> Result<bool, LogError> {
        let conn = self.conn().await?;
        let r: Result<_, Error> = async {
            let st = conn
                .prepare_cached("SELECT 1 FROM log_consumer_pauses WHERE name = $1")
                .await?;
            Ok(conn.query_opt(&st, &[&consumer]).await?.is_some())
        }
        .await;
        r.map_err(|e| self.error(e))
    }

    async fn set_consumer_paused(&self, consumer: &str, paused: bool) -> Result<(), LogError> {
        let conn = self.conn().await?;
        let r: Result<_, Error> = async {
            let sql = if paused {
                "INSERT INTO log_consumer_pauses (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"
            } else {
                "DELETE FROM log_consumer_pauses WHERE name = $1"
            };
            let st = conn.prepare_cached(sql).await?;
            conn.execute(&st, &[&consumer]).await?;
            Ok(())
        }
        .await;
        r.map_err(|e| self.error(e))
    }

    fn leads(&self) -> Option<&dyn ConsumerLeads> {
        Some(self)
    }

    async fn purge(&self, retention: Retention, batch: usize) -> Result<u64, LogError> {
        let mut conn = self.conn().await?;
        retention::purge(&mut conn, retention, batch)
            .await
            .map_err(|e| self.error(e))
    }

    async fn stats(&self) -> Result<LogStats, LogError> {
        let conn = self.conn().await?;
        let stats = retention::stats(&conn).await.map_err(|e| self.error(e))?;
        Ok(LogStats {
            head_seq: stats.head_seq.max(*self.head.borrow()),
            ..stats
        })
    }

    /// Commits the appends already queued, stops the writer and the head
    /// follower, then closes the pool. A second close does nothing.
    async fn close(&self) -> Result<(), LogError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (done, finished) = oneshot::channel();
        if self.writer.send(writer::Msg::Close(done)).await.is_ok() {
            let _ = finished.await;
        }
        self.stop.cancel();
        self.tasks.wait().await;
        self.pool.close();
        Ok(())
    }
}

#[async_trait]
impl ConsumerLeads for PgLog {
    async fn lead(&self, consumer: &str, instance: &str) -> Result<Lead, LogError> {
        self.take_lead(consumer, instance).await
    }

    async fn save_position(&self, lead: &Lead, consumer: &str, seq: Seq) -> Result<(), LogError> {
        self.save_led(lead, consumer, seq).await
    }

    async fn holder(&self, consumer: &str) -> Result<Option<String>, LogError> {
        self.lead_holder(consumer).await
    }
}
