//! The crate's one error type.
//!
//! The database's own errors stay behind [`AuthError::Backend`]; the
//! conversions from them live with each backend (`sqlite/mod.rs`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The database failed; the error is the store's own (for logs, not for
    /// matching).
    #[error("token store error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// `auth.db` was written by a newer build, which this one cannot read.
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
