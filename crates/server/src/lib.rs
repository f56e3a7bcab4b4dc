//! The HTTP service: routes, configuration, wiring and lifecycle.
//!
//! Handlers are thin: they parse and validate at the edge (model), then call
//! the log. Nothing here is called back by the log; later consumers (live
//! streams, webhooks) hang off the log's head, not off the ingest handler.

pub mod auth;
pub mod cloudevents;
pub mod config;
pub mod deadline;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;
pub mod schema;
pub mod slot;
pub mod state;
pub mod stores;
mod tls;

use crate::config::Config;
use crate::state::AppState;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use cds_events_log::{DurableConsumers, EventLog, Retention};
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
    #[error("cannot open the token store: {0}")]
    Auth(#[from] cds_events_auth::AuthError),
    #[error("cannot load the TLS settings: {0}")]
    Tls(String),
    #[error("cannot open the notification store: {0}")]
    Webhooks(#[from] cds_events_webhooks::WebhooksError),
    #[error("cannot set up the CDS bridge: {0}")]
    Bridge(#[from] cds_events_bridge::BridgeError),
    #[error("cannot set up the sinks: {0}")]
    Sinks(#[from] cds_events_sinks::SinksError),
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
    // Label values from a fixed set where possible: no allocation per request.
    let method: &'static str = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::DELETE => "DELETE",
        _ => "other",
    };
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("cds_events_http_request_duration_seconds", "route" => route.clone(), "method" => method)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("cds_events_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    resp
}

/// The router over a state; public so tests can drive it in-process.
///
/// Each resource brings its own router; this only merges them. Everything is
/// behind [`auth::require_principal`] except the public list below: a route
/// added later is protected unless someone decides otherwise, in this one
/// place.
pub fn router(state: AppState) -> Router {
    use routes::{console, events, mon, notifications, sinks, stats, stream, tokens, types, ws};
    let protected = Router::new()
        .merge(events::router())
        .merge(types::router())
        .merge(stats::router())
        .merge(sinks::router())
        .merge(stream::router())
        .merge(ws::router())
        .merge(tokens::router())
        .merge(notifications::router())
        .merge(console::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_principal,
        ));
    // Public: the document, `/mon/*` (whose metrics route asks for an
    // admin token itself unless configured public), and the console's page,
    // files and sign-in.
    let public = Router::new()
        .merge(openapi::router())
        .merge(mon::router())
        .merge(console::public_router());
    protected
        .merge(public)
        .fallback(|| async { error::ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn(track_http))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state)
}

/// A bound, not yet serving, server.
pub struct Server {
    listener: TcpListener,
    tls: Option<tls::Tls>,
    state: AppState,
    bootstrap: cds_events_auth::Bootstrap,
    hub_shutdown: CancellationToken,
    /// Every durable consumer of the log: retention keeps what the slowest
    /// still needs.
    consumers: DurableConsumers,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("tls", &self.tls.is_some())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the log and binds the listener.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let log = stores::open_log(&config).await?;
        let auth = stores::open_auth(&config).await?;
        let env_token = std::env::var("CDS_EVENTS_ADMIN_TOKEN").ok();
        let bootstrap = auth
            .bootstrap(env_token.as_deref(), &config.data_dir)
            .await?;
        let tls = tls::acceptor(&config.tls)?;
        let publish_limiter = config.auth.publish_rate.map(|rate| {
            let rate = std::num::NonZeroU32::new(rate).unwrap_or(std::num::NonZeroU32::MIN);
            let burst = config
                .auth
                .publish_burst
                .and_then(std::num::NonZeroU32::new)
                .unwrap_or(rate);
            Arc::new(governor::RateLimiter::keyed(
                governor::Quota::per_second(rate).allow_burst(burst),
            ))
        });
        let listener = listen(&config.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.listen.clone(),
                source,
            })?;
        // The hub stops with the server (see `run`), which ends every live
        // stream with a message saying where to resume.
        let hub_shutdown = CancellationToken::new();
        let hub = cds_events_hub::Hub::start(Arc::clone(&log), hub_shutdown.clone());
        // One name for this process: in /mon/status and on its webhook
        // claims.
        let instance = state::instance_id();
        let webhooks = stores::open_webhooks(&config, &instance, Arc::clone(&log)).await?;
        let consumers = DurableConsumers::default();
        consumers.register(Arc::new(webhooks.clone()));
        let sinks = sinks(&config, &instance, Arc::clone(&log))?;
        // Before any ingest: a new sink sends every event from now on.
        sinks.start_positions().await?;
        // Retention keeps what each sink has not sent.
        for hold in sinks.holds() {
            consumers.register(hold);
        }
        let bridge = bridge(&config)?;
        let config_max_connections = config.stream.max_connections;
        let state = AppState::new(state::Shared {
            ce_source: config.cloudevents_source(),
            log,
            hub,
            auth: Arc::new(auth),
            publish_limiter,
            config: Arc::new(config),
            metrics: metrics_handle(),
            started: Instant::now(),
            instance: instance.into(),
            connections: Arc::new(tokio::sync::Semaphore::new(config_max_connections)),
            webhooks,
            bridge,
            sinks,
        });
        Ok(Server {
            hub_shutdown,
            consumers,
            listener,
            tls,
            state,
            bootstrap,
        })
    }

    /// How the token store got its admin token at this start. A generated
    /// token is in here once, for the caller to print.
    pub fn bootstrap(&self) -> &cds_events_auth::Bootstrap {
        &self.bootstrap
    }

    /// Whether this server speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` fires, then stops accepting, lets in-flight
    /// requests finish (up to the grace period) and closes the log cleanly.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Server {
            listener,
            tls,
            state,
            hub_shutdown,
            consumers,
            ..
        } = self;
        let tasks = TaskTracker::new();
        let log = Arc::clone(&state.log);
        let config = Arc::clone(&state.config);
        let metrics = state.metrics.clone();
        tasks.spawn({
            let webhooks = state.webhooks.clone();
            let shutdown = shutdown.clone();
            async move {
                if let Err(e) = webhooks.run(shutdown).await {
                    tracing::error!(error = %e, "webhook delivery stopped");
                }
            }
        });
        let webhooks = state.webhooks.clone();
        // The bridge stops with the server, before the log closes: what it
        // has received is appended first.
        if let Some(bridge) = state.bridge.clone() {
            tasks.spawn(bridge.run(Arc::clone(&log), shutdown.clone()));
        }
        // The sinks too: each stores its position before the log closes.
        tasks.spawn({
            let sinks = state.sinks.clone();
            let shutdown = shutdown.clone();
            async move {
                if let Err(e) = sinks.run(shutdown).await {
                    tracing::error!(error = %e, "sinks stopped");
                }
            }
        });
        tasks.spawn(retention_loop(
            Arc::clone(&log),
            consumers,
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
        tasks.spawn({
            let shutdown = shutdown.clone();
            // Live streams would keep their connections open forever: stop
            // the hub with the server so each stream says where to resume.
            async move {
                shutdown.cancelled().await;
                hub_shutdown.cancel();
            }
        });
        tasks.close();
        let app = router(state);
        serve(listener, tls, app, &config, shutdown).await;
        tasks.wait().await;
        // Deliveries read the log: they stop first.
        if let Err(e) = webhooks.close().await {
            tracing::error!(error = %e, "closing the webhooks store failed");
        }
        log.close().await?;
        tracing::info!("event log closed");
        Ok(())
    }
}

/// Pending connections the kernel queues for the accept loop: std's 128 is
/// overrun by a burst of clients connecting at once (each one over is
/// dropped and retried by its client a second later).
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the first address `addr` resolves to that can be bound, with
/// [`LISTEN_BACKLOG`].
async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std's bind: a restarted server takes its port back at once.
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}

/// The CDS bridge, when `bridge.cds_redis_url` is set: it appends to the
/// log like any producer, with the ingest path's limits.
fn bridge(config: &Config) -> Result<Option<cds_events_bridge::Bridge>, ServerError> {
    if !config.bridge.enabled() {
        return Ok(None);
    }
    let limits = cds_events_bridge::IngestLimits {
        limits: config.ingest.limits,
        max_bytes: config.ingest.max_body_bytes,
    };
    Ok(Some(cds_events_bridge::Bridge::new(
        config.bridge.clone(),
        limits,
    )?))
}

/// The `[[sinks]]`, built (they connect when the server runs). They yield
/// to ingest on a saturated machine as the webhooks engine does, by the
/// same settings.
fn sinks(
    config: &Config,
    instance: &str,
    log: Arc<dyn EventLog>,
) -> Result<cds_events_sinks::Sinks, ServerError> {
    let w = &config.webhooks;
    let policy = w.yield_to_ingest.then_some(cds_events_log::pacing::Policy {
        cpu: w.yield_cpu,
        floor: w.yield_rate,
    });
    Ok(cds_events_sinks::Sinks::new(
        log,
        instance,
        &config.sinks,
        policy,
        &config.cloudevents_source(),
    )?)
}

/// The accept loop: HTTP/1.1 and HTTP/2, over TLS when configured, with a
/// bound on request heads, deadlines on clients that send or take nothing
/// ([`deadline`]), graceful shutdown and a grace period.
async fn serve(
    listener: TcpListener,
    tls: Option<tls::Tls>,
    app: Router,
    config: &Config,
    shutdown: CancellationToken,
) {
    use crate::deadline::Deadlines;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(config.http.max_header_bytes)
        .header_read_timeout(config.http.header_timeout)
        .timer(TokioTimer::new());
    builder
        .http2()
        .max_header_list_size(config.http.max_header_bytes as u32)
        .timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let handshake_timeout = config.http.header_timeout;
    let write_timeout = config.http.write_timeout;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => {
                    let stream = Deadlines::new(stream, handshake_timeout, write_timeout);
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(tls) => {
                    let stream =
                        match tokio::time::timeout(handshake_timeout, tls.acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "tls handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                    let service = if tls.admits(&stream) {
                        service
                    } else {
                        hyper_util::service::TowerToHyperService::new(tls::certificate_required())
                    };
                    let stream = Deadlines::new(stream, handshake_timeout, write_timeout);
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    let grace = config.shutdown_grace;
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(grace_seconds = grace.as_secs(), "in-flight requests did not finish in time");
        }
    }
}

/// Deletes events beyond the retention policy, oldest first, in small
/// transactions with a pause between them so appends interleave. Events that
/// a durable consumer still needs (the low-water mark over all of them:
/// pending webhook deliveries, a sink's position) are kept.
async fn retention_loop(
    log: Arc<dyn EventLog>,
    consumers: DurableConsumers,
    config: Arc<Config>,
    shutdown: CancellationToken,
) {
    let r = &config.retention;
    let mut retention = Retention {
        max_age: r.max_age,
        max_events: r.max_events,
        hold_from: None,
    };
    if retention.max_age.is_none() && retention.max_events.is_none() {
        return;
    }
    loop {
        let mut purged = 0u64;
        match consumers.low_water_mark().await {
            Ok(hold) => retention.hold_from = hold,
            Err(e) => {
                // Not knowing what a consumer needs, purge nothing this time.
                tracing::warn!(consumer = %e.consumer, error = %e.error, "cannot read what a consumer holds; no purge");
                retention.hold_from = Some(cds_events_log::Seq(0));
            }
        }
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
