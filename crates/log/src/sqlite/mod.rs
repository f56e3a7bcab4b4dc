//! The embedded default backend: SQLite in WAL mode in a data directory.
//!
//! The plumbing is the store crate's (`cds_events_store`): one writer
//! thread group-commits every append (`writer.rs` says what the commands do),
//! a small pool of read-only connections serves queries concurrently with it
//! (WAL readers never block the writer), and checkpoints run on a thread of
//! their own. What is here is the log's SQL: the layout (`schema.rs`), the
//! writes and the query planner (`query.rs`). SQLite's errors never leave this
//! module: they become [`LogError`]s in `log_error`. What finds a stream's,
//! a run's or an id's events is the log's own, per block of sequence
//! numbers (`blocks.rs`, and the id filter of `ids.rs`).

mod blocks;
mod counts;
mod ids;
mod query;
mod schema;
mod writer;

use crate::recent::Recent;
use crate::{
    Appended, CountQuery, EventLog, LogError, LogStats, NewEvent, Page, Query, Retention, Seq,
    StoredEvent, TypeCount,
};
use async_trait::async_trait;
use cds_events_store::{
    CheckpointOptions, Checkpointer, ConnOptions, Error, ReaderPool, Synchronous, Writer, wal_path,
};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;
use writer::{Cmd, LogWriter};

/// What an acknowledged event survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Every commit is synced to disk before the answer (`synchronous=FULL`):
    /// acknowledged events survive a power loss or a kernel crash.
    #[default]
    PowerLoss,
    /// Commits reach the operating system before the answer but are synced
    /// only at checkpoints (`synchronous=NORMAL`): acknowledged events survive
    /// the process being killed, not the machine losing power.
    ProcessCrash,
}

impl Durability {
    fn synchronous(self) -> Synchronous {
        match self {
            Durability::PowerLoss => Synchronous::Full,
            Durability::ProcessCrash => Synchronous::Normal,
        }
    }

    /// The checkpointer's level. With process-crash durability the operating
    /// system's cache is the promise: a checkpoint need not wait for the disk
    /// (its fsync is what stalled RESTART checkpoints for hundreds of ms).
    /// With power-loss durability, the database is synced before the WAL is
    /// reused.
    fn checkpoint_synchronous(self) -> Synchronous {
        match self {
            Durability::PowerLoss => Synchronous::Full,
            Durability::ProcessCrash => Synchronous::Off,
        }
    }
}

/// How to open the SQLite log.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub durability: Durability,
    /// Read connections in the pool.
    pub readers: usize,
    /// Page cache of the writer, KiB.
    pub writer_cache_kib: i64,
    /// Page cache of each reader, KiB.
    pub reader_cache_kib: i64,
    /// Bytes of the database file each reader reads through a memory map
    /// (0: none, every page read with `pread` and copied). A catch-up from
    /// an old position reads page after page of the file's start, which is
    /// where a map pays (BENCHMARKS.md).
    pub reader_mmap_bytes: i64,
    /// Longest a query walks before answering what it found with a cursor.
    pub query_budget: std::time::Duration,
    /// Bytes of the newest events kept in memory for the consumers that
    /// follow the head (`recent.rs`); 0 reads everything from the database.
    pub recent_bytes: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::default(),
            readers: 4,
            writer_cache_kib: 32 * 1024,
            reader_cache_kib: 8 * 1024,
            reader_mmap_bytes: 2047 << 20,
            query_budget: std::time::Duration::from_millis(500),
            recent_bytes: 32 << 20,
        }
    }
}

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "events.db";

/// The SQLite event log.
#[derive(Debug)]
pub struct SqliteLog {
    path: PathBuf,
    writer: Writer<LogWriter>,
    head: watch::Receiver<Seq>,
    readers: ReaderPool,
    ids: Arc<ids::IdFilter>,
    blocks: Arc<blocks::Blocks>,
    recent: Arc<Recent>,
    query_budget: std::time::Duration,
    checkpointer: Checkpointer,
}

/// The backend's errors as the log's: a busy or closed store and a newer
/// database are named; anything else is the backend's own error, boxed.
fn log_error(e: Error) -> LogError {
    match e {
        Error::Busy(msg) => LogError::Busy(msg),
        Error::Full(msg) => LogError::Full(msg),
        Error::Closed => LogError::Closed,
        Error::SchemaTooNew { path, found, known } => LogError::SchemaTooNew { path, found, known },
        other => LogError::Backend(Box::new(other)),
    }
}

impl SqliteLog {
    /// Opens (creating if needed) the log in `data_dir`.
    pub fn open(data_dir: &Path, opts: SqliteOptions) -> Result<SqliteLog, LogError> {
        std::fs::create_dir_all(data_dir).map_err(|source| LogError::Io {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        Self::open_file(path, opts).map_err(log_error)
    }

    fn open_file(path: PathBuf, opts: SqliteOptions) -> Result<SqliteLog, Error> {
        let conn = cds_events_store::open(
            &path,
            &ConnOptions {
                synchronous: opts.durability.synchronous(),
                cache_kib: Some(opts.writer_cache_kib),
                ..ConnOptions::default()
            },
        )?;
        schema::LAYOUT.apply(&conn)?;
        let blocks = Arc::new(blocks::Blocks::open(&conn)?);
        // Sequence numbers have no gaps and purges cut a prefix: the count
        // is max - min + 1 (no scan of the table).
        let (min_seq, max_seq) = seq_range(&conn)?.unwrap_or((0, 0));
        let count = if max_seq == 0 {
            0
        } else {
            max_seq - min_seq + 1
        };
        let last_seq = schema::LAST_SEQ.get(&conn)?.unwrap_or(0).max(max_seq);
        let ids = Arc::new(ids::IdFilter::load(
            &conn,
            &blocks,
            count as u64,
            min_seq as u64,
        )?);
        // Checkpoints run on their own thread, off the writer's path.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Checkpointer::spawn(
            &path,
            "cds-events-log-checkpoint",
            CheckpointOptions {
                synchronous: opts.durability.checkpoint_synchronous(),
                ..CheckpointOptions::default()
            },
        )?;
        let (head_tx, head_rx) = watch::channel(Seq(last_seq as u64));
        let streams = load_streams(&conn)?;
        let recent = Arc::new(Recent::new(opts.recent_bytes));
        let writer = LogWriter {
            conn,
            streams,
            next_seq: last_seq as u64 + 1,
            count,
            ids: ids.clone(),
            blocks: blocks.clone(),
            recent: recent.clone(),
            head: head_tx,
        };
        let writer = Writer::spawn("cds-events-log-writer", 4096, writer)?;
        let readers = ReaderPool::new(
            &path,
            opts.readers,
            ConnOptions {
                synchronous: opts.durability.synchronous(),
                cache_kib: Some(opts.reader_cache_kib),
                foreign_keys: false,
                temp_store_memory: false,
                mmap_bytes: Some(opts.reader_mmap_bytes),
                ..ConnOptions::default()
            },
        );
        Ok(SqliteLog {
            path,
            writer,
            head: head_rx,
            readers,
            ids,
            blocks,
            recent,
            query_budget: opts.query_budget,
            checkpointer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a command on the writer thread.
    async fn call<T>(&self, make: impl FnOnce(writer::Reply<T>) -> Cmd) -> Result<T, LogError> {
        self.writer.request(make).await.map_err(log_error)
    }

    /// Runs `f` on a pooled read connection, off the async runtime.
    async fn read<T, F>(&self, f: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        self.readers.with(f).await.map_err(log_error)
    }

    /// The query plan SQLite chooses for `query`, for docs and tests.
    pub async fn explain(&self, query: Query) -> Result<Vec<String>, LogError> {
        let blocks = self.blocks.clone();
        self.read(move |c| query::explain(c, &blocks, &query)).await
    }
}

/// The shared filters and entries stay consistent under a panic elsewhere:
/// a poisoned lock is taken as is.
pub(crate) fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Column `i` of `row`, an event's stored JSON, copied once from SQLite's
/// buffer into the shared form readers pass on (through a `String` first
/// it would be copied twice).
pub(crate) fn json_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Arc<str>> {
    row.get_ref(i)?.as_str().map(Arc::from).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    })
}

/// The event stored at `seq`, if the reader's snapshot holds it.
pub(crate) fn stored_at(conn: &Connection, seq: i64) -> Result<Option<StoredEvent>, Error> {
    Ok(conn
        .prepare_cached("SELECT body FROM events WHERE seq = ?1")?
        .query_row([seq], |r| json_at(r, 0))
        .optional()?
        .map(|json| StoredEvent::new(Seq(seq as u64), json)))
}

/// The first and last stored sequence numbers, `None` when the log is
/// empty: two seeks. (`MIN` and `MAX` in one select read the whole table:
/// SQLite seeks for a lone `MIN` or `MAX` only.)
pub(crate) fn seq_range(conn: &Connection) -> Result<Option<(i64, i64)>, Error> {
    let (min, max): (Option<i64>, Option<i64>) = conn
        .prepare_cached(SEQ_RANGE)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(min.zip(max))
}

const SEQ_RANGE: &str = "SELECT (SELECT MIN(seq) FROM events), (SELECT MAX(seq) FROM events)";

fn load_streams(conn: &Connection) -> Result<writer::Streams, Error> {
    let mut out = writer::Streams::new();
    for_each_stream(conn, |id, project, t| {
        out.entry(project).or_default().insert(t.as_str(), id);
    })?;
    Ok(out)
}

/// Every row of `streams`: its id, project key (`""` for global) and type.
/// A type this build no longer knows is skipped: it keeps its rows, but no
/// new event can use it and nothing asks for it.
pub(crate) fn for_each_stream(
    conn: &Connection,
    mut each: impl FnMut(i64, String, cds_events_model::EventType),
) -> Result<(), Error> {
    let mut st = conn.prepare_cached("SELECT id, project_key, type FROM streams")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (id, project, t) = row?;
        if let Some(t) = cds_events_model::EventType::parse(&t) {
            each(id, project, t);
        }
    }
    Ok(())
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (events, placed) = self
            .writer
            .request_grouped(|reply| (events, reply))
            .await
            .map_err(log_error)?;
        Ok(placed
            .into_iter()
            .zip(&events)
            .map(|(p, e)| p.appended(e))
            .collect())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, LogError> {
        let id = id.to_owned();
        let (ids, blocks) = (self.ids.clone(), self.blocks.clone());
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let view = blocks.view(&tx)?;
            ids.get(&view, &tx, &id)
        })
        .await
    }

    async fn query(&self, q: Query) -> Result<Page, LogError> {
        let (blocks, budget) = (self.blocks.clone(), self.query_budget);
        self.read(move |c| query::run(c, &blocks, &q, budget)).await
    }

    async fn count(&self, q: CountQuery) -> Result<Vec<TypeCount>, LogError> {
        self.read(move |c| counts::run(c, &q)).await
    }

    async fn read_after(&self, after: Seq, limit: usize) -> Result<Vec<StoredEvent>, LogError> {
        if let Some(kept) = self.recent.read_after(after, limit) {
            metrics::counter!("cds_events_log_reads_total", "from" => "memory").increment(1);
            return Ok(kept);
        }
        metrics::counter!("cds_events_log_reads_total", "from" => "database").increment(1);
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = st.query_map([after.0 as i64, limit as i64], |r| {
                Ok(StoredEvent::new(
                    Seq(r.get::<_, i64>(0)? as u64),
                    json_at(r, 1)?,
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn read_seqs(&self, seqs: Vec<Seq>) -> Result<Vec<StoredEvent>, LogError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        self.read(move |c| {
            let mut out = Vec::with_capacity(seqs.len());
            for seq in seqs {
                out.extend(stored_at(c, seq.0 as i64)?);
            }
            Ok(out)
        })
        .await
    }

    fn head(&self) -> watch::Receiver<Seq> {
        self.head.clone()
    }

    async fn consumer_position(&self, consumer: &str) -> Result<Option<Seq>, LogError> {
        let name = consumer.to_owned();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT seq FROM consumers WHERE name = ?1")?
                    .query_row([name], |r| r.get::<_, i64>(0))
                    .optional()?
                    .map(|s| Seq(s as u64)),
            )
        })
        .await
    }

    async fn set_consumer_position(&self, consumer: &str, seq: Seq) -> Result<(), LogError> {
        let name = consumer.to_owned();
        self.call(|reply| Cmd::SetConsumer { name, seq, reply })
            .await
    }

    async fn consumer_paused(&self, consumer: &str) -> Result<bool, LogError> {
        let name = consumer.to_owned();
        self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT 1 FROM consumer_pauses WHERE name = ?1")?
                    .exists([name])?,
            )
        })
        .await
    }

    async fn set_consumer_paused(&self, consumer: &str, paused: bool) -> Result<(), LogError> {
        let name = consumer.to_owned();
        self.call(|reply| Cmd::SetPaused {
            name,
            paused,
            reply,
        })
        .await
    }

    async fn purge(&self, retention: Retention, batch: usize) -> Result<u64, LogError> {
        self.call(|reply| Cmd::Purge {
            retention,
            batch,
            reply,
        })
        .await
    }

    async fn stats(&self) -> Result<LogStats, LogError> {
        let head = self.head.borrow().0;
        let wal = wal_path(&self.path);
        let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        self.read(move |c| {
            // Sequence numbers have no gaps and purges cut a prefix.
            let (count, oldest) = seq_range(c)?.map_or((0, 0), |(min, max)| (max - min + 1, min));
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            Ok(LogStats {
                backend: "sqlite",
                events: count as u64,
                oldest_seq: Seq(oldest as u64),
                head_seq: Seq(head),
                bytes_on_disk: (pages * page_size) as u64 + wal_bytes,
            })
        })
        .await
    }

    async fn close(&self) -> Result<(), LogError> {
        self.checkpointer.stop().await;
        let r = self.writer.close().await.map_err(log_error);
        self.readers.close();
        match r {
            Err(LogError::Closed) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_range_is_two_seeks_not_a_scan() {
        let conn = Connection::open_in_memory().expect("open");
        schema::LAYOUT.apply(&conn).expect("schema");
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {SEQ_RANGE}"))
            .expect("prepare")
            .query_map([], |r| r.get(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            plan.iter().filter(|l| *l == "SEARCH events").count(),
            2,
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|l| l.starts_with("SCAN events")),
            "{plan:?}"
        );
    }
}
