//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong in the plumbing. Users map it into their own error
/// type at their edge (the SQLite driver's errors stay behind it).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Any other SQLite failure.
    #[error(transparent)]
    Sqlite(rusqlite::Error),
    /// The database stayed locked by another connection past the busy
    /// timeout.
    #[error("{0}")]
    Busy(String),
    /// The disk (or the filesystem's quota) is full: nothing of the
    /// failed statement or transaction was kept, and the same request may
    /// succeed once space is freed.
    #[error("{0}")]
    Full(String),
    /// The database was written by a newer build.
    #[error("{} has schema version {found}, this build knows {known}", path.display())]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// The database is at a version no migration starts from.
    #[error("{} has schema version {found}, and no migration starts from it", path.display())]
    NoMigration { path: PathBuf, found: i64 },
    /// A migration step failed; nothing of that step was kept.
    #[error("{} cannot be migrated from version {from}: {source}", path.display())]
    Migration {
        path: PathBuf,
        from: i64,
        source: Box<Error>,
    },
    /// The writer or the reader pool was closed.
    #[error("the store is closed")]
    Closed,
    /// A thread of the store could not be started.
    #[error("cannot start thread {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    /// A blocking task (a reader's query) panicked or was cancelled.
    #[error("a storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A PostgreSQL failure (see [`Error::is_unavailable`]).
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool in time.
    #[error("PostgreSQL pool: {0}")]
    Pool(String),
    /// The PostgreSQL URL or a pool setting is not usable.
    #[error("PostgreSQL configuration: {0}")]
    Config(String),
}

impl Error {
    /// The database is away (restarting, unreachable, refusing
    /// connections): the same request may succeed later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Busy(_) | Error::Pool(_) => true,
            Error::Postgres(e) => crate::pg::is_unavailable(e),
            _ => false,
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Error::Postgres(e),
            other => Error::Pool(other.to_string()),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(f, ref msg)
                if f.code == rusqlite::ErrorCode::DatabaseBusy
                    || f.code == rusqlite::ErrorCode::DatabaseLocked =>
            {
                Error::Busy(msg.clone().unwrap_or_else(|| f.to_string()))
            }
            rusqlite::Error::SqliteFailure(f, ref msg) if is_full(&f) => {
                Error::Full(msg.clone().unwrap_or_else(|| f.to_string()))
            }
            other => Error::Sqlite(other),
        }
    }
}

/// SQLite's "disk full": `SQLITE_FULL`, which it answers for a write that
/// failed with `ENOSPC` (or `EDQUOT`).
fn is_full(f: &rusqlite::ffi::Error) -> bool {
    f.code == rusqlite::ErrorCode::DiskFull
}
