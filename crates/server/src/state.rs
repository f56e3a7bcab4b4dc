//! What every handler shares.

use crate::config::Config;
use cds_events_auth::TokenStore;
use cds_events_log::EventLog;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Instant;

/// Per-token publish budget (events per second), keyed by token id.
pub type PublishLimiter = governor::DefaultKeyedRateLimiter<String>;

#[derive(Debug, Clone)]
pub struct AppState {
    pub log: Arc<dyn EventLog>,
    pub hub: cds_events_hub::Hub,
    pub auth: Arc<TokenStore>,
    pub publish_limiter: Option<Arc<PublishLimiter>>,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    pub started: Instant,
    /// Slots for open streaming connections (`stream.max_connections`).
    pub connections: Arc<tokio::sync::Semaphore>,
    /// Project notifications and their deliveries.
    pub webhooks: cds_events_webhooks::Webhooks,
}
