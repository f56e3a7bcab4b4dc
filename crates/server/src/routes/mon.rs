//! `/mon/*`: health, version, metrics.

use crate::error::ErrorBody;
use crate::schema::StatusSchema;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// `/mon/*`, public: a probe or a scraper has no token. `/mon/metrics` asks
/// for an admin token itself unless `auth.public_metrics`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/mon/status", get(status))
        .route("/mon/version", get(version))
        .route("/mon/metrics", get(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionOut {
    pub name: &'static str,
    pub version: &'static str,
}

/// Health and storage figures.
#[utoipa::path(get, path = "/mon/status", tag = "mon", security(()),
    responses(
        (status = 200, description = "healthy", body = StatusSchema),
        (status = 503, description = "the log cannot be read", body = StatusSchema),
    ))]
pub async fn status(State(st): State<AppState>) -> Response {
    let uptime = st.started.elapsed().as_secs();
    let backend = st.config.storage.backend();
    let instance = &*st.instance;
    let (code, mut body) = match st.log.stats().await {
        Ok(stats) => (
            StatusCode::OK,
            json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": uptime,
                "storage": stats,
                "durability": st.config.storage.durability,
                "backend": backend,
                "instance": instance,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "status": "unavailable",
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_seconds": uptime,
                "backend": backend,
                "instance": instance,
                "error": e.to_string(),
            }),
        ),
    };
    // A bridge that lost CDS does not make this service unhealthy (the
    // status code stays), but an operator must see it.
    if let Some(bridge) = &st.bridge {
        body["bridge"] = json!(bridge.status());
    }
    // Likewise a sink whose broker is down: its state and lag are shown.
    if !st.sinks.is_empty() {
        body["sinks"] = json!(st.sinks.status().await);
    }
    (code, axum::Json(body)).into_response()
}

/// The running version.
#[utoipa::path(get, path = "/mon/version", tag = "mon", security(()),
    responses((status = 200, description = "name and version", body = VersionOut)))]
pub async fn version() -> axum::Json<VersionOut> {
    axum::Json(VersionOut {
        name: "cds-events",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/mon/metrics", tag = "mon", security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String),
        (status = 401, description = "no valid token or console session (unless auth.public_metrics)", body = ErrorBody),
        (status = 403, description = "not an admin token (unless auth.public_metrics)", body = ErrorBody),
    ))]
pub async fn metrics(State(st): State<AppState>, req: axum::extract::Request) -> Response {
    if !st.config.auth.public_metrics {
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        let principal = match token {
            Some(t) => match st.auth.authenticate_or_look_up(t).await {
                Ok(p) => p,
                Err(e) => return crate::error::ApiError::from(e).into_response(),
            },
            // The console's overview reads them with an admin's session
            // (a GET: no CSRF value needed).
            None => crate::auth::session_cookie(req.headers())
                .and_then(|v| st.auth.session(v))
                .map(|s| std::sync::Arc::clone(&s.principal)),
        };
        match principal {
            None => return crate::auth::unauthorized(),
            Some(p) if !p.is_admin() => {
                return crate::auth::forbidden("this needs an admin token").into_response();
            }
            Some(_) => {}
        }
    }
    if let Ok(stats) = st.log.stats().await {
        metrics::gauge!("cds_events_log_events").set(stats.events as f64);
        metrics::gauge!("cds_events_log_bytes").set(stats.bytes_on_disk as f64);
        metrics::gauge!("cds_events_log_head_seq").set(stats.head_seq.0 as f64);
    }
    // Every connection, stream and background loop is a task: a soak reads
    // this to see that nothing piles up.
    let runtime = tokio::runtime::Handle::current().metrics();
    metrics::gauge!("cds_events_runtime_alive_tasks").set(runtime.num_alive_tasks() as f64);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        st.metrics.render(),
    )
        .into_response()
}
