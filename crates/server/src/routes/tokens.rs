//! `/v2/auth/*`: tokens (admin only), tickets, the audit trail.

use crate::auth::{Admin, Caller};
use crate::error::{AdminOnly, ApiError, ErrorBody, NoToken};
use crate::state::AppState;
use axum::extract::{Path, Query, State, rejection::JsonRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cds_events_api::{AuditEntry, CreatedTokenOut, TicketOut, TokenIn, TokenOut};
use cds_events_auth::Grant;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

/// `/v2/auth/*`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/auth/tokens", get(list).post(create))
        .route("/v2/auth/tokens/{id}", delete(revoke))
        .route("/v2/auth/ticket", post(ticket))
        .route("/v2/auth/audit", get(audit))
}

/// Create a token (admin).
#[utoipa::path(post, path = "/v2/auth/tokens", tag = "auth", request_body = TokenIn,
    responses(
        (status = 201, description = "created; `token` is shown this once", body = CreatedTokenOut),
        (status = 400, description = "invalid name, grant or expiry", body = ErrorBody),
        AdminOnly,
    ))]
pub async fn create(
    State(st): State<AppState>,
    Admin(caller): Admin,
    body: Result<Json<TokenIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(input) = body?;
    let mut grants = Vec::with_capacity(input.grants.len());
    for (i, g) in input.grants.iter().enumerate() {
        grants.push(g.parse::<Grant>().map_err(|e| {
            ApiError::bad_request("invalid_grant", e.to_string()).with_details(vec![
                json!({"field": format!("grants[{i}]"), "message": e.to_string()}),
            ])
        })?);
    }
    let created = st
        .auth
        .create(&input.name, grants, input.expires_at, &caller)
        .await?;
    tracing::info!(token_id = %created.info.id, by = %caller.token_id, "token created");
    let out = CreatedTokenOut {
        info: created.info.into(),
        token: created.secret,
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// List the active tokens (admin).
#[utoipa::path(get, path = "/v2/auth/tokens", tag = "auth",
    responses(
        (status = 200, description = "the active tokens, without secrets", body = Vec<TokenOut>),
        AdminOnly,
    ))]
pub async fn list(State(st): State<AppState>, _: Admin) -> Result<Json<Vec<TokenOut>>, ApiError> {
    Ok(Json(
        st.auth
            .list()
            .await?
            .into_iter()
            .map(TokenOut::from)
            .collect(),
    ))
}

/// Revoke a token (admin); effective for the next request.
#[utoipa::path(delete, path = "/v2/auth/tokens/{id}", tag = "auth",
    params(("id" = String, Path, description = "the token id")),
    responses(
        (status = 204, description = "revoked"),
        AdminOnly,
        (status = 404, description = "no such active token", body = ErrorBody),
    ))]
pub async fn revoke(
    State(st): State<AppState>,
    Admin(caller): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if st.auth.revoke(&id, &caller).await? {
        tracing::info!(token_id = %id, by = %caller.token_id, "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no active token with this id"))
    }
}

/// A short-lived, single-use ticket standing for the caller's token, for
/// clients that cannot send headers (browser WebSocket, EventSource).
#[utoipa::path(post, path = "/v2/auth/ticket", tag = "auth",
    responses(
        (status = 200, description = "a ticket", body = TicketOut),
        NoToken,
    ))]
pub async fn ticket(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<TicketOut>, ApiError> {
    let (ticket, ttl) = st.auth.issue_ticket(&caller).await?;
    Ok(Json(TicketOut {
        ticket,
        expires_in: ttl.as_secs(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Most entries to return (default 100, max 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// The audit trail, newest first (admin).
#[utoipa::path(get, path = "/v2/auth/audit", tag = "auth", params(AuditParams),
    responses(
        (status = 200, description = "token creations and revocations", body = Vec<AuditEntry>),
        (status = 400, description = "`limit` is not an integer from 1 to 1000", body = ErrorBody),
        AdminOnly,
    ))]
pub async fn audit(
    State(st): State<AppState>,
    _: Admin,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let Query(p) = params?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_param("limit", "must be from 1 to 1000"));
    }
    Ok(Json(st.auth.audit(limit).await?))
}
