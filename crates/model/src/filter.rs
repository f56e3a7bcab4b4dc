//! Event filters shared by the query API and the live streams: what a reader
//! asks for, parsed once, checkable against one event. The text a reader
//! writes (`FilterText`, the keys) is the API crate's; it parses into an
//! [`EventFilter`] with [`parse_types`] and [`parse_families`].

use crate::{DecodeError, ErrorCode, EventScope, EventType, Family, FullEvent, Timestamp};
use std::collections::BTreeSet;

/// A conjunction of conditions on events. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Events of any of these scopes (empty: every project, and global
    /// events too). [`EventScope::Global`] asks for the global-scope events.
    pub scopes: Vec<EventScope>,
    /// Leave out the global-scope events (for readers without `read-global`).
    pub exclude_global: bool,
    /// Any of these types (`None`: every type).
    pub types: Option<BTreeSet<EventType>>,
    pub vcs_name: Option<String>,
    pub repository: Option<String>,
    pub workflow: Option<String>,
    pub workflow_run_id: Option<String>,
    pub run_job_id: Option<String>,
    pub job_id: Option<String>,
    /// Matches `user_id` or `username`.
    pub user: Option<String>,
    pub region: Option<String>,
    pub hatchery: Option<String>,
    pub status: Option<String>,
    /// Inclusive lower bound on the event's timestamp.
    pub since: Option<Timestamp>,
    /// Inclusive upper bound on the event's timestamp.
    pub until: Option<Timestamp>,
}

fn eq(want: &Option<String>, have: &str) -> bool {
    want.as_deref().is_none_or(|w| w == have)
}

impl EventFilter {
    /// Whether `e` satisfies every condition.
    pub fn matches(&self, e: &FullEvent) -> bool {
        (self.scopes.is_empty() || self.scopes.iter().any(|s| s.owns(&e.project_key)))
            && !(self.exclude_global && e.project_key.is_empty())
            && self
                .types
                .as_ref()
                .is_none_or(|t| t.contains(&e.event_type))
            && eq(&self.vcs_name, &e.vcs_name)
            && eq(&self.repository, &e.repository)
            && eq(&self.workflow, &e.workflow)
            && eq(&self.workflow_run_id, &e.workflow_run_id)
            && eq(&self.run_job_id, &e.run_job_id)
            && eq(&self.job_id, &e.job_id)
            && self
                .user
                .as_deref()
                .is_none_or(|u| u == e.user_id || u == e.username)
            && eq(&self.region, &e.region)
            && eq(&self.hatchery, &e.hatchery)
            && eq(&self.status, &e.status)
            && self
                .since
                .is_none_or(|s| e.timestamp.unix_nanos() >= s.unix_nanos())
            && self
                .until
                .is_none_or(|u| e.timestamp.unix_nanos() <= u.unix_nanos())
    }

    /// Narrows the type set to `types` (intersection with any set already there).
    pub fn restrict_types(&mut self, types: BTreeSet<EventType>) {
        self.types = Some(match self.types.take() {
            Some(existing) => existing.intersection(&types).copied().collect(),
            None => types,
        });
    }
}

/// Parses a type filter: a comma-separated list of exact types and prefixes
/// ending in `*` (`RunJob*`). An unknown exact type or a prefix that matches
/// nothing is an error naming it.
pub fn parse_types(spec: &str) -> Result<BTreeSet<EventType>, DecodeError> {
    let mut out = BTreeSet::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(prefix) = part.strip_suffix('*') {
            let found = EventType::with_prefix(prefix);
            if found.is_empty() {
                return Err(DecodeError::new(
                    ErrorCode::UnknownType,
                    Some("type"),
                    format!("type prefix {part:?} matches no event type"),
                ));
            }
            out.extend(found);
        } else {
            match EventType::parse(part) {
                Some(t) => {
                    out.insert(t);
                }
                None => {
                    let suggestions: Vec<&'static str> = EventType::suggest(part, 3)
                        .into_iter()
                        .map(EventType::as_str)
                        .collect();
                    return Err(DecodeError {
                        code: ErrorCode::UnknownType,
                        field: Some("type".to_owned()),
                        message: format!(
                            "unknown event type {part:?}; did you mean {}?",
                            suggestions.join(", ")
                        ),
                        suggestions,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Parses a comma-separated list of family names into the set of their types.
pub fn parse_families(spec: &str) -> Result<BTreeSet<EventType>, DecodeError> {
    let mut out = BTreeSet::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let family: Family = part.parse().map_err(|_| {
            let known: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
            DecodeError::new(
                ErrorCode::UnknownType,
                Some("family"),
                format!(
                    "unknown family {part:?}; known families: {}",
                    known.join(", ")
                ),
            )
        })?;
        out.extend(family.types().iter().copied());
    }
    Ok(out)
}
