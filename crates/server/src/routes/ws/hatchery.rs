//! `GET /v2/hatchery/ws`: the job queue of the regions a hatchery token may
//! use (`hatchery:REGION`, `hatchery:*`), across projects. The client sends
//! no filter: its grants are the filter.

use super::{QUEUE_TYPES, WsParams, WsRequest};
use crate::auth::forbidden;
use crate::error::{ApiError, ErrorBody, NoTokenOrTicket};
use axum::response::Response;
use cds_events_hub::Matcher;
use cds_events_model::{EventScope, FullEvent};
use std::sync::Arc;

/// What a hatchery follows: the job queue (enqueued jobs and their later
/// states) of the regions it may use.
#[derive(Debug, Clone)]
pub struct HatcheryQueue {
    /// `None`: every region.
    pub regions: Option<Vec<String>>,
}

impl Matcher for HatcheryQueue {
    fn matches(&self, e: &FullEvent) -> bool {
        QUEUE_TYPES.contains(&e.event_type)
            && self.regions.as_ref().is_none_or(|r| r.contains(&e.region))
    }
    fn scopes(&self) -> Option<Vec<EventScope>> {
        None
    }
}

/// The hatchery queue: jobs enqueued in the regions the token may use
/// (`hatchery:REGION`, `hatchery:*`), and their later states, so a hatchery
/// can drop a job that was cancelled or taken. No filter to send; messages
/// are CDS's; `?since=N` or `{"resume_from":N}` resume.
#[utoipa::path(get, path = "/v2/hatchery/ws", tag = "streams", params(WsParams),
    responses(
        (status = 101, description = "websocket of the job queue of the token's regions"),
        NoTokenOrTicket,
        (status = 403, description = "the token has no hatchery grant", body = ErrorBody),
    ))]
pub async fn hatchery_ws(req: WsRequest) -> Result<Response, ApiError> {
    let Some(regions) = req.caller.hatchery_regions() else {
        return Err(forbidden("this needs a hatchery:REGION grant"));
    };
    let queue: Arc<dyn Matcher> = Arc::new(HatcheryQueue { regions });
    req.open(Some(queue))
}
