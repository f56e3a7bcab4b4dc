//! The embedded default backend: SQLite in WAL mode in a data directory.
//!
//! One writer thread ([`writer`]) group-commits every append; a small pool of
//! read-only connections serves queries concurrently with it (WAL readers
//! never block the writer).

mod query;
mod schema;
mod writer;

use crate::{
    Appended, EventLog, LogError, LogStats, NewEvent, Page, Query, Retention, Seq, StoredEvent,
};
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use writer::{Cmd, Writer};

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
    fn synchronous(self) -> &'static str {
        match self {
            Durability::PowerLoss => "FULL",
            Durability::ProcessCrash => "NORMAL",
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
    /// Longest a query walks before answering what it found with a cursor.
    pub query_budget: std::time::Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            durability: Durability::default(),
            readers: 4,
            writer_cache_kib: 32 * 1024,
            reader_cache_kib: 8 * 1024,
            query_budget: std::time::Duration::from_millis(500),
        }
    }
}

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "events.db";

/// The SQLite event log.
#[derive(Debug)]
pub struct SqliteLog {
    path: PathBuf,
    tx: mpsc::Sender<Cmd>,
    head: watch::Receiver<Seq>,
    readers: Arc<Readers>,
    query_budget: std::time::Duration,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<
        Option<(
            Arc<std::sync::atomic::AtomicBool>,
            std::thread::JoinHandle<()>,
        )>,
    >,
}

#[derive(Debug)]
struct Readers {
    path: PathBuf,
    cache_kib: i64,
    synchronous: &'static str,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    fn open_one(&self) -> Result<Connection, LogError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.pragma_update(None, "cache_size", -self.cache_kib)?;
        conn.pragma_update(None, "synchronous", self.synchronous)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    /// Runs `f` on a pooled read connection, off the async runtime.
    async fn with<T, F>(self: &Arc<Self>, f: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, LogError> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| LogError::Closed)?;
        let conn = self.idle.lock().map_err(|_| LogError::Closed)?.pop();
        let me = Arc::clone(self);
        let (conn, r) = tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(c) => c,
                None => match me.open_one() {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                },
            };
            let r = f(&conn);
            (Some(conn), r)
        })
        .await
        .map_err(|e| LogError::Storage(format!("reader task failed: {e}")))?;
        if let (Some(conn), Ok(mut idle)) = (conn, self.idle.lock()) {
            idle.push(conn);
        }
        r
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl SqliteLog {
    /// Opens (creating if needed) the log in `data_dir`.
    pub fn open(data_dir: &Path, opts: SqliteOptions) -> Result<SqliteLog, LogError> {
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open(&path)?;
        schema::configure(&conn, opts.durability.synchronous(), opts.writer_cache_kib)?;
        conn.execute_batch(schema::SCHEMA)?;
        match schema::meta_get(&conn, "schema_version")? {
            None => schema::meta_set(&conn, "schema_version", schema::SCHEMA_VERSION)?,
            Some(v) if v == schema::SCHEMA_VERSION => {}
            Some(v) => {
                return Err(LogError::Storage(format!(
                    "{} has schema version {v}, this build knows {}",
                    path.display(),
                    schema::SCHEMA_VERSION
                )));
            }
        }
        let max_seq: i64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let last_seq = schema::meta_get(&conn, "last_seq")?
            .unwrap_or(0)
            .max(max_seq);
        let count = conn.query_row(
            "SELECT COALESCE(MAX(seq) - MIN(seq) + 1, 0) FROM events",
            [],
            |r| r.get(0),
        )?;
        // Checkpoints run on their own thread (below), off the writer's path.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = spawn_checkpointer(&path, opts.durability)?;
        let (head_tx, head_rx) = watch::channel(Seq(last_seq as u64));
        let streams = load_streams(&conn)?;
        let writer = Writer {
            conn,
            streams,
            next_seq: last_seq as u64 + 1,
            count,
            head: head_tx,
        };
        let (tx, rx) = mpsc::channel(4096);
        let handle = std::thread::Builder::new()
            .name("cds-events-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(&path))?;
        let readers = Arc::new(Readers {
            path: path.clone(),
            cache_kib: opts.reader_cache_kib,
            synchronous: opts.durability.synchronous(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(opts.readers.max(1)),
        });
        Ok(SqliteLog {
            path,
            tx,
            head: head_rx,
            readers,
            query_budget: opts.query_budget,
            writer: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some(checkpointer)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call<T>(&self, make: impl FnOnce(writer::Reply<T>) -> Cmd) -> Result<T, LogError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// The query plan SQLite chooses for `query`, for docs and tests.
    pub async fn explain(&self, query: Query) -> Result<Vec<String>, LogError> {
        self.readers.with(move |c| query::explain(c, &query)).await
    }
}

fn load_streams(
    conn: &Connection,
) -> Result<std::collections::HashMap<(String, &'static str), i64>, LogError> {
    let mut st = conn.prepare("SELECT id, project_key, type FROM streams")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (id, project, t) = row?;
        // A type this build no longer knows keeps its rows; no new event can use it.
        if let Some(t) = cds_events_model::EventType::parse(&t) {
            out.insert((project, t.as_str()), id);
        }
    }
    Ok(out)
}

/// Above this size the write-ahead log is checkpointed and truncated even if
/// that briefly holds the writer back.
const MAX_WAL_BYTES: u64 = 256 * 1024 * 1024;

/// Copies committed pages from the WAL into the database every 100 ms, so that
/// the writer never pays for checkpoints inline. A page rewritten by many
/// commits between two passes is copied once.
fn spawn_checkpointer(
    path: &Path,
    durability: Durability,
) -> Result<
    (
        Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<()>,
    ),
    LogError,
> {
    let conn = Connection::open(path)?;
    // With process-crash durability the operating system's cache is the
    // promise: a checkpoint need not wait for the disk (its fsync is what
    // stalled RESTART checkpoints for hundreds of ms). With power-loss
    // durability, the database is synced before the WAL is reused.
    let sync = match durability {
        Durability::ProcessCrash => "OFF",
        Durability::PowerLoss => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wal = path.with_extension("db-wal");
    let flag = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("cds-events-log-checkpoint".into())
        .spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let big = std::fs::metadata(&wal)
                    .map(|m| m.len() > MAX_WAL_BYTES)
                    .unwrap_or(false);
                let mode = if big { "RESTART" } else { "PASSIVE" };
                if let Err(e) =
                    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
                {
                    tracing::warn!(error = %e, mode, "checkpoint failed");
                }
            }
        })
        .map_err(io_err(path))?;
    Ok((stop, handle))
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<Appended>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|reply| Cmd::Append { events, reply }).await
    }

    async fn get(&self, id: &str) -> Result<Option<StoredEvent>, LogError> {
        let id = id.to_owned();
        self.readers
            .with(move |c| {
                Ok(
                    c.prepare_cached("SELECT seq, body FROM events WHERE id = ?1")?
                        .query_row([id], |r| {
                            Ok(StoredEvent {
                                seq: Seq(r.get::<_, i64>(0)? as u64),
                                json: Arc::from(r.get::<_, String>(1)?),
                            })
                        })
                        .optional()?,
                )
            })
            .await
    }

    async fn query(&self, q: Query) -> Result<Page, LogError> {
        let budget = self.query_budget;
        self.readers.with(move |c| query::run(c, &q, budget)).await
    }

    async fn read_after(&self, after: Seq, limit: usize) -> Result<Vec<StoredEvent>, LogError> {
        self.readers
            .with(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT seq, body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = st.query_map([after.0 as i64, limit as i64], |r| {
                    Ok(StoredEvent {
                        seq: Seq(r.get::<_, i64>(0)? as u64),
                        json: Arc::from(r.get::<_, String>(1)?),
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn read_seqs(&self, seqs: Vec<Seq>) -> Result<Vec<StoredEvent>, LogError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        self.readers
            .with(move |c| {
                let mut st = c.prepare_cached("SELECT body FROM events WHERE seq = ?1")?;
                let mut out = Vec::with_capacity(seqs.len());
                for seq in seqs {
                    if let Some(body) = st
                        .query_row([seq.0 as i64], |r| r.get::<_, String>(0))
                        .optional()?
                    {
                        out.push(StoredEvent {
                            seq,
                            json: Arc::from(body),
                        });
                    }
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
        self.readers
            .with(move |c| {
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
        let wal = self.path.with_extension("db-wal");
        let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        self.readers
            .with(move |c| {
                // Sequence numbers have no gaps and purges cut a prefix.
                let (count, oldest): (i64, i64) = c.query_row(
                    "SELECT COALESCE(MAX(seq) - MIN(seq) + 1, 0), COALESCE(MIN(seq), 0) FROM events",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
                Ok(LogStats {
                    backend: "sqlite",
                    events: count as u64,
                    oldest_seq: oldest as u64,
                    head_seq: head,
                    bytes_on_disk: (pages * page_size) as u64 + wal_bytes,
                })
            })
            .await
    }

    async fn close(&self) -> Result<(), LogError> {
        let ckpt = self.checkpointer.lock().ok().and_then(|mut c| c.take());
        if let Some((stop, handle)) = ckpt {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        let r = self.call(|reply| Cmd::Close { reply }).await;
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        self.readers.permits.close();
        if let Ok(mut idle) = self.readers.idle.lock() {
            idle.clear();
        }
        match r {
            Err(LogError::Closed) => Ok(()),
            other => other,
        }
    }
}
