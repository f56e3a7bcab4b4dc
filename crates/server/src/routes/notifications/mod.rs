//! `/v2/project/{projectKey}/notification…`: CDS's project notifications
//! (spec §6) and what we add around them — signing secrets, deliveries,
//! redelivery, a test ping. Thin: the `cds-events-webhooks` crate does the
//! work; [`access`] checks the caller's right while the request is
//! extracted (each handler names the right it needs); errors map in
//! `error.rs`.

mod access;
pub mod preview;

use crate::auth::Admin;
use crate::error::{
    AdminOnly, ApiError, ErrorBody, NotificationManager, NotificationReader, ProjectManager,
    ProjectReader,
};
use crate::state::AppState;
use access::{
    DeliveryPath, Manage, NotificationPath, OnNotification, OnProject, ProjectPath, Read, actor,
};
use axum::extract::{Path, Query, State, rejection::JsonRejection};
use axum::http::StatusCode;
use axum::routing::{self, post};
use axum::{Json, Router};
use cds_events_api::{
    CreatedNotificationOut, DeliveriesQuery, DeliveryDetail, DeliveryOut, DeliveryPage,
    DeliveryStatus, NotificationHealthOut, NotificationIn, NotificationOut, PingOut, PublicKeyOut,
    RedeliveredOut, SecretOut,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// `/v2/project/{projectKey}/notification…` and the admin's key rotation.
///
/// The router names the capture `{project}`, as before the OpenAPI
/// document called it `projectKey` (CDS's name): the matched path is the
/// `route` label of the HTTP metrics, which dashboards key on.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v2/project/{project}/notification",
            routing::get(list).post(create),
        )
        .route(
            "/v2/project/{project}/notification/preview",
            post(preview::preview),
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
            "/v2/project/{project}/notification/{name}/public-key",
            routing::get(public_key),
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
            "/v2/project/{project}/notification/{name}/health",
            routing::get(health),
        )
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

/// List a project's notifications (header values masked).
#[utoipa::path(get, path = "/v2/project/{projectKey}/notification", tag = "notifications",
    params(ProjectPath),
    responses(
        (status = 200, description = "the project's notifications, CDS JSON, header values masked", body = Vec<NotificationOut>),
        ProjectReader,
    ))]
pub async fn list(
    State(st): State<AppState>,
    p: OnProject<Read>,
) -> Result<Json<Vec<NotificationOut>>, ApiError> {
    Ok(Json(st.webhooks.list(&p.project).await?))
}

/// Create a notification. The answer carries its signing secret (`secret`,
/// `whsec_…`), shown this once; managers can read it again at `…/secret`.
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification", tag = "notifications",
    params(ProjectPath), request_body = NotificationIn,
    responses(
        (status = 201, description = "created; the notification plus `secret`", body = CreatedNotificationOut),
        (status = 400, description = "an invalid field, named in details", body = ErrorBody),
        (status = 409, description = "the name is taken in this project", body = ErrorBody),
        ProjectManager,
    ))]
pub async fn create(
    State(st): State<AppState>,
    p: OnProject<Manage>,
    body: Result<Json<NotificationIn>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedNotificationOut>), ApiError> {
    let Json(input) = body?;
    let created = st
        .webhooks
        .create(&p.project, input, &actor(&p.caller))
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// One notification (header values masked).
#[utoipa::path(get, path = "/v2/project/{projectKey}/notification/{name}", tag = "notifications",
    params(NotificationPath),
    responses(
        (status = 200, description = "the notification", body = NotificationOut),
        NotificationReader,
    ))]
pub async fn get(
    State(st): State<AppState>,
    n: OnNotification<Read>,
) -> Result<Json<NotificationOut>, ApiError> {
    Ok(Json(st.webhooks.get(&n.project, &n.name).await?))
}

/// Replace a notification. A header value of `***` keeps the stored one, so
/// what a GET returned can be sent back.
#[utoipa::path(put, path = "/v2/project/{projectKey}/notification/{name}", tag = "notifications",
    params(NotificationPath), request_body = NotificationIn,
    responses(
        (status = 200, description = "the notification as stored", body = NotificationOut),
        (status = 400, description = "an invalid field, named in details", body = ErrorBody),
        NotificationManager,
    ))]
pub async fn update(
    State(st): State<AppState>,
    n: OnNotification<Manage>,
    body: Result<Json<NotificationIn>, JsonRejection>,
) -> Result<Json<NotificationOut>, ApiError> {
    let Json(input) = body?;
    let out = st
        .webhooks
        .update(&n.project, &n.name, input, &actor(&n.caller))
        .await?;
    Ok(Json(out))
}

/// Delete a notification; its pending deliveries are dropped.
#[utoipa::path(delete, path = "/v2/project/{projectKey}/notification/{name}", tag = "notifications",
    params(NotificationPath),
    responses((status = 204, description = "deleted"), NotificationManager))]
pub async fn delete(
    State(st): State<AppState>,
    n: OnNotification<Manage>,
) -> Result<StatusCode, ApiError> {
    st.webhooks
        .delete(&n.project, &n.name, &actor(&n.caller))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signing secret receivers should accept now (and the previous one
/// during a rotation's overlap). For an `ed25519` notification, its public
/// keys (`whpk_…`): a private key is never returned.
#[utoipa::path(get, path = "/v2/project/{projectKey}/notification/{name}/secret", tag = "notifications",
    params(NotificationPath),
    responses(
        (status = 200, description = "the secret, and the previous one during a rotation's overlap", body = SecretOut),
        NotificationManager,
    ))]
pub async fn secret(
    State(st): State<AppState>,
    n: OnNotification<Manage>,
) -> Result<Json<SecretOut>, ApiError> {
    Ok(Json(st.webhooks.secret(&n.project, &n.name).await?))
}

/// An `ed25519` notification's public key (and the previous one during a
/// rotation's overlap), to verify its `v1a,` signatures with: `whpk_…`,
/// raw base64 and PEM. Public: reading the project is enough.
#[utoipa::path(get, path = "/v2/project/{projectKey}/notification/{name}/public-key", tag = "notifications",
    params(NotificationPath),
    responses(
        (status = 200, description = "the public key, and the previous one during a rotation's overlap", body = PublicKeyOut),
        (status = 409, description = "the notification is signed with a shared secret (symmetric)", body = ErrorBody),
        NotificationReader,
    ))]
pub async fn public_key(
    State(st): State<AppState>,
    n: OnNotification<Read>,
) -> Result<Json<PublicKeyOut>, ApiError> {
    Ok(Json(st.webhooks.public_key(&n.project, &n.name).await?))
}

/// A new signing secret; the old one stays valid (and is signed with too)
/// for `webhooks.secret_overlap`.
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/{name}/secret/rotate", tag = "notifications",
    params(NotificationPath),
    responses(
        (status = 200, description = "the new secret and the previous one", body = SecretOut),
        NotificationManager,
    ))]
pub async fn rotate_secret(
    State(st): State<AppState>,
    n: OnNotification<Manage>,
) -> Result<Json<SecretOut>, ApiError> {
    let out = st
        .webhooks
        .rotate_secret(&n.project, &n.name, &actor(&n.caller))
        .await?;
    Ok(Json(out))
}

/// Turn a notification back on, after it was disabled for failing (pending
/// deliveries resume), or by hand.
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/{name}/enable", tag = "notifications",
    params(NotificationPath),
    responses((status = 200, description = "the notification", body = NotificationOut), NotificationManager))]
pub async fn enable(
    State(st): State<AppState>,
    n: OnNotification<Manage>,
) -> Result<Json<NotificationOut>, ApiError> {
    set_enabled(st, n, true).await
}

/// Turn a notification off: no new deliveries; pending ones wait.
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/{name}/disable", tag = "notifications",
    params(NotificationPath),
    responses((status = 200, description = "the notification", body = NotificationOut), NotificationManager))]
pub async fn disable(
    State(st): State<AppState>,
    n: OnNotification<Manage>,
) -> Result<Json<NotificationOut>, ApiError> {
    set_enabled(st, n, false).await
}

async fn set_enabled(
    st: AppState,
    n: OnNotification<Manage>,
    enabled: bool,
) -> Result<Json<NotificationOut>, ApiError> {
    let out = st
        .webhooks
        .set_enabled(&n.project, &n.name, enabled, &actor(&n.caller))
        .await?;
    Ok(Json(out))
}

/// A notification's health over the last 24 hours: attempts, success rate,
/// 95th percentile latency, and its deliveries pending and failed (exact
/// counts).
#[utoipa::path(get, path = "/v2/project/{projectKey}/notification/{name}/health", tag = "notifications",
    params(NotificationPath),
    responses(
        (status = 200, description = "the notification's health", body = NotificationHealthOut),
        NotificationReader,
    ))]
pub async fn health(
    State(st): State<AppState>,
    n: OnNotification<Read>,
) -> Result<Json<NotificationHealthOut>, ApiError> {
    Ok(Json(st.webhooks.health(&n.project, &n.name).await?))
}

/// A notification's deliveries, newest first.
#[utoipa::path(get, path = "/v2/project/{projectKey}/notification/{name}/deliveries", tag = "notifications",
    params(NotificationPath, DeliveriesQuery),
    responses(
        (status = 200, description = "a page of deliveries", body = DeliveryPage),
        (status = 400, description = "an invalid parameter", body = ErrorBody),
        NotificationReader,
    ))]
pub async fn deliveries(
    State(st): State<AppState>,
    n: OnNotification<Read>,
    params: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeliveryPage>, ApiError> {
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
            &n.project,
            &n.name,
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
    params(NotificationPath, DeliveryPath),
    responses(
        (status = 200, description = "the delivery and its attempts", body = DeliveryDetail),
        NotificationReader,
    ))]
pub async fn delivery(
    State(st): State<AppState>,
    n: OnNotification<Read>,
    Path(d): Path<DeliveryPath>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    Ok(Json(
        st.webhooks.delivery(&n.project, &n.name, &d.id).await?,
    ))
}

/// Send one delivery again (same `webhook-id`, fresh attempt budget).
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/{name}/deliveries/{id}/redeliver", tag = "notifications",
    params(NotificationPath, DeliveryPath),
    responses(
        (status = 202, description = "queued again; the delivery as it now stands", body = DeliveryOut),
        NotificationManager,
    ))]
pub async fn redeliver(
    State(st): State<AppState>,
    n: OnNotification<Manage>,
    Path(d): Path<DeliveryPath>,
) -> Result<(StatusCode, Json<DeliveryOut>), ApiError> {
    let d = st.webhooks.redeliver(&n.project, &n.name, &d.id).await?;
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
    params(NotificationPath, RedeliverParams),
    responses(
        (status = 202, description = "how many were queued again", body = RedeliveredOut),
        (status = 400, description = "an invalid parameter", body = ErrorBody),
        NotificationManager,
    ))]
pub async fn redeliver_failed(
    State(st): State<AppState>,
    n: OnNotification<Manage>,
    params: Result<Query<RedeliverParams>, axum::extract::rejection::QueryRejection>,
) -> Result<(StatusCode, Json<RedeliveredOut>), ApiError> {
    let Query(p) = params?;
    let since: DateTime<Utc> = DateTime::parse_from_rfc3339(&p.since)
        .map_err(|_| ApiError::bad_param("since", "an RFC 3339 time"))?
        .with_timezone(&Utc);
    let n = st
        .webhooks
        .redeliver_failed_since(&n.project, &n.name, since)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RedeliveredOut { redelivered: n }),
    ))
}

/// Send a signed ping to the endpoint now and report how it went (not stored).
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/{name}/test", tag = "notifications",
    params(NotificationPath),
    responses(
        (status = 200, description = "how the endpoint answered", body = PingOut),
        NotificationManager,
    ))]
pub async fn test(
    State(st): State<AppState>,
    n: OnNotification<Manage>,
) -> Result<Json<PingOut>, ApiError> {
    Ok(Json(st.webhooks.test(&n.project, &n.name).await?.into()))
}

/// Rotate the master key that encrypts headers and secrets at rest (admin).
#[utoipa::path(post, path = "/v2/admin/webhooks/rotate-key", tag = "notifications",
    responses((status = 204, description = "every value re-encrypted under a new key"),
              (status = 409, description = "the key comes from the configuration", body = ErrorBody),
              AdminOnly))]
pub async fn rotate_key(
    State(st): State<AppState>,
    Admin(caller): Admin,
) -> Result<StatusCode, ApiError> {
    st.webhooks.rotate_key().await?;
    tracing::info!(by = %caller.token_id, "webhooks master key rotated");
    Ok(StatusCode::NO_CONTENT)
}
