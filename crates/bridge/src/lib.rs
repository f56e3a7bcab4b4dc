//! The CDS bridge: events in from a running CDS, through its Redis.
//!
//! CDS publishes every full event (payload included) on the Redis pub/sub
//! channel `event:ui`; the bridge subscribes to it and appends each event to
//! the log with CDS's own id, so the log's idempotency by id makes a
//! reconnect, a retry or a second bridge harmless. Pub/sub keeps nothing for
//! an absent subscriber: every window during which events may have been
//! missed is recorded (status, metrics, a warning), never hidden.
//!
//! - [`config`]: the `[bridge]` section; secrets masked wherever it is shown.
//! - [`message`]: one message → one event, with the ingest path's decoder
//!   and limits.
//! - `subscriber`: the named RESP3 connection, its liveness and reconnects.
//! - `writer`: buffered messages → batched appends, retried.
//! - [`status`]: the link's state, the gap windows, the counters.
//!
//! It must never pop CDS's `events_v2` list (that would steal events from
//! CDS), never block the Redis connection's task, and never hold an
//! unbounded backlog: a log that cannot keep up costs a reported gap.

pub mod config;
pub mod message;
pub mod status;
mod subscriber;
mod writer;

pub use config::{BridgeConfig, BridgeConfigError, CDS_UI_CHANNEL, mask_url};
pub use message::{IngestLimits, Undecodable};
pub use status::{BridgeStatus, GapWindow, LinkState, MessageCounts};

use cds_events_log::EventLog;
use redis::IntoConnectionInfo;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Why the bridge cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error(transparent)]
    Config(#[from] BridgeConfigError),
    /// The Redis client refused the settings (message masked).
    #[error("bridge.cds_redis_url: {0}")]
    Client(String),
    #[error("bridge.tls_ca_cert: cannot read {}: {source}", path.display())]
    CaCert {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A configured bridge: [`Bridge::run`] it, read [`Bridge::status`]
/// meanwhile. Clones share the same status.
#[derive(Clone)]
pub struct Bridge {
    config: Arc<BridgeConfig>,
    client: redis::Client,
    limits: IngestLimits,
    shared: Arc<status::Shared>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's own Debug would show the connection info.
        f.debug_struct("Bridge")
            .field("config", &self.config)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// Checks the configuration and builds the Redis client (nothing is
    /// connected yet). `limits` are the ingest path's.
    pub fn new(config: BridgeConfig, limits: IngestLimits) -> Result<Bridge, BridgeError> {
        config.validate()?;
        let client = build_client(&config)?;
        let shared = Arc::new(status::Shared::new(
            config.masked_url(),
            config.channel.clone(),
            config.max_windows,
        ));
        Ok(Bridge {
            config: Arc::new(config),
            client,
            limits,
            shared,
        })
    }

    /// What `/mon/status` shows.
    pub fn status(&self) -> BridgeStatus {
        self.shared.snapshot()
    }

    /// Subscribes and appends until `shutdown`; then stops subscribing and
    /// appends what was already received before returning.
    pub async fn run(self, log: Arc<dyn EventLog>, shutdown: CancellationToken) {
        let (tx, rx) = tokio::sync::mpsc::channel(self.config.buffer);
        let done = CancellationToken::new();
        let subscriber = subscriber::Subscriber {
            client: self.client.clone(),
            config: Arc::clone(&self.config),
            shared: Arc::clone(&self.shared),
            secrets: self.config.secrets(),
        };
        let subscribe = {
            let done = done.clone();
            async move {
                subscriber.run(tx, shutdown).await;
                done.cancel();
            }
        };
        let write = writer::write_loop(
            rx,
            log,
            self.limits,
            self.config.max_batch,
            Arc::clone(&self.shared),
            done,
        );
        tokio::join!(subscribe, write);
        tracing::info!("bridge stopped");
    }
}

fn build_client(config: &BridgeConfig) -> Result<redis::Client, BridgeError> {
    let secrets = config.secrets();
    let masked = |e: redis::RedisError| {
        let mut text = e.to_string();
        for s in &secrets {
            text = text.replace(s.as_str(), "***");
        }
        BridgeError::Client(text)
    };
    let raw = config.cds_redis_url.as_deref().unwrap_or_default().trim();
    let mut url =
        url::Url::parse(raw).map_err(|e| BridgeError::Client(format!("{}: {e}", mask_url(raw))))?;
    let tls = matches!(url.scheme(), "rediss" | "valkeys");
    if config.tls_insecure {
        url.set_fragment(Some("insecure"));
    }
    let info = url.as_str().into_connection_info().map_err(masked)?;
    let mut settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    if let Some(p) = &config.password {
        settings = settings.set_password(p);
    }
    if let Some(u) = &config.username {
        settings = settings.set_username(u);
    }
    if let Some(db) = config.db {
        settings = settings.set_db(db);
    }
    let info = info.set_redis_settings(settings);
    if tls {
        // rustls needs a process-wide provider when more than one could be
        // linked in; this build uses ring everywhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    match &config.tls_ca_cert {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| BridgeError::CaCert {
                path: path.clone(),
                source,
            })?;
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(masked)
        }
        None => redis::Client::open(info).map_err(masked),
    }
}
