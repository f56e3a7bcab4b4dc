//! `POST /v2/project/{projectKey}/notification/preview`: which of the
//! project's notifications an example event would be delivered to. The
//! event is validated as ingest validates it; nothing is stored or sent.
//!
//! The path shares its shape with `…/notification/{name}` (a notification
//! may well be called `preview`, and must stay readable by GET), so the
//! router sends `POST …/notification/{name}` here and anything but
//! `preview` is refused as a method the notification does not have.

use super::access::{OnNotification, Read};
use crate::error::{ApiError, ErrorBody, ProjectReader};
use crate::schema::FullEventSchema;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use cds_events_api::PreviewOut;
use serde_json::json;

/// The one name under `…/notification/` that POST answers.
pub const PREVIEW: &str = "preview";

/// Preview which notifications an event would match. The body is one CDS
/// event (the full-event or producer shape, as `POST /v2/events` takes it)
/// of this project; the answer lists every notification of the project,
/// whether it matches, the filters that do, and why not for the others.
#[utoipa::path(post, path = "/v2/project/{projectKey}/notification/preview", tag = "notifications",
    params(("projectKey" = String, Path, description = "the project key")),
    request_body(content = FullEventSchema, description = "one example event",
        content_type = "application/json"),
    responses(
        (status = 200, description = "each notification of the project, matching or why not", body = PreviewOut),
        (status = 400, description = "an invalid event, the field named in details", body = ErrorBody),
        ProjectReader,
    ))]
pub async fn preview(
    State(st): State<AppState>,
    p: OnNotification<Read>,
    body: Bytes,
) -> Result<Json<PreviewOut>, ApiError> {
    if p.name != PREVIEW {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "a notification takes GET, PUT and DELETE; POST is for …/notification/preview",
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_utf8",
            format!("body is not valid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    let event = cds_events_model::decode_event(text, &st.config.ingest.limits).map_err(|e| {
        ApiError::bad_request("invalid_event", e.message.clone()).with_details(vec![json!(e)])
    })?;
    if event.project_key != p.project.as_str() {
        let message = format!(
            "the event is of project {:?}; only events of {} reach its notifications",
            event.project_key, p.project
        );
        return Err(
            ApiError::bad_request("invalid_event", format!("project_key: {message}"))
                .with_details(vec![json!({"field": "project_key", "message": message})]),
        );
    }
    Ok(Json(st.webhooks.preview(&p.project, &event)))
}
