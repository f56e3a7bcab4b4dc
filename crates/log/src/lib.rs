//! The durable, ordered event log.
//!
//! [`EventLog`] is the one storage seam: the ingest path appends through it,
//! the query API and every downstream consumer (live streams, webhooks, broker
//! sinks) read through it. Consumers never get called by the ingest path: they
//! watch [`EventLog::head`] and read forward from their own durable position
//! ([`EventLog::read_after`], [`EventLog::consumer_position`]).
//!
//! Backends: [`sqlite::SqliteLog`] (the embedded default) and
//! [`postgres::PgLog`] (several instances sharing one database). Every
//! backend must pass the shared [`conformance`] suite.

pub mod conformance;
pub mod consumer;
pub mod counts;
pub mod pacing;
pub mod postgres;
mod recent;
pub mod sqlite;

pub use consumer::{
    Checkpoint, Consumer, ConsumerError, ConsumerLeads, DurableConsumers, FollowOptions, Lead,
    LedPositions, LogPositions, PositionStore, RetentionHold, follow,
};
pub use counts::{CountQuery, MAX_COUNT_BUCKETS, MAX_COUNT_WINDOW, TypeCount};

use async_trait::async_trait;
use cds_events_model::{EventFilter, FullEvent, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A position in the log. Assigned at commit, strictly increasing in commit
/// order; a reader that has seen `n` never later sees a new event below `n`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A validated event ready to append: what storage indexes and routes it
/// by, and its wire JSON. All of it is made on the caller's task, in the
/// shared form the readers that follow the head keep (`recent.rs`), so that
/// the single writer only binds it and hands it on.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub head: Arc<KnownHead>,
    pub timestamp: Timestamp,
    pub json: Arc<str>,
}

impl From<FullEvent> for NewEvent {
    fn from(event: FullEvent) -> Self {
        NewEvent {
            json: Arc::from(event.to_json()),
            timestamp: event.timestamp,
            head: Arc::new(KnownHead {
                id: event.id,
                event_type: event.event_type,
                project_key: event.project_key,
                workflow_run_id: event.workflow_run_id,
                workflow: event.workflow,
                repository: event.repository,
            }),
        }
    }
}

/// The outcome of appending one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appended {
    pub id: String,
    pub seq: Seq,
    /// The id was already stored: nothing was written, `seq` is the original.
    pub duplicate: bool,
}

/// An event as read back: its position and its full-event JSON, verbatim.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: Seq,
    pub json: Arc<str>,
    /// Its head (id, type, project…) when the writer handed it over with it
    /// (the events a backend keeps in memory, see `recent.rs`); `None` when
    /// read from storage. [`StoredEvent::head`] reads them from `json` then.
    pub known: Option<Arc<KnownHead>>,
}

/// What routes an event (see [`cds_events_model::StoredHead`]: its id,
/// type, project, and the fields a notification may order by), as the
/// appender gave it ([`NewEvent::head`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHead {
    pub id: String,
    pub event_type: cds_events_model::EventType,
    pub project_key: String,
    pub workflow_run_id: String,
    pub workflow: String,
    pub repository: String,
}

impl StoredEvent {
    /// An event read from storage (nothing known but its JSON).
    pub fn new(seq: Seq, json: Arc<str>) -> StoredEvent {
        StoredEvent {
            seq,
            json,
            known: None,
        }
    }

    /// Decodes the stored JSON back into a full event.
    pub fn decode(&self) -> Result<FullEvent, cds_events_model::DecodeError> {
        cds_events_model::decode_event(&self.json, &cds_events_model::Limits::default())
    }

    /// Its head (id, type, project…): what routes it, without decoding the rest.
    /// Free when the writer handed them over; otherwise read from the JSON
    /// (which still scans all of it).
    pub fn head(&self) -> Result<cds_events_model::StoredHead<'_>, cds_events_model::DecodeError> {
        match &self.known {
            Some(k) => Ok(cds_events_model::StoredHead {
                id: std::borrow::Cow::Borrowed(&k.id),
                event_type: k.event_type,
                project_key: std::borrow::Cow::Borrowed(&k.project_key),
                workflow_run_id: std::borrow::Cow::Borrowed(&k.workflow_run_id),
                workflow: std::borrow::Cow::Borrowed(&k.workflow),
                repository: std::borrow::Cow::Borrowed(&k.repository),
            }),
            None => cds_events_model::peek_stored(&self.json),
        }
    }
}

/// Read order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// A filtered, paged read.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub filter: EventFilter,
    /// Exclusive: events after this position in the read order (above it for
    /// `Asc`, below it for `Desc`).
    pub cursor: Option<Seq>,
    pub limit: usize,
    pub order: Order,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            filter: EventFilter::default(),
            cursor: None,
            limit: 100,
            order: Order::Asc,
        }
    }
}

/// One page of a query.
#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// Pass as the next query's cursor; `None` when this page was the last one
    /// available now.
    pub next_cursor: Option<Seq>,
}

/// How much history to keep. `None` means unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_events: Option<u64>,
    /// Events from this sequence number on are kept whatever the limits say:
    /// a consumer still needs them (pending webhook deliveries read their
    /// event from the log when they are sent).
    pub hold_from: Option<Seq>,
}

/// Figures for `/mon/status` and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogStats {
    pub backend: &'static str,
    pub events: u64,
    /// Lowest stored sequence number (0 when empty).
    pub oldest_seq: Seq,
    /// Highest committed sequence number (0 when nothing was ever stored).
    pub head_seq: Seq,
    /// Bytes used on disk by the log (SQLite: the database and its
    /// write-ahead log; PostgreSQL: the log's tables with their indexes).
    pub bytes_on_disk: u64,
}

/// Storage failures. A backend's own errors stay inside it: what callers
/// act on is named here, anything else is [`LogError::Backend`].
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The backend failed; the error is its own (for logs, not for matching).
    #[error("storage error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The store was written by a newer build, which this one cannot read.
    #[error("{} has schema version {found}, this build knows {known}", path.display())]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the log is closed")]
    Closed,
    /// The store stayed locked past its timeout, or its database server is
    /// away; retrying may succeed.
    #[error("the log is busy: {0}")]
    Busy(String),
    /// The disk holding the store is full: nothing of the request was
    /// kept, and it may succeed once space is freed (no restart needed).
    #[error("the storage is full: {0}")]
    Full(String),
    /// A position write under a lead that is no longer the latest: another
    /// instance leads the consumer now, and nothing was written.
    #[error("another instance leads this consumer now")]
    LostLead,
}

/// The event log. Implementations are shared as `Arc<dyn EventLog>`.
#[async_trait]
pub trait EventLog: Send + Sync + fmt::Debug + 'static {
    /// Appends a batch atomically: either every event is committed (or found
    /// already stored by id) or none is. Returns only after the commit, one
    /// outcome per input event, in input order.
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, LogError>;

    /// The event with this id.
    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, LogError>;

    /// A filtered page.
    async fn query(&self, query: Query) -> Result<Page, LogError>;

    /// Up to `limit` events with a sequence number above `after`, in order:
    /// the consumer read path. A position inside a purged range continues at
    /// the oldest kept event.
    async fn read_after(&self, after: Seq, limit: usize) -> Result<Vec<StoredEvent>, LogError>;

    /// The events with these sequence numbers, in the order asked; those no
    /// longer (or not yet) in the log are left out. One round trip for many
    /// point reads (a webhook worker fetching the bodies of a page).
    async fn read_seqs(&self, seqs: Vec<Seq>) -> Result<Vec<StoredEvent>, LogError>;

    /// The last committed sequence number; changes after every commit.
    fn head(&self) -> watch::Receiver<Seq>;

    /// A named consumer's durable position (the last sequence it processed).
    async fn consumer_position(&self, consumer: &str) -> Result<Option<Seq>, LogError>;

    /// Records a named consumer's position.
    async fn set_consumer_position(&self, consumer: &str, seq: Seq) -> Result<(), LogError>;

    /// Whether an operator paused a named consumer (a broker sink): kept
    /// beside its position, so that a pause outlives a restart and holds
    /// on every instance sharing the log. `false` if never paused.
    async fn consumer_paused(&self, consumer: &str) -> Result<bool, LogError>;

    /// Records whether a named consumer is paused (its position, if any,
    /// stays as it is).
    async fn set_consumer_paused(&self, consumer: &str, paused: bool) -> Result<(), LogError>;

    /// The leads of named consumers, for a backend that several instances
    /// share (PostgreSQL): a consumer that must run once between them (a
    /// broker sink) takes its lead there. `None` (SQLite): one process owns
    /// the log, so whatever runs a consumer leads it.
    fn leads(&self) -> Option<&dyn ConsumerLeads> {
        None
    }

    /// Deletes one small batch of the oldest events beyond `retention`.
    /// Returns how many were deleted; call again while it returns `batch`.
    async fn purge(&self, retention: Retention, batch: usize) -> Result<u64, LogError>;

    async fn stats(&self) -> Result<LogStats, LogError>;

    /// Events per time bucket and type in `q`'s window (the console's
    /// overview chart), ordered by bucket then type, without zero counts.
    /// The default reads every event through [`EventLog::query`]; backends
    /// count from their zone map's sequence range instead (see `counts`).
    async fn count(&self, q: CountQuery) -> Result<Vec<TypeCount>, LogError> {
        counts::count_by_query(self, &q).await
    }

    /// Finishes pending writes and closes the store. Later calls fail with
    /// [`LogError::Closed`].
    async fn close(&self) -> Result<(), LogError>;
}
