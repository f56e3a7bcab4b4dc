//! What several resources read from a request the same way: the query API's
//! parameters (`GET /v2/events`, the SSE stream) and the narrowing of a
//! filter to what the caller may read.
//!
//! Routes import from here, never from each other.

use crate::auth::forbidden;
use crate::error::ApiError;
use cds_events_auth::{Principal, ReadScope};
use cds_events_model::EventFilter;
use serde::Deserialize;
use utoipa::IntoParams;

/// Query-string filters of `GET /v2/events` (and, later, of the live streams).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Project key; a comma-separated list means any of them.
    pub project_key: Option<String>,
    /// Exact type, comma-separated list, or prefix with a trailing `*` (`RunJob*`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Family name(s), comma-separated (`WorkflowRunJob`).
    pub family: Option<String>,
    pub vcs_name: Option<String>,
    pub repository: Option<String>,
    pub workflow: Option<String>,
    pub workflow_run_id: Option<String>,
    pub run_job_id: Option<String>,
    pub job_id: Option<String>,
    /// User id or username.
    pub user: Option<String>,
    pub region: Option<String>,
    pub hatchery: Option<String>,
    pub status: Option<String>,
    /// RFC 3339; events at or after.
    pub since: Option<String>,
    /// RFC 3339; events at or before.
    pub until: Option<String>,
    /// A `next_cursor` from a previous page: continue after it.
    pub cursor: Option<String>,
    /// Page size (default 100, max 1000).
    pub limit: Option<String>,
    /// `asc` (oldest first, the default) or `desc`.
    pub order: Option<String>,
}

impl EventsParams {
    /// The filter part, validated; an error names the parameter.
    pub fn filter(&self) -> Result<EventFilter, ApiError> {
        cds_events_model::FilterText {
            projects: self.project_key.as_deref(),
            types: self.event_type.as_deref(),
            family: self.family.as_deref(),
            vcs_name: self.vcs_name.as_deref(),
            repository: self.repository.as_deref(),
            workflow: self.workflow.as_deref(),
            workflow_run_id: self.workflow_run_id.as_deref(),
            run_job_id: self.run_job_id.as_deref(),
            job_id: self.job_id.as_deref(),
            user: self.user.as_deref(),
            region: self.region.as_deref(),
            hatchery: self.hatchery.as_deref(),
            status: self.status.as_deref(),
            since: self.since.as_deref(),
            until: self.until.as_deref(),
        }
        .parse()
        .map_err(|e| ApiError::bad_param(e.field.as_deref().unwrap_or("filter"), e.message))
    }
}

/// Narrows a filter to what the caller may read. Asking for a project the
/// token may not read is 403; asking for nothing in particular returns only
/// what it may read.
pub fn restrict_to_readable(caller: &Principal, filter: &mut EventFilter) -> Result<(), ApiError> {
    if let Some(p) = filter.projects.iter().find(|p| !caller.can_read(p)) {
        return Err(forbidden(format!("this token may not read project {p}")));
    }
    match caller.read_scope() {
        ReadScope::Everything => {}
        ReadScope::Some {
            projects: None,
            global,
        } => filter.exclude_global |= !global,
        ReadScope::Some {
            projects: Some(mine),
            global,
        } => {
            if filter.projects.is_empty() {
                filter.projects = mine;
                if global {
                    filter.projects.push(String::new());
                }
                if filter.projects.is_empty() {
                    return Err(forbidden("this token may not read events"));
                }
            }
        }
    }
    Ok(())
}
