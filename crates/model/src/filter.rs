//! Event filters shared by the query API, and later by live streams and
//! webhooks: what a reader asks for, parsed once, checkable against one event.

use crate::{DecodeError, ErrorCode, EventType, Family, FullEvent, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use utoipa::IntoParams;

/// A conjunction of conditions on events. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Any of these projects (empty: any project, and global events too).
    /// `""` stands for the global-scope events, which have no project.
    pub projects: Vec<String>,
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
        (self.projects.is_empty() || self.projects.contains(&e.project_key))
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

/// The filters as text, the way a reader writes them: the one list of
/// filter keys. The query string (`GET /v2/events`, the SSE stream) reads it
/// under these serde names, a websocket `events` filter flattens it into its
/// own keys, and the CLI takes it as flags (the `clap` feature); its
/// `IntoParams` documents the query parameters. [`FilterText::parse`] turns
/// it into an [`EventFilter`]: trimming, comma lists, type prefixes,
/// families and times are read in one place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct FilterText {
    /// Project key; a comma-separated list means any of them.
    #[serde(rename = "project_key")]
    #[param(rename = "project_key")]
    #[cfg_attr(feature = "clap", arg(long = "project", value_name = "PROJECT"))]
    pub projects: Option<String>,
    /// Exact type, comma-separated list, or prefix with a trailing `*` (`RunJob*`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    #[cfg_attr(feature = "clap", arg(long = "type", value_name = "EVENT_TYPE"))]
    pub types: Option<String>,
    /// Family name(s), comma-separated (`WorkflowRunJob`).
    #[cfg_attr(feature = "clap", arg(long))]
    pub family: Option<String>,
    #[cfg_attr(feature = "clap", arg(long = "vcs", value_name = "VCS"))]
    pub vcs_name: Option<String>,
    #[cfg_attr(feature = "clap", arg(long))]
    pub repository: Option<String>,
    #[cfg_attr(feature = "clap", arg(long))]
    pub workflow: Option<String>,
    #[cfg_attr(feature = "clap", arg(long))]
    pub workflow_run_id: Option<String>,
    #[cfg_attr(feature = "clap", arg(long))]
    pub run_job_id: Option<String>,
    #[cfg_attr(feature = "clap", arg(long))]
    pub job_id: Option<String>,
    /// User id or username.
    #[cfg_attr(feature = "clap", arg(long))]
    pub user: Option<String>,
    #[cfg_attr(feature = "clap", arg(long))]
    pub region: Option<String>,
    #[cfg_attr(feature = "clap", arg(long))]
    pub hatchery: Option<String>,
    #[cfg_attr(feature = "clap", arg(long))]
    pub status: Option<String>,
    /// RFC 3339; events at or after.
    // The commands that take a time bound say themselves what it may be.
    #[cfg_attr(feature = "clap", arg(skip))]
    pub since: Option<String>,
    /// RFC 3339; events at or before.
    #[cfg_attr(feature = "clap", arg(skip))]
    pub until: Option<String>,
}

fn text(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|v| !v.is_empty())
}

fn owned(s: Option<&str>) -> Option<String> {
    text(s).map(str::to_owned)
}

fn time(field: &str, s: Option<&str>) -> Result<Option<Timestamp>, DecodeError> {
    match text(s) {
        None => Ok(None),
        Some(s) => Timestamp::parse(s).map(Some).map_err(|e| {
            DecodeError::new(
                ErrorCode::InvalidTimestamp,
                Some(field),
                format!("{s:?} is not an RFC 3339 timestamp ({e})"),
            )
        }),
    }
}

impl FilterText {
    /// The filter, or an error whose `field` names the offending key
    /// (`type`, `family`, `since`, `until`).
    pub fn parse(&self) -> Result<EventFilter, DecodeError> {
        let mut f = EventFilter {
            projects: text(self.projects.as_deref())
                .map(|p| {
                    p.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            vcs_name: owned(self.vcs_name.as_deref()),
            repository: owned(self.repository.as_deref()),
            workflow: owned(self.workflow.as_deref()),
            workflow_run_id: owned(self.workflow_run_id.as_deref()),
            run_job_id: owned(self.run_job_id.as_deref()),
            job_id: owned(self.job_id.as_deref()),
            user: owned(self.user.as_deref()),
            region: owned(self.region.as_deref()),
            hatchery: owned(self.hatchery.as_deref()),
            status: owned(self.status.as_deref()),
            since: time("since", self.since.as_deref())?,
            until: time("until", self.until.as_deref())?,
            ..EventFilter::default()
        };
        if let Some(t) = text(self.types.as_deref()) {
            f.restrict_types(parse_types(t)?);
        }
        if let Some(fam) = text(self.family.as_deref()) {
            f.restrict_types(parse_families(fam)?);
        }
        Ok(f)
    }

    /// The keys given, as query-string pairs under their serde names: how a
    /// client sends what it was given as flags.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(keys)) => keys
                .into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(v) => Some((k, v)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}
