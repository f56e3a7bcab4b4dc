//! The crate's one error type.
//!
//! The database's own errors stay behind [`AuthError::Backend`] (or
//! [`AuthError::Unavailable`] when the database is away or busy); the
//! conversions from the drivers' errors live with each backend
//! (`sqlite/mod.rs`, `postgres/mod.rs`), through the store crate's error.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The database failed; the error is the store's own (for logs, not for
    /// matching).
    #[error("token store error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// The database is away (restarting, unreachable, out of connections)
    /// or busy: the same call may succeed later.
    #[error("token store unavailable: {0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// The disk holding the store is full: nothing was written, and the
    /// same call may succeed once space is freed.
    #[error("token store full: {0}")]
    Full(String),
    /// The store (`auth.db`, or the `auth` component of a PostgreSQL
    /// database) was written by a newer build, which this one cannot read.
    #[error("{} has schema version {found}, this build knows {known}", path.display())]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// A token of this id is already stored (revoked or not).
    #[error("token {id} already exists")]
    TokenExists { id: String },
    /// A stored token cannot be read back (edited by hand, or written by a
    /// bug).
    #[error("token {id}: {problem}")]
    Unreadable { id: String, problem: String },
    /// A value could not be encoded as JSON.
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    /// A thread panicked while holding this lock.
    #[error("{0} lock poisoned")]
    Poisoned(&'static str),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl From<cds_events_store::Error> for AuthError {
    fn from(e: cds_events_store::Error) -> Self {
        use cds_events_store::Error;
        match e {
            Error::SchemaTooNew { path, found, known } => {
                AuthError::SchemaTooNew { path, found, known }
            }
            Error::Full(msg) => AuthError::Full(msg),
            e if e.is_unavailable() => AuthError::Unavailable(Box::new(e)),
            other => AuthError::Backend(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AuthError;
    use cds_events_store::Error;

    #[test]
    fn a_database_away_or_busy_is_unavailable_and_other_failures_are_not() {
        for away in [
            Error::Pool("timed out".into()),
            Error::Busy("locked".into()),
        ] {
            assert!(matches!(AuthError::from(away), AuthError::Unavailable(_)));
        }
        assert!(matches!(
            AuthError::from(Error::Config("bad url".into())),
            AuthError::Backend(_)
        ));
    }
}
