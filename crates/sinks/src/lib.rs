//! Sinks: events out to the brokers the rest of a platform reads.
//!
//! Each configured sink (`[[sinks]]`) is a durable consumer of the log: the
//! one loop ([`cds_events_log::follow`]) reads forward from its position,
//! the driver (`driver`) filters and formats each batch, hands it to the
//! broker's [`Sink`] and stores the position only after the broker
//! acknowledged the whole batch. A restart resumes there: at least once,
//! and every message carries the event id so that a consumer (or the
//! broker: JetStream's `Nats-Msg-Id`) can drop a duplicate. A broker that is
//! down or slow holds back only its own sink; its lag is visible
//! ([`Sinks::status`]) and retention keeps what it has not sent
//! ([`Sinks::holds`]).
//!
//! Adding a broker is one folder beside `nats/` (its config, its [`Sink`])
//! and one test file running the [`conformance`] suite with one macro line;
//! the ingest path never changes: nothing here is called by it.

pub mod amqp;
pub mod config;
pub mod conformance;
mod driver;
pub mod kafka;
pub mod nats;
pub mod redis;
mod set;

pub use config::{ContentMode, Format, SinkConfig, SinkConfigError, SinkKind, mask_url};
pub use set::{Sinks, SinksError};

use async_trait::async_trait;
use cds_events_log::Seq;
use cds_events_model::EventType;
use std::sync::Arc;

/// One event as a sink sends it.
#[derive(Debug, Clone)]
pub struct Message {
    pub seq: Seq,
    /// The event's id: every broker message carries it (a header, a field).
    pub id: String,
    pub event_type: EventType,
    /// Empty for a global event.
    pub project_key: String,
    /// The body in the sink's format (`cds`: the stored JSON, verbatim;
    /// binary content mode: the CloudEvent's `data`).
    pub body: Arc<str>,
    /// The body's media type, sent where the broker carries one (a
    /// `content-type` header or property); `None` where the binding says
    /// not to (NATS binary mode: `ce-datacontenttype` says it).
    pub content_type: Option<&'static str>,
    /// Binary content mode: the CloudEvents attributes named and encoded as
    /// the broker's protocol binding asks (`ce_id`, `ce-id`,
    /// `cloudEvents_id`); empty otherwise.
    pub ce_headers: Vec<(String, String)>,
    /// The event's non-empty `workflow_run_id` (a Kafka key by run).
    pub workflow_run_id: Option<String>,
}

impl Message {
    /// A message of CDS's own format: `body` is the stored event JSON,
    /// verbatim (its `workflow_run_id` is read from it).
    pub fn cds(
        seq: Seq,
        id: impl Into<String>,
        event_type: EventType,
        project_key: impl Into<String>,
        body: impl Into<Arc<str>>,
    ) -> Message {
        let body = body.into();
        Message {
            seq,
            id: id.into(),
            event_type,
            project_key: project_key.into(),
            workflow_run_id: workflow_run_id(&body),
            body,
            content_type: Some(Format::Cds.content_type()),
            ce_headers: Vec::new(),
        }
    }

    /// The project key, or `_global` for a global event: the routing word
    /// of subjects and routing keys.
    pub fn scope_word(&self) -> &str {
        if self.project_key.is_empty() {
            "_global"
        } else {
            &self.project_key
        }
    }
}

/// A stored event's non-empty `workflow_run_id` (nothing else of it is
/// read).
pub(crate) fn workflow_run_id(json: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Run<'a> {
        #[serde(borrow, default)]
        workflow_run_id: Option<std::borrow::Cow<'a, str>>,
    }
    let run: Run<'_> = serde_json::from_str(json).ok()?;
    run.workflow_run_id
        .filter(|r| !r.is_empty())
        .map(std::borrow::Cow::into_owned)
}

/// Whether a sink reaches its broker now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Connected,
    Disconnected(String),
}

/// Why a sink could not connect or send; messages never hold a credential.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The broker cannot be reached (or the connection broke).
    #[error("cannot reach the broker: {0}")]
    Connect(String),
    /// The broker did not acknowledge (refused, or timed out).
    #[error("the broker did not acknowledge: {0}")]
    Send(String),
    /// The sink's settings are unusable.
    #[error("invalid settings: {0}")]
    Config(String),
}

/// A broker's connection: what the driver calls, from one task, never
/// concurrently.
#[async_trait]
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Connects (or reconnects after a failure); ensures what the sink
    /// publishes into exists (a JetStream stream, an exchange).
    async fn connect(&mut self) -> Result<(), SinkError>;

    /// Sends a batch (never empty, in sequence order) and returns once the
    /// broker acknowledged every message of it. An error means some may
    /// have arrived: the driver sends the whole batch again.
    async fn send(&mut self, batch: &[Message]) -> Result<(), SinkError>;

    /// Whether the broker is reached now.
    async fn health(&self) -> Health;
}

/// The sink of a configuration (not connected yet).
pub fn build(config: &SinkConfig) -> Result<Box<dyn Sink>, SinkError> {
    match &config.kind {
        SinkKind::Nats(n) => Ok(Box::new(nats::NatsSink::new(n.clone()))),
        SinkKind::Redis(r) => Ok(Box::new(redis::RedisSink::new(r.clone()))),
        SinkKind::Amqp(a) => Ok(Box::new(amqp::AmqpSink::new(a.clone(), &config.name))),
        SinkKind::Kafka(k) => Ok(Box::new(kafka::KafkaSink::new(k.clone()))),
    }
}
