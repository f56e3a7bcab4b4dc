//! The single error exit of the HTTP API: every failure becomes
//! `{"error":{"code","message","details"}}` with the right status.
//!
//! Every domain error (log, token store, webhooks, a rejected query string or
//! body) is turned into an [`ApiError`] here, by one `From` each, so that a
//! handler only writes `?`. Nothing else in the server builds an error body.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cds_events_auth::AuthError;
use cds_events_log::LogError;
use cds_events_webhooks::WebhooksError;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};

/// Seconds a client is told to wait when a store is away: a PostgreSQL
/// restart takes a few seconds, and the pools reconnect on their own.
pub const STORAGE_RETRY_AFTER: u64 = 2;

/// Seconds a client is told to wait when the disk is full: freeing space
/// takes an operator.
pub const STORAGE_FULL_RETRY_AFTER: u64 = 10;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Value>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A bad query parameter, named in the details.
    pub fn bad_param(param: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::bad_request("invalid_parameter", format!("{param}: {message}"))
            .with_details(vec![json!({"field": param, "message": message})])
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 429 with `Retry-After: secs`.
    pub fn too_many(secs: u64) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("this token's publish rate is exceeded; retry in {secs} s"),
        );
        e.retry_after = Some(secs.max(1));
        e
    }

    /// 503 with `Retry-After`: a store is away (PostgreSQL restarting or
    /// unreachable, SQLite locked past its timeout); the same request may
    /// succeed in a moment, and nothing of it was acknowledged.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after = Some(STORAGE_RETRY_AFTER);
        e
    }

    /// 507 with `Retry-After`: the disk holding the data is full. Nothing
    /// of the request was kept; it succeeds again once space is freed,
    /// without a restart.
    pub fn insufficient_storage() -> Self {
        let mut e = ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            "the disk holding the data is full; nothing of this request was stored, retry once space is freed",
        );
        e.retry_after = Some(STORAGE_FULL_RETRY_AFTER);
        e
    }

    pub fn with_details(mut self, details: Vec<Value>) -> Self {
        self.details = details;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        resp
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ),
            LogError::Busy(error) => {
                tracing::warn!(%error, "event log unavailable");
                ApiError::unavailable("storage_busy", "storage is busy or unavailable, retry")
            }
            LogError::Full(error) => {
                tracing::warn!(%error, "event log storage full");
                ApiError::insufficient_storage()
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_error",
                    "the event log failed; see server logs",
                )
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Invalid(msg) => ApiError::bad_request("invalid_token_request", msg),
            AuthError::Full(error) => {
                tracing::warn!(%error, "token store storage full");
                ApiError::insufficient_storage()
            }
            AuthError::Unavailable(error) => {
                tracing::warn!(%error, "token store unavailable");
                ApiError::unavailable(
                    "storage_unavailable",
                    "the token store is unavailable, retry",
                )
            }
            other => {
                tracing::error!(error = %other, "token store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "auth_store_error",
                    "the token store failed; see server logs",
                )
            }
        }
    }
}

impl From<cds_events_sinks::SinksError> for ApiError {
    fn from(e: cds_events_sinks::SinksError) -> Self {
        use cds_events_sinks::SinksError;
        match e {
            SinksError::NoSuchSink(name) => ApiError::not_found(format!("no sink named {name}")),
            e @ SinksError::BeyondHead { .. } => ApiError::bad_param("from", e.to_string()),
            SinksError::Log(e) => e.into(),
            e @ SinksError::NotLeading { .. } => {
                ApiError::new(StatusCode::CONFLICT, "not_leading", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "sink operation failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "sink operation failed",
                )
            }
        }
    }
}

impl From<WebhooksError> for ApiError {
    fn from(e: WebhooksError) -> Self {
        match e {
            WebhooksError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            WebhooksError::AlreadyExists { name } => ApiError::new(
                StatusCode::CONFLICT,
                "already_exists",
                format!("a notification named {name} already exists in this project"),
            ),
            e @ WebhooksError::TooMany { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "too_many_notifications",
                e.to_string(),
            ),
            WebhooksError::Invalid { field, message } => {
                ApiError::bad_request("invalid_notification", format!("{field}: {message}"))
                    .with_details(vec![json!({"field": field, "message": message})])
            }
            WebhooksError::Full(error) => {
                tracing::warn!(%error, "notification store storage full");
                ApiError::insufficient_storage()
            }
            WebhooksError::Unsupported(msg) => {
                ApiError::new(StatusCode::CONFLICT, "unsupported", msg)
            }
            WebhooksError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down",
            ),
            WebhooksError::Unavailable(e) => {
                tracing::warn!(error = %e, "webhooks storage unavailable");
                ApiError::unavailable(
                    "storage_unavailable",
                    "the notification store is unavailable, retry",
                )
            }
            // The log under a notification change (its event, a read).
            WebhooksError::Log(e) => ApiError::from(e),
            other => {
                tracing::error!(error = %other, "webhooks failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "webhooks_error",
                    "the notification store failed; see server logs",
                )
            }
        }
    }
}

/// A query string that does not fit the handler's parameters.
impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad_request("invalid_parameter", e.body_text())
    }
}

/// A JSON body that does not fit the handler's input.
impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::bad_request("invalid_body", e.body_text())
    }
}

/// `{"error":{"code","message","details"}}`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    pub error: ErrorInner,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorInner {
    pub code: String,
    pub message: String,
    /// For a batch: one entry per bad event, with `index` (and `line` for NDJSON), `field`, `code`, `message`.
    pub details: Vec<serde_json::Value>,
}

/// The error answers most routes share, for the OpenAPI document: a handler
/// lists its own statuses and adds one of these.
macro_rules! error_responses {
    ($($(#[$doc:meta])* $name:ident: $(($status:literal, $description:literal)),+;)+) => {$(
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                [$(($status, $description)),+]
                    .into_iter()
                    .map(|(status, description): (u16, &str)| {
                        (status.to_string(), error_response(description))
                    })
                    .collect()
            }
        }
    )+};
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    let body = RefOr::Ref(utoipa::openapi::Ref::from_schema_name(ErrorBody::name()));
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(body)).build(),
        )
        .build()
        .into()
}

error_responses! {
    /// 401 for a route that takes a bearer token.
    NoToken: (401, "no valid token");
    /// 401 for a route that takes a bearer token or a `?ticket=`.
    NoTokenOrTicket: (401, "no valid token (or ticket)");
    /// 401 and 403 for an admin-only route.
    AdminOnly: (401, "no valid token"), (403, "not an admin token");
    /// 401 and 403 for a route that reads a project.
    ProjectReader: (401, "no valid token"), (403, "a project the token may not read");
    /// 401 and 403 for a route that changes a project's notifications.
    ProjectManager: (401, "no valid token"),
        (403, "the token may not manage this project's notifications");
    /// 401, 403 and 404 for a route that reads one notification.
    NotificationReader: (401, "no valid token"), (403, "a project the token may not read"),
        (404, "no such notification (or delivery)");
    /// 401, 403 and 404 for a route that changes or sends one notification.
    NotificationManager: (401, "no valid token"),
        (403, "the token may not manage this project's notifications"),
        (404, "no such notification (or delivery)");
}

#[cfg(test)]
mod unavailable_tests {
    use super::*;

    /// Status, `Retry-After` and the body's code, as a client sees them.
    fn answer(e: ApiError) -> (StatusCode, Option<String>, String) {
        let resp = e.into_response();
        let retry = resp
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (status, code) = (resp.status(), resp.into_body());
        let bytes = block_on(axum::body::to_bytes(code, 1 << 16)).expect("body");
        let body: Value = serde_json::from_slice(&bytes).expect("a JSON body");
        (
            status,
            retry,
            body["error"]["code"].as_str().unwrap_or("").to_owned(),
        )
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn every_store_away_is_503_with_retry_after_and_a_json_error() {
        let away = [
            (
                ApiError::from(LogError::Busy("connection refused".into())),
                "storage_busy",
            ),
            (
                ApiError::from(AuthError::Unavailable("connection refused".into())),
                "storage_unavailable",
            ),
            (
                ApiError::from(WebhooksError::Unavailable("connection refused".into())),
                "storage_unavailable",
            ),
            // The log under a notification change.
            (
                ApiError::from(WebhooksError::Log(LogError::Busy("closed".into()))),
                "storage_busy",
            ),
        ];
        for (e, code) in away {
            let (status, retry, got) = answer(e);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{code}");
            assert_eq!(retry.as_deref(), Some("2"), "{code}");
            assert_eq!(got, code);
        }
    }
}

#[cfg(test)]
mod full_tests {
    use super::*;

    #[test]
    fn a_full_disk_is_507_insufficient_storage_with_retry_after() {
        let full = "database or disk is full";
        for e in [
            ApiError::from(LogError::Full(full.into())),
            ApiError::from(AuthError::Full(full.into())),
            ApiError::from(WebhooksError::Full(full.into())),
            ApiError::from(WebhooksError::Log(LogError::Full(full.into()))),
        ] {
            assert_eq!(
                (e.status, e.code, e.retry_after),
                (
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    Some(STORAGE_FULL_RETRY_AFTER)
                )
            );
        }
    }
}

#[cfg(test)]
mod webhooks_tests {
    use super::*;

    #[test]
    fn a_notification_store_away_is_503_not_500() {
        let away = ApiError::from(WebhooksError::Unavailable("connection refused".into()));
        assert_eq!(
            (away.status, away.code),
            (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        );
        let broken = ApiError::from(WebhooksError::Backend("syntax error".into()));
        assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;

    #[test]
    fn a_token_store_that_is_away_is_503_not_500() {
        let away = AuthError::Unavailable("connection refused".into());
        let e = ApiError::from(away);
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
        );
        let broken = ApiError::from(AuthError::Backend("disk I/O error".into()));
        assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
