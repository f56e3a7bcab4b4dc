//! Broker sinks as the API shows them (`/v2/sinks`): what each is doing,
//! how far behind it is, and the answers of its operations. Never a
//! connection setting: those hold credentials and stay in the configuration.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a sink is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SinkState {
    /// Not connected yet (starting).
    Connecting,
    /// Another instance sharing the log (PostgreSQL) runs this sink; this
    /// one takes over when that one goes.
    Standby,
    /// Connected; sending whatever it reads.
    Running,
    /// Paused by an operator: nothing is sent, the position stays.
    Paused,
    /// Its broker is down or refused the last batch: waiting to reconnect.
    Disconnected,
    /// Stopped with the server.
    Stopped,
}

/// One sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SinkOut {
    pub name: String,
    /// `nats`, `redis`, …
    pub kind: String,
    pub state: SinkState,
    /// The last sequence number its broker acknowledged (the stored position).
    pub position: u64,
    /// The log's head.
    pub head: u64,
    /// Events committed after `position` (`head - position`), sent or not yet.
    pub lag_events: u64,
    /// Age of the oldest event not yet acknowledged (its timestamp), 0 when
    /// caught up.
    pub lag_seconds: f64,
    /// Messages its broker acknowledged since this process started.
    pub sent: u64,
    /// Batches that failed since this process started.
    pub failed: u64,
    /// The last failure (connection, refusal), credentials masked; `null`
    /// once a batch succeeded after it.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// The filter (query-string form), when it has one.
    pub filter: Option<String>,
    /// What is sent: `cds` (the stored event JSON, byte for byte),
    /// `cloudevents` (a CloudEvent whose data is that JSON) or `cdevents`
    /// (a CDEvent, carried as a CloudEvent).
    pub format: String,
    /// How a CloudEvent travels: `structured` (the body is the event) or
    /// `binary` (the broker's CloudEvents binding: attributes as headers).
    #[serde(default)]
    pub content_mode: crate::ContentMode,
    /// Events not sent since this process started because they have no
    /// CDEvents form (`format` `cdevents`); the position passes them.
    #[serde(default)]
    pub skipped: u64,
}

/// `GET /v2/sinks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SinksOut {
    pub sinks: Vec<SinkOut>,
}

/// The answer to `POST /v2/sinks/{name}/replay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReplayOut {
    pub name: String,
    /// The first sequence number it sends again (the oldest kept one if
    /// `from` was purged already).
    pub from: u64,
}
