//! The crate's one error type. The HTTP layer maps each variant to a status.
//!
//! The database's own errors stay behind [`WebhooksError::Backend`]; the
//! conversions from them live with the store (`store/mod.rs`).

use cds_events_log::LogError;
use cds_events_model::ProjectKey;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WebhooksError {
    /// The notification (or delivery) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A notification with this name already exists in the project.
    #[error("notification {name} already exists")]
    AlreadyExists { name: String },
    /// The project has as many notifications as it may.
    #[error("project {project} already has {limit} notifications, the most allowed")]
    TooMany { project: ProjectKey, limit: usize },
    /// A field of the request is invalid; `field` is its JSON path
    /// (`webhook_url`, `filters.any-name.event[1]`, `auth.headers.X-Token`).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The operation cannot be done in this configuration (e.g. rotating a
    /// master key that comes from the configuration).
    #[error("{0}")]
    Unsupported(String),
    /// The database failed; the error is the store's own (for logs, not for
    /// matching).
    #[error("webhooks storage error: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// The database is away (restarting, unreachable, out of connections):
    /// the same request may succeed later. The error is the store's own.
    #[error("webhooks storage unavailable, retry: {0}")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// The disk holding the store is full: nothing was written, and the
    /// same request may succeed once space is freed.
    #[error("webhooks storage full: {0}")]
    Full(String),
    /// `webhooks.db` was written by a newer build, which this one cannot
    /// read.
    #[error("{} has schema version {found}, this build knows {known}", path.display())]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// A stored notification's value cannot be read back (edited by hand, or
    /// written by a bug).
    #[error("stored notification {uid} is unreadable: {problem}")]
    Unreadable { uid: String, problem: String },
    /// A notification's values do not compile (URL, headers, filters): they
    /// were validated when written, so this is a stored row edited by hand.
    #[error("notification {uid} does not compile: {problem}")]
    Compile { uid: String, problem: CompileError },
    /// A value could not be encoded as JSON.
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    /// A stored value cannot be decrypted (wrong or missing master key).
    #[error("webhooks key error: {0}")]
    Key(String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The change is stored but its event could not be appended to the log,
    /// or the log could not be read.
    #[error("event log error: {0}")]
    Log(#[from] LogError),
    #[error("http client error: {0}")]
    Http(String),
    #[error("webhooks are shut down")]
    Closed,
    /// Another instance leads the dispatcher now: a write made under an
    /// earlier lead was refused, and this instance stops dispatching.
    #[error("another instance leads the webhooks dispatcher now")]
    LostLead,
}

impl WebhooksError {
    /// The notification `name` of `project` does not exist.
    pub(crate) fn no_notification(project: &ProjectKey, name: &str) -> Self {
        WebhooksError::NotFound(format!("notification {name} of project {project}"))
    }

    /// The delivery `id` (public) does not exist.
    pub(crate) fn no_delivery(id: &str) -> Self {
        WebhooksError::NotFound(format!("delivery {id}"))
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        WebhooksError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> WebhooksError + '_ {
    move |source| WebhooksError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Which value of a stored notification does not compile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("url: {0}")]
    Url(#[from] url::ParseError),
    #[error("header: {0}")]
    HeaderName(#[from] reqwest::header::InvalidHeaderName),
    #[error("header: {0}")]
    HeaderValue(#[from] reqwest::header::InvalidHeaderValue),
    #[error("filters: {0}")]
    Filters(#[from] regex::Error),
}
