//! What an example event would be delivered to: the dispatcher's matching
//! (project, enabled, filters, a CDEvents form for `format: cdevents`)
//! applied to one event the caller made up, with the reason for each
//! notification that would not get it.
//!
//! It reads the registry only: nothing is stored, sent or logged.

use crate::engine::Inner;
use crate::model::{EventFormat, PreviewMatch, PreviewOut};
use crate::registry::Notification;
use cds_events_model::{EventType, FullEvent, ProjectKey};

impl Inner {
    /// See [`crate::Webhooks::preview`].
    pub(crate) fn preview(&self, project: &ProjectKey, event: &FullEvent) -> PreviewOut {
        let other_project = (event.project_key != project.as_str()).then(|| {
            format!(
                "the event is of project {:?}, not {project}",
                event.project_key
            )
        });
        PreviewOut {
            event_type: event.event_type.as_str().to_owned(),
            notifications: self
                .registry
                .list(project)
                .iter()
                .map(|n| {
                    let mut m = preview_one(n, event.event_type);
                    if let Some(why) = &other_project {
                        m.matches = false;
                        m.reason = Some(why.clone());
                    }
                    m
                })
                .collect(),
        }
    }
}

/// Whether `n` would get a delivery for an event of type `t` of its
/// project, in the dispatcher's order of checks.
fn preview_one(n: &Notification, t: EventType) -> PreviewMatch {
    let filters = matching_filters(n, t);
    let reason = if !n.enabled {
        Some(match &n.disabled_reason {
            Some(why) => format!("the notification is disabled ({why})"),
            None => "the notification is disabled".to_owned(),
        })
    } else if !n.matches(t) {
        Some(format!("no filter matches the event type {}", t.as_str()))
    } else if n.format == EventFormat::CdEvents && cds_events_model::cdevents::cd_kind(t).is_none()
    {
        Some(format!(
            "format cdevents: the event type {} has no CDEvents counterpart",
            t.as_str()
        ))
    } else {
        None
    };
    PreviewMatch {
        name: n.name.clone(),
        matches: reason.is_none(),
        filters,
        reason,
    }
}

/// The names of `n`'s filters with an expression matching `t` (each
/// compiled when it was stored, so they compile again here).
fn matching_filters(n: &Notification, t: EventType) -> Vec<String> {
    n.filters
        .iter()
        .filter(|(_, f)| {
            f.event.iter().any(|e| {
                regex::RegexBuilder::new(e)
                    .size_limit(crate::model::REGEX_SIZE_LIMIT)
                    .build()
                    .is_ok_and(|r| r.is_match(t.as_str()))
            })
        })
        .map(|(name, _)| name.clone())
        .collect()
}
