//! `POST /v2/project/{projectKey}/notification/preview`: which of the
//! project's notifications an example event would be delivered to. The
//! event is validated as ingest validates it; nothing is stored or sent.
//!
//! The path is a static route beside `…/notification/{name}`: the name
//! `preview` is reserved (`cds_events_webhooks` refuses a notification of
//! that name), so every method of `…/notification/preview` has one meaning.

use super::access::{OnProject, Read};
use crate::error::{ApiError, ErrorBody, ProjectReader};
use crate::schema::FullEventSchema;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use cds_events_api::PreviewOut;
use serde_json::json;

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
    p: OnProject<Read>,
    body: Bytes,
) -> Result<Json<PreviewOut>, ApiError> {
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
