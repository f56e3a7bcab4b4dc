//! What every handler shares.

use crate::config::Config;
use cds_events_auth::TokenStore;
use cds_events_log::EventLog;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Instant;

/// Per-token publish budget (events per second), keyed by token id.
pub type PublishLimiter = governor::DefaultKeyedRateLimiter<String>;

/// What every handler shares, behind one `Arc`: axum clones the state for
/// every request (and every extractor that asks for it), and cloning one
/// `Arc` costs one atomic increment where cloning each field cost a dozen,
/// all on cache lines every core shares (about 5 % of the server's time in
/// a single-event ingest profile).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state's parts (see [`AppState`]).
#[derive(Debug)]
pub struct Shared {
    pub log: Arc<dyn EventLog>,
    pub hub: cds_events_hub::Hub,
    pub auth: Arc<TokenStore>,
    pub publish_limiter: Option<Arc<PublishLimiter>>,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    pub started: Instant,
    /// This process among the instances sharing a PostgreSQL database
    /// (`/mon/status`, leases, logs).
    pub instance: Arc<str>,
    /// Slots for open streaming connections (`stream.max_connections`).
    pub connections: Arc<tokio::sync::Semaphore>,
    /// Project notifications and their deliveries.
    pub webhooks: cds_events_webhooks::Webhooks,
    /// Events in from CDS's Redis, when configured (its status is shown).
    pub bridge: Option<cds_events_bridge::Bridge>,
    /// The base of CloudEvents `source` attributes (`cloudevents.source`).
    pub ce_source: cds_events_model::cloudevents::Source,
    /// Events out to brokers (`[[sinks]]`; empty when none is configured).
    pub sinks: cds_events_sinks::Sinks,
}

/// A name for this process, unique among the instances of a cluster:
/// the host's name, the process id and a random suffix (a restarted process
/// on the same host with the same pid is still another instance).
pub fn instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..6])
}
