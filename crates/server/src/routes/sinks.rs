//! `/v2/sinks`: the broker sinks' status, pause, resume and replay (admin
//! only: a sink sends every project's events). Connection settings are
//! never shown: they hold credentials and stay in the configuration.

use crate::auth::Admin;
use crate::error::{AdminOnly, ApiError, ErrorBody};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use cds_events_api::{ReplayOut, SinkOut, SinksOut};
use serde::Deserialize;
use utoipa::IntoParams;

/// `/v2/sinks`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/sinks", get(list))
        .route("/v2/sinks/{name}/pause", post(pause))
        .route("/v2/sinks/{name}/resume", post(resume))
        .route("/v2/sinks/{name}/replay", post(replay))
}

/// A sink's name in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SinkPath {
    /// The sink's `name` in `[[sinks]]`.
    pub name: String,
}

/// Where a replay starts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReplayParams {
    /// The first sequence number to send again (the oldest kept one if it
    /// was purged). At most the head + 1.
    pub from: Option<String>,
}

/// Every sink: kind, state, position, lag, last error (admin).
#[utoipa::path(get, path = "/v2/sinks", tag = "sinks",
    responses(
        (status = 200, description = "every configured sink", body = SinksOut),
        AdminOnly,
    ))]
pub async fn list(State(st): State<AppState>, _: Admin) -> Json<SinksOut> {
    Json(SinksOut {
        sinks: st.sinks.status().await,
    })
}

/// Stop sending (admin). The position stays; events wait in the log (and
/// retention keeps them). A restart of the server resumes sending.
#[utoipa::path(post, path = "/v2/sinks/{name}/pause", tag = "sinks", params(SinkPath),
    responses(
        (status = 200, description = "the sink, paused", body = SinkOut),
        (status = 404, description = "no such sink", body = ErrorBody),
        AdminOnly,
    ))]
pub async fn pause(
    State(st): State<AppState>,
    Admin(caller): Admin,
    Path(p): Path<SinkPath>,
) -> Result<Json<SinkOut>, ApiError> {
    let out = st.sinks.pause(&p.name).await?;
    tracing::info!(sink = %p.name, by = %caller.token_id, "sink paused");
    Ok(Json(out))
}

/// Send again from where the sink stands (admin).
#[utoipa::path(post, path = "/v2/sinks/{name}/resume", tag = "sinks", params(SinkPath),
    responses(
        (status = 200, description = "the sink, resumed", body = SinkOut),
        (status = 404, description = "no such sink", body = ErrorBody),
        AdminOnly,
    ))]
pub async fn resume(
    State(st): State<AppState>,
    Admin(caller): Admin,
    Path(p): Path<SinkPath>,
) -> Result<Json<SinkOut>, ApiError> {
    let out = st.sinks.resume(&p.name).await?;
    tracing::info!(sink = %p.name, by = %caller.token_id, "sink resumed");
    Ok(Json(out))
}

/// Send every event again from `from` on (admin): the sink's position moves
/// back to `from - 1`. Consumers see those events a second time (with the
/// same ids; JetStream drops those still within its duplicate window).
#[utoipa::path(post, path = "/v2/sinks/{name}/replay", tag = "sinks",
    params(SinkPath, ReplayParams),
    responses(
        (status = 200, description = "the position moved; sending again", body = ReplayOut),
        (status = 400, description = "`from` missing, not a number, or beyond the head", body = ErrorBody),
        (status = 404, description = "no such sink", body = ErrorBody),
        AdminOnly,
    ))]
pub async fn replay(
    State(st): State<AppState>,
    Admin(caller): Admin,
    Path(p): Path<SinkPath>,
    Query(q): Query<ReplayParams>,
) -> Result<Json<ReplayOut>, ApiError> {
    let from = q
        .from
        .as_deref()
        .ok_or_else(|| ApiError::bad_param("from", "required (a sequence number)"))?
        .trim()
        .parse::<u64>()
        .map_err(|_| ApiError::bad_param("from", "a sequence number (0 or more)"))?;
    let out = st.sinks.replay(&p.name, from).await?;
    tracing::info!(sink = %p.name, from = out.from, by = %caller.token_id, "sink replay");
    Ok(Json(out))
}
