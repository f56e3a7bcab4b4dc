//! What every handler shares.

use crate::config::Config;
use cds_events_log::EventLog;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct AppState {
    pub log: Arc<dyn EventLog>,
    pub config: Arc<Config>,
    pub metrics: PrometheusHandle,
    pub started: Instant,
}
