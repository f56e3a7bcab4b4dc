//! The single error exit of the HTTP API: every failure becomes
//! `{"error":{"code","message","details"}}` with the right status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cds_events_log::LogError;
use serde_json::{Value, json};

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
            LogError::Busy(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_busy",
                "storage is busy, retry",
            ),
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
