//! The filters as a reader writes them: the one list of filter keys, read by
//! the query string, a websocket `events` filter and the CLI's flags.

use cds_events_model::{
    DecodeError, ErrorCode, EventFilter, EventScope, ProjectKey, Timestamp, parse_families,
    parse_types,
};
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

/// The filters as text, the way a reader writes them: the one list of
/// filter keys. The query string (`GET /v2/events`, the SSE stream) reads it
/// under these serde names, a websocket `events` filter flattens it into its
/// own keys, and the CLI takes it as flags (the `clap` feature); its
/// `IntoParams` documents the query parameters. [`FilterText::parse`] turns
/// it into the model's [`EventFilter`]: trimming, comma lists, type prefixes,
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
            // An empty item is no key at all: skipped, never read as "global".
            scopes: text(self.projects.as_deref())
                .map(|p| {
                    p.split(',')
                        .map(str::trim)
                        .filter_map(|s| ProjectKey::new(s).ok())
                        .map(EventScope::Project)
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
