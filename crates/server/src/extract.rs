//! What several resources read from a request the same way: the query API's
//! parameters (`GET /v2/events`, the SSE stream) and the narrowing of a
//! filter to what the caller may read.
//!
//! Routes import from here, never from each other.

use crate::auth::forbidden;
use crate::error::ApiError;
use axum::http::{HeaderMap, header};
use cds_events_api::{EventFormat, FilterText};
use cds_events_auth::{Principal, ReadScope};
use cds_events_model::{EventFilter, EventScope, ProjectKey};
use serde::Deserialize;
use utoipa::IntoParams;

/// The query string of `GET /v2/events` and of the SSE stream: the filter
/// keys (declared once, in [`FilterText`]) and the paging.
///
/// The document lists the filter keys from `FilterText`'s own `IntoParams`:
/// a handler names both, `params(FilterText, EventsParams)`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    #[serde(flatten)]
    #[param(ignore)]
    pub filter: FilterText,
    /// A `next_cursor` from a previous page: continue after it.
    pub cursor: Option<String>,
    /// Page size (default 100, max 1000).
    pub limit: Option<String>,
    /// `asc` (oldest first, the default) or `desc`.
    pub order: Option<String>,
    /// `cds` (the full events, the default) or `cloudevents` (CloudEvents
    /// 1.0; also chosen by `Accept: application/cloudevents-batch+json`, or
    /// `application/cloudevents+json` for one event).
    pub format: Option<String>,
}

impl EventsParams {
    /// The filter part, validated; an error names the parameter.
    pub fn filter(&self) -> Result<EventFilter, ApiError> {
        self.filter
            .parse()
            .map_err(|e| ApiError::bad_param(e.field.as_deref().unwrap_or("filter"), e.message))
    }
}

/// The output format of a request: its `format` parameter, else CloudEvents
/// when `Accept` names `media` (a CloudEvents media type), else CDS's.
pub fn event_format(
    format: Option<&str>,
    headers: &HeaderMap,
    media: &str,
) -> Result<EventFormat, ApiError> {
    if let Some(f) = format.map(str::trim).filter(|f| !f.is_empty()) {
        return f.parse().map_err(|e: cds_events_api::UnknownFormat| {
            ApiError::bad_param("format", e.to_string())
        });
    }
    let accepts = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(media)
        });
    Ok(if accepts {
        EventFormat::CloudEvents
    } else {
        EventFormat::Cds
    })
}

/// Narrows a filter to what the caller may read. Asking for a project the
/// token may not read is 403; asking for nothing in particular returns only
/// what it may read.
pub fn restrict_to_readable(caller: &Principal, filter: &mut EventFilter) -> Result<(), ApiError> {
    if let Some(s) = filter.scopes.iter().find(|s| !caller.can_read(s)) {
        let p = s.project().map(ProjectKey::as_str).unwrap_or_default();
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
            if filter.scopes.is_empty() {
                filter.scopes = mine.into_iter().map(EventScope::Project).collect();
                if global {
                    filter.scopes.push(EventScope::Global);
                }
                if filter.scopes.is_empty() {
                    return Err(forbidden("this token may not read events"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Query;
    use axum::http::Uri;
    use cds_events_model::{EventType, FullEvent};

    fn params(query: &str) -> EventsParams {
        let uri: Uri = format!("/v2/events?{query}").parse().expect("uri");
        Query::<EventsParams>::try_from_uri(&uri)
            .expect("parameters")
            .0
    }

    #[test]
    fn the_query_string_names_the_filter_keys_as_it_always_did() {
        let p = params(
            "project_key=A,B&type=RunJob*&family=WorkflowRun&vcs_name=gh&user=u&since=2024-01-01T00:00:00Z&cursor=7&limit=5&order=desc",
        );
        assert_eq!(p.filter.projects.as_deref(), Some("A,B"));
        assert_eq!(p.filter.types.as_deref(), Some("RunJob*"));
        assert_eq!(p.filter.vcs_name.as_deref(), Some("gh"));
        assert_eq!(p.filter.since.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(
            (p.cursor.as_deref(), p.limit.as_deref(), p.order.as_deref()),
            (Some("7"), Some("5"), Some("desc"))
        );
        let f = p.filter().expect("a valid filter");
        let project = |k: &str| EventScope::Project(k.parse().expect("key"));
        assert_eq!(f.scopes, [project("A"), project("B")]);
        assert_eq!(f.user.as_deref(), Some("u"));
    }

    #[test]
    fn the_websocket_names_of_a_filter_mean_nothing_in_a_query_string() {
        let p = params("types=RunJobEnded&projects=A");
        assert_eq!(p.filter, FilterText::default());
    }

    #[test]
    fn the_format_parameter_wins_over_accept_which_wins_over_the_default() {
        let batch = cds_events_model::cloudevents::BATCH_CONTENT_TYPE;
        let mut h = HeaderMap::new();
        assert_eq!(event_format(None, &h, batch).ok(), Some(EventFormat::Cds));
        h.insert(
            header::ACCEPT,
            "text/html, Application/CloudEvents-Batch+JSON;q=0.9"
                .parse()
                .expect("value"),
        );
        assert_eq!(
            event_format(None, &h, batch).ok(),
            Some(EventFormat::CloudEvents)
        );
        assert_eq!(
            event_format(Some("cds"), &h, batch).ok(),
            Some(EventFormat::Cds)
        );
        let e = event_format(Some("xml"), &h, batch).expect_err("refused");
        assert!(e.message.starts_with("format: "), "{}", e.message);
    }

    #[test]
    fn a_bad_filter_value_is_named_in_the_error() {
        let e = params("type=Nope").filter().expect_err("refused");
        assert_eq!(e.code, "invalid_parameter");
        assert!(e.message.starts_with("type: "), "{}", e.message);
    }

    #[test]
    fn a_reader_without_read_global_never_gets_a_global_event_through_the_filter() {
        let caller = |grants: &[&str]| Principal {
            token_id: "t".into(),
            name: "t".into(),
            grants: grants.iter().map(|g| g.parse().expect("grant")).collect(),
        };
        let mut global = FullEvent::new(EventType::HatcheryCreated);
        global.hatchery = "h".into();
        let mut of_a = FullEvent::new(EventType::RunCrafted);
        of_a.project_key = "A".into();
        for grants in [&["read:A"][..], &["read:*"][..]] {
            let mut f = EventFilter::default();
            restrict_to_readable(&caller(grants), &mut f).expect("may read");
            assert!(!f.matches(&global), "{grants:?}");
            assert!(f.matches(&of_a), "{grants:?}");
        }
        let mut f = EventFilter::default();
        restrict_to_readable(&caller(&["read:A", "read-global"]), &mut f).expect("may read");
        assert!(f.matches(&global) && f.matches(&of_a));
    }
}
