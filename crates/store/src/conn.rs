//! Opening a connection: the one place where the pragmas are set.

use crate::Error;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// SQLite's `synchronous` level: what a commit waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Nothing is synced by SQLite (the operating system's cache is trusted).
    Off,
    /// In WAL mode, commits are synced at checkpoints only: a commit survives
    /// the process being killed, not the machine losing power.
    Normal,
    /// Every commit is synced before it returns.
    #[default]
    Full,
}

impl Synchronous {
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

/// The settings of one connection. The defaults suit a small store that
/// favours safety: every commit synced, a 5 s busy timeout, foreign keys
/// enforced, temporary tables in memory, SQLite's default page cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnOptions {
    pub synchronous: Synchronous,
    /// Page cache, KiB; `None` keeps SQLite's default.
    pub cache_kib: Option<i64>,
    /// How long a statement waits for a lock held by another connection
    /// before failing with [`Error::Busy`].
    pub busy_timeout: Duration,
    /// Enforce `FOREIGN KEY` constraints (`false` leaves SQLite's default,
    /// off).
    pub foreign_keys: bool,
    /// Temporary tables and indexes in memory (`false` leaves SQLite's
    /// default).
    pub temp_store_memory: bool,
    /// Read the database file through a memory map of up to this many
    /// bytes (`PRAGMA mmap_size`; SQLite caps it at 2 GiB on Linux) rather
    /// than a `pread` and a copy per page. `None` leaves SQLite's default
    /// (no map). The map covers the file's start; pages beyond it, and the
    /// WAL, are read as before.
    pub mmap_bytes: Option<i64>,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            synchronous: Synchronous::default(),
            cache_kib: None,
            busy_timeout: Duration::from_secs(5),
            foreign_keys: true,
            temp_store_memory: true,
            mmap_bytes: None,
        }
    }
}

/// Opens (creating if needed) a read-write connection in WAL mode, so that
/// readers never block the writer nor the writer the readers.
pub fn open(path: &Path, opts: &ConnOptions) -> Result<Connection, Error> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    configure(&conn, opts)?;
    Ok(conn)
}

/// Opens a read-only connection to an existing database (for a
/// [`crate::ReaderPool`]): it can never write, so it never takes the write
/// lock.
pub fn open_read_only(path: &Path, opts: &ConnOptions) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    configure(&conn, opts)?;
    Ok(conn)
}

fn configure(conn: &Connection, opts: &ConnOptions) -> Result<(), Error> {
    conn.pragma_update(None, "synchronous", opts.synchronous.as_str())?;
    if opts.foreign_keys {
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    if let Some(kib) = opts.cache_kib {
        // Negative: a size in KiB rather than in pages.
        conn.pragma_update(None, "cache_size", -kib)?;
    }
    if opts.temp_store_memory {
        conn.pragma_update(None, "temp_store", "MEMORY")?;
    }
    if let Some(bytes) = opts.mmap_bytes {
        conn.pragma_update(None, "mmap_size", bytes)?;
    }
    conn.busy_timeout(opts.busy_timeout)?;
    Ok(())
}

/// The write-ahead log beside a database file (`<file>-wal`).
pub fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}
