//! The HTTP service: routes, configuration, wiring and lifecycle.
//!
//! Handlers are thin: they parse and validate at the edge (model), then call
//! the log. Nothing here is called back by the log; later consumers (live
//! streams, webhooks) hang off the log's head, not off the ingest handler.

pub mod config;
pub mod error;
pub mod openapi;
pub mod routes;
pub mod state;

use crate::config::Config;
use crate::state::AppState;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_log::{EventLog, Retention};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Failures to start or run the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot open the event log: {0}")]
    Log(#[from] cds_events_log::LogError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// The process-wide Prometheus recorder (a recorder is global by nature).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let sizes = [
                1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_events".into()), &sizes))
                .expect("static buckets are valid");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embedding the
            // server); the handle still renders ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

async fn track_http(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("cds_events_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("cds_events_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    resp
}

/// The router over a state; public so tests can drive it in-process.
pub fn router(state: AppState) -> Router {
    use routes::{events, mon};
    Router::new()
        .route("/v2/events", get(events::query).post(events::ingest))
        .route("/v2/events/types", get(events::types))
        .route("/v2/events/{id}", get(events::get))
        .route("/v2/openapi.json", get(openapi::openapi_json))
        .route("/mon/status", get(mon::status))
        .route("/mon/version", get(mon::version))
        .route("/mon/metrics", get(mon::metrics))
        .fallback(|| async { error::ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn(track_http))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}

/// A bound, not yet serving, server.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

impl Server {
    /// Opens the log and binds the listener.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let opts = SqliteOptions {
            durability: config.storage.durability,
            readers: config.storage.readers,
            ..SqliteOptions::default()
        };
        let data_dir = config.data_dir.clone();
        let log = tokio::task::spawn_blocking(move || SqliteLog::open(&data_dir, opts))
            .await
            .map_err(|e| cds_events_log::LogError::Storage(e.to_string()))??;
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen.clone(),
                    source,
                })?;
        let state = AppState {
            log: Arc::new(log),
            config: Arc::new(config),
            metrics: metrics_handle(),
            started: Instant::now(),
        };
        Ok(Server { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` fires, then stops accepting, lets in-flight
    /// requests finish (up to the grace period) and closes the log cleanly.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Server { listener, state } = self;
        let tasks = TaskTracker::new();
        let log = Arc::clone(&state.log);
        let config = Arc::clone(&state.config);
        let metrics = state.metrics.clone();
        tasks.spawn(retention_loop(
            Arc::clone(&log),
            Arc::clone(&config),
            shutdown.clone(),
        ));
        tasks.spawn({
            let shutdown = shutdown.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => metrics.run_upkeep(),
                    }
                }
            }
        });
        tasks.close();
        let app = router(state);
        let grace = config.shutdown_grace;
        let serve = axum::serve(listener, app).with_graceful_shutdown({
            let s = shutdown.clone();
            async move { s.cancelled().await }
        });
        let serve = async move { serve.await.map_err(ServerError::Serve) };
        tokio::pin!(serve);
        let result = tokio::select! {
            r = &mut serve => r,
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests did not finish in time");
                Ok(())
            }
        };
        tasks.wait().await;
        log.close().await?;
        tracing::info!("event log closed");
        result
    }
}

/// Deletes events beyond the retention policy, oldest first, in small
/// transactions with a pause between them so appends interleave.
async fn retention_loop(log: Arc<dyn EventLog>, config: Arc<Config>, shutdown: CancellationToken) {
    let r = &config.retention;
    let retention = Retention {
        max_age: r.max_age,
        max_events: r.max_events,
    };
    if retention.max_age.is_none() && retention.max_events.is_none() {
        return;
    }
    loop {
        let mut purged = 0u64;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match log.purge(retention, r.batch).await {
                Ok(n) => {
                    purged += n;
                    if n < r.batch as u64 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention purge failed");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::info!(purged, "retention purge");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(r.interval) => {}
        }
    }
}
