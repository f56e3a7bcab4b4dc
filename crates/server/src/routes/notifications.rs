//! `/v2/project/{projectKey}/notification…`: CDS's project notifications
//! (spec §6) and what we add around them — signing secrets, deliveries,
//! redelivery, a test ping. Thin: the `cds-events-webhooks` crate does the
//! work; this file checks grants and maps errors.
//!
//! Reading (list, show, deliveries) needs `read:PROJECT`; anything that
//! changes a notification, shows its secret or sends needs
//! `manage-notifications:PROJECT`.

use crate::auth::{Caller, forbidden, require_admin};
use crate::error::{
    AdminOnly, ApiError, ErrorBody, NotificationManager, NotificationReader, ProjectManager,
    ProjectReader,
};
use crate::state::AppState;
use axum::extract::{Path, Query, State, rejection::JsonRejection};
use axum::http::StatusCode;
use axum::routing::{self, post};
use axum::{Json, Router};
use cds_events_auth::Principal;
use cds_events_model::api::{
    CreatedNotificationOut, DeliveryDetail, DeliveryOut, DeliveryPage, DeliveryStatus,
    NotificationIn, NotificationOut, PingOut, RedeliveredOut, SecretOut,
};
use cds_events_webhooks::Actor;
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// `/v2/project/{project}/notification…` and the admin's key rotation.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/project/{project}/notification",
            routing::get(list).post(create),
        )
        .route(
            "/v2/project/{project}/notification/{name}",
            routing::get(get).put(update).delete(delete),
        )
        .route(
            "/v2/project/{project}/notification/{name}/secret",
            routing::get(secret),
        )
        .route(
            "/v2/project/{project}/notification/{name}/secret/rotate",
            post(rotate_secret),
        )
        .route(
            "/v2/project/{project}/notification/{name}/enable",
            post(enable),
        )
        .route(
            "/v2/project/{project}/notification/{name}/disable",
            post(disable),
        )
        .route("/v2/project/{project}/notification/{name}/test", post(test))
        .route(
            "/v2/project/{project}/notification/{name}/deliveries",
            routing::get(deliveries),
        )
        .route(
            "/v2/project/{project}/notification/{name}/deliveries/{id}",
            routing::get(delivery),
        )
        .route(
            "/v2/project/{project}/notification/{name}/deliveries/{id}/redeliver",
            post(redeliver),
        )
        .route(
            "/v2/project/{project}/notification/{name}/redeliver",
            post(redeliver_failed),
        )
        .route("/v2/admin/webhooks/rotate-key", post(rotate_key))
}

fn actor(p: &Principal) -> Actor {
    Actor {
        user_id: p.token_id.clone(),
        username: p.name.clone(),
    }
}

fn may_read(p: &Principal, project: &str) -> Result<(), ApiError> {
    if p.can_read(project) {
        Ok(())
    } else {
        Err(forbidden(format!(
            "this token may not read project {project}"
        )))
    }
}

fn may_manage(p: &Principal, project: &str) -> Result<(), ApiError> {
    if p.can_manage_notifications(project) {
        Ok(())
    } else {
        Err(forbidden(format!(
            "this token may not manage the notifications of project {project} (manage-notifications:{project})"
        )))
    }
}

/// List a project's notifications (header values masked).
#[utoipa::path(get, path = "/v2/project/{projectKey}/notification", tag = "notifications",
    params(("projectKey" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "the project's notifications, CDS JSON, header values masked", body = Vec<NotificationOut>),
        ProjectReader,
    ))]
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
) -> Result<Json<Vec<NotificationOut>>, ApiError> {
    may_read(&caller, &project)?;
    Ok(Json(st.webhooks.list(&project).await?))
}

/// Create a notification. The answer carries its signing secret (`secret`,
/// `whsec_…`), shown this once; managers can read it again at `…/secret`.
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification", tag = "notifications",
    params(("projectKey" = String, Path)), security(("bearer" = [])), request_body = NotificationIn,
    responses(
        (status = 201, description = "created; the notification plus `secret`", body = CreatedNotificationOut),
        (status = 400, description = "an invalid field, named in details", body = ErrorBody),
        (status = 409, description = "the name is taken in this project", body = ErrorBody),
        ProjectManager,
    ))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    Path(project): Path<String>,
    body: Result<Json<NotificationIn>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedNotificationOut>), ApiError> {
    may_manage(&caller, &project)?;
    let Json(input) = body?;
    let created = st.webhooks.create(&project, input, &actor(&caller)).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One notification (header values masked).
#[utoipa::path(get, path = "/v2/project/{projectKey}/notification/{name}", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "the notification", body = NotificationOut),
        NotificationReader,
    ))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<NotificationOut>, ApiError> {
    may_read(&caller, &project)?;
    Ok(Json(st.webhooks.get(&project, &name).await?))
}

/// Replace a notification. A header value of `***` keeps the stored one, so
/// what a GET returned can be sent back.
#[utoipa::path(put, path = "/v2/project/{projectKey}/notification/{name}", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path)), security(("bearer" = [])), request_body = NotificationIn,
    responses(
        (status = 200, description = "the notification as stored", body = NotificationOut),
        (status = 400, description = "an invalid field, named in details", body = ErrorBody),
        NotificationManager,
    ))]
pub async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    body: Result<Json<NotificationIn>, JsonRejection>,
) -> Result<Json<NotificationOut>, ApiError> {
    may_manage(&caller, &project)?;
    let Json(input) = body?;
    let out = st
        .webhooks
        .update(&project, &name, input, &actor(&caller))
        .await?;
    Ok(Json(out))
}

/// Delete a notification; its pending deliveries are dropped.
#[utoipa::path(delete, path = "/v2/project/{projectKey}/notification/{name}", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "deleted"), NotificationManager))]
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    may_manage(&caller, &project)?;
    st.webhooks.delete(&project, &name, &actor(&caller)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signing secret receivers should accept now (and the previous one
/// during a rotation's overlap).
#[utoipa::path(get, path = "/v2/project/{projectKey}/notification/{name}/secret", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "the secret, and the previous one during a rotation's overlap", body = SecretOut),
        NotificationManager,
    ))]
pub async fn secret(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<SecretOut>, ApiError> {
    may_manage(&caller, &project)?;
    Ok(Json(st.webhooks.secret(&project, &name).await?))
}

/// A new signing secret; the old one stays valid (and is signed with too)
/// for `webhooks.secret_overlap`.
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/{name}/secret/rotate", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "the new secret and the previous one", body = SecretOut),
        NotificationManager,
    ))]
pub async fn rotate_secret(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<SecretOut>, ApiError> {
    may_manage(&caller, &project)?;
    let out = st
        .webhooks
        .rotate_secret(&project, &name, &actor(&caller))
        .await?;
    Ok(Json(out))
}

/// Turn a notification back on, after it was disabled for failing (pending
/// deliveries resume), or by hand.
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/{name}/enable", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "the notification", body = NotificationOut), NotificationManager))]
pub async fn enable(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<NotificationOut>, ApiError> {
    set_enabled(st, &caller, project, name, true).await
}

/// Turn a notification off: no new deliveries; pending ones wait.
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/{name}/disable", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path)), security(("bearer" = [])),
    responses((status = 200, description = "the notification", body = NotificationOut), NotificationManager))]
pub async fn disable(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<NotificationOut>, ApiError> {
    set_enabled(st, &caller, project, name, false).await
}

async fn set_enabled(
    st: AppState,
    caller: &Principal,
    project: String,
    name: String,
    enabled: bool,
) -> Result<Json<NotificationOut>, ApiError> {
    may_manage(caller, &project)?;
    let out = st
        .webhooks
        .set_enabled(&project, &name, enabled, &actor(caller))
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesParams {
    /// `pending`, `succeeded`, `failed` or `cancelled`.
    pub status: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A notification's deliveries, newest first.
#[utoipa::path(get, path = "/v2/project/{projectKey}/notification/{name}/deliveries", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path), DeliveriesParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of deliveries", body = DeliveryPage),
        (status = 400, description = "an invalid parameter", body = ErrorBody),
        NotificationReader,
    ))]
pub async fn deliveries(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    params: Result<Query<DeliveriesParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeliveryPage>, ApiError> {
    may_read(&caller, &project)?;
    let Query(p) = params?;
    let status = match p.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::bad_param("status", "one of pending, succeeded, failed, cancelled")
        })?),
    };
    let page = st
        .webhooks
        .deliveries(
            &project,
            &name,
            status,
            p.cursor.as_deref(),
            p.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(page))
}

/// One delivery with every attempt: time, status code, latency, error,
/// response excerpt.
#[utoipa::path(get, path = "/v2/project/{projectKey}/notification/{name}/deliveries/{id}", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "the delivery and its attempts", body = DeliveryDetail),
        NotificationReader,
    ))]
pub async fn delivery(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name, id)): Path<(String, String, String)>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    may_read(&caller, &project)?;
    Ok(Json(st.webhooks.delivery(&project, &name, &id).await?))
}

/// Send one delivery again (same `webhook-id`, fresh attempt budget).
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/{name}/deliveries/{id}/redeliver", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path), ("id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 202, description = "queued again; the delivery as it now stands", body = DeliveryOut),
        NotificationManager,
    ))]
pub async fn redeliver(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name, id)): Path<(String, String, String)>,
) -> Result<(StatusCode, Json<DeliveryOut>), ApiError> {
    may_manage(&caller, &project)?;
    let d = st.webhooks.redeliver(&project, &name, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(d)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RedeliverParams {
    /// RFC 3339: every failed delivery created since then is sent again.
    pub since: String,
}

/// Send again every failed delivery created since a time.
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/{name}/redeliver", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path), RedeliverParams), security(("bearer" = [])),
    responses(
        (status = 202, description = "how many were queued again", body = RedeliveredOut),
        (status = 400, description = "an invalid parameter", body = ErrorBody),
        NotificationManager,
    ))]
pub async fn redeliver_failed(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    params: Result<Query<RedeliverParams>, axum::extract::rejection::QueryRejection>,
) -> Result<(StatusCode, Json<RedeliveredOut>), ApiError> {
    may_manage(&caller, &project)?;
    let Query(p) = params?;
    let since: DateTime<Utc> = DateTime::parse_from_rfc3339(&p.since)
        .map_err(|_| ApiError::bad_param("since", "an RFC 3339 time"))?
        .with_timezone(&Utc);
    let n = st
        .webhooks
        .redeliver_failed_since(&project, &name, since)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RedeliveredOut { redelivered: n }),
    ))
}

/// Send a signed ping to the endpoint now and report how it went (not stored).
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/{name}/test", tag = "notifications",
    params(("projectKey" = String, Path), ("name" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "how the endpoint answered", body = PingOut),
        NotificationManager,
    ))]
pub async fn test(
    State(st): State<AppState>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<PingOut>, ApiError> {
    may_manage(&caller, &project)?;
    Ok(Json(st.webhooks.test(&project, &name).await?.into()))
}

/// Rotate the master key that encrypts headers and secrets at rest (admin).
#[utoipa::path(post, path = "/v2/admin/webhooks/rotate-key", tag = "notifications", security(("bearer" = [])),
    responses((status = 204, description = "every value re-encrypted under a new key"),
              (status = 409, description = "the key comes from the configuration", body = ErrorBody),
              AdminOnly))]
pub async fn rotate_key(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    st.webhooks.rotate_key().await?;
    tracing::info!(by = %caller.token_id, "webhooks master key rotated");
    Ok(StatusCode::NO_CONTENT)
}
