//! CDS's websocket filters (spec §5), and our `events` superset, as a
//! [`Matcher`] bounded by what the caller may read.

use crate::Matcher;
use cds_events_auth::{Principal, ReadScope};
use cds_events_model::{EventFilter, EventType, FullEvent, Scope};
use serde::Deserialize;
use std::sync::Arc;

/// Types a `project` filter receives.
const PROJECT_TYPES: &[EventType] = &[
    EventType::RepositoryCreated,
    EventType::RepositoryDeleted,
    EventType::AnalysisStart,
    EventType::AnalysisDone,
];
/// Types a `project-runs` filter receives.
const RUN_TYPES: &[EventType] = &[
    EventType::RunCrafted,
    EventType::RunBuilding,
    EventType::RunEnded,
    EventType::RunRestart,
];
/// Types a `queue` filter receives.
pub const QUEUE_TYPES: &[EventType] = &[
    EventType::RunJobEnqueued,
    EventType::RunJobBlocked,
    EventType::RunJobCancelled,
    EventType::RunJobSkipped,
    EventType::RunJobStopped,
    EventType::RunJobScheduled,
    EventType::RunJobBuilding,
    EventType::RunJobEnded,
];

/// One filter as a client sends it: CDS's four keys, plus the query API's
/// keys for our `events` type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FilterIn {
    #[serde(rename = "type")]
    pub filter_type: String,
    pub project_key: String,
    pub project_runs_params: String,
    pub purge_report_id: String,
    // The `events` superset.
    /// Event types: exact, comma list or `Prefix*`.
    pub types: Option<String>,
    pub family: Option<String>,
    pub vcs_name: Option<String>,
    pub repository: Option<String>,
    pub workflow: Option<String>,
    pub workflow_run_id: Option<String>,
    pub run_job_id: Option<String>,
    pub job_id: Option<String>,
    pub user: Option<String>,
    pub region: Option<String>,
    pub hatchery: Option<String>,
    pub status: Option<String>,
}

/// A compiled filter.
#[derive(Debug, Clone)]
enum Compiled {
    Project(String),
    ProjectRuns { project: String, params: RunParams },
    PurgeReport { project: String, report: String },
    Queue,
    Global,
    Events(EventFilter),
}

#[derive(Debug, Clone, Default)]
struct RunParams {
    workflow: Option<String>,
    repository: Option<String>,
    branch: Option<String>,
    status: Option<String>,
    user: Option<String>,
}

impl RunParams {
    fn parse(q: &str) -> Result<RunParams, String> {
        let mut p = RunParams::default();
        for (k, v) in url::form_urlencoded::parse(q.trim_start_matches('?').as_bytes()) {
            let v = Some(v.into_owned());
            match k.as_ref() {
                "workflow" => p.workflow = v,
                "repository" => p.repository = v,
                "branch" | "ref" => p.branch = v,
                "status" => p.status = v,
                "user" | "username" => p.user = v,
                other => return Err(format!("unknown project_runs_params key {other:?}")),
            }
        }
        Ok(p)
    }

    fn matches(&self, e: &FullEvent) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.workflow, &e.workflow)
            && eq(&self.repository, &e.repository)
            && eq(&self.status, &e.status)
            && self
                .user
                .as_deref()
                .is_none_or(|u| u == e.username || u == e.user_id)
            && self
                .branch
                .as_deref()
                .is_none_or(|b| branch_of(e).is_some_and(|have| have == b))
    }
}

/// The git branch of a run, from its payload's git context when present
/// (`contexts.git.ref_name`, `…branch`, or `…ref` as `refs/heads/X`).
fn branch_of(e: &FullEvent) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(e.payload.get()).ok()?;
    let git = v
        .get("contexts")
        .and_then(|c| c.get("git"))
        .or_else(|| v.get("git"))?;
    for key in ["ref_name", "branch"] {
        if let Some(b) = git.get(key).and_then(|b| b.as_str()) {
            return Some(b.to_owned());
        }
    }
    let r = git.get("ref")?.as_str()?;
    Some(r.strip_prefix("refs/heads/").unwrap_or(r).to_owned())
}

impl Compiled {
    fn matches(&self, e: &FullEvent) -> bool {
        match self {
            Compiled::Project(p) => e.project_key == *p && PROJECT_TYPES.contains(&e.event_type),
            Compiled::ProjectRuns { project, params } => {
                e.project_key == *project && RUN_TYPES.contains(&e.event_type) && params.matches(e)
            }
            Compiled::PurgeReport { project, report } => {
                e.event_type == EventType::EventProjectPurge
                    && e.project_key == *project
                    && e.purge_report_id == *report
            }
            Compiled::Queue => QUEUE_TYPES.contains(&e.event_type),
            Compiled::Global => e.event_type.scope() == Scope::Global,
            Compiled::Events(f) => f.matches(e),
        }
    }

    /// `None`: any project.
    fn projects(&self) -> Option<Vec<String>> {
        match self {
            Compiled::Project(p)
            | Compiled::ProjectRuns { project: p, .. }
            | Compiled::PurgeReport { project: p, .. } => Some(vec![p.clone()]),
            Compiled::Global => Some(vec![String::new()]),
            Compiled::Queue => None,
            Compiled::Events(f) => (!f.projects.is_empty()).then(|| f.projects.clone()),
        }
    }
}

/// A client's whole filter set, bounded by its grants.
#[derive(Debug, Clone)]
pub struct CdsFilterSet {
    filters: Vec<Compiled>,
    caller: Arc<Principal>,
}

impl CdsFilterSet {
    /// Validates and compiles filters the way CDS does (same messages), and
    /// checks each against the caller's grants.
    pub fn compile(filters: &[FilterIn], caller: Arc<Principal>) -> Result<CdsFilterSet, String> {
        let mut out = Vec::with_capacity(filters.len());
        let readable = |p: &str| -> Result<(), String> {
            if caller.can_read(p) {
                Ok(())
            } else {
                Err(format!("not allowed to read project {p}"))
            }
        };
        for f in filters {
            let pk = f.project_key.trim();
            let compiled = match f.filter_type.as_str() {
                "project" | "project-runs" if pk.is_empty() => {
                    return Err("missing project key".into());
                }
                "project" => {
                    readable(pk)?;
                    Compiled::Project(pk.to_owned())
                }
                "project-runs" => {
                    readable(pk)?;
                    Compiled::ProjectRuns {
                        project: pk.to_owned(),
                        params: RunParams::parse(&f.project_runs_params)?,
                    }
                }
                "project-purge-report" => {
                    if pk.is_empty() || f.purge_report_id.trim().is_empty() {
                        return Err("missing project key or report id".into());
                    }
                    readable(pk)?;
                    Compiled::PurgeReport {
                        project: pk.to_owned(),
                        report: f.purge_report_id.trim().to_owned(),
                    }
                }
                "queue" => Compiled::Queue,
                "global" => {
                    if !caller.can_read("") {
                        return Err("not allowed to read global events".into());
                    }
                    Compiled::Global
                }
                "events" => {
                    let ef = cds_events_model::FilterText {
                        projects: Some(pk),
                        types: f.types.as_deref(),
                        family: f.family.as_deref(),
                        vcs_name: f.vcs_name.as_deref(),
                        repository: f.repository.as_deref(),
                        workflow: f.workflow.as_deref(),
                        workflow_run_id: f.workflow_run_id.as_deref(),
                        run_job_id: f.run_job_id.as_deref(),
                        job_id: f.job_id.as_deref(),
                        user: f.user.as_deref(),
                        region: f.region.as_deref(),
                        hatchery: f.hatchery.as_deref(),
                        status: f.status.as_deref(),
                        since: None,
                        until: None,
                    }
                    .parse()
                    .map_err(|e| e.message)?;
                    for p in &ef.projects {
                        readable(p)?;
                    }
                    Compiled::Events(ef)
                }
                other => return Err(format!("invalid or empty given filter type: {other}")),
            };
            out.push(compiled);
        }
        Ok(CdsFilterSet {
            filters: out,
            caller,
        })
    }
}

impl Matcher for CdsFilterSet {
    fn matches(&self, e: &FullEvent) -> bool {
        // The grants bound every filter, whatever it asked for.
        self.caller.can_read(&e.project_key) && self.filters.iter().any(|f| f.matches(e))
    }

    fn projects(&self) -> Option<Vec<String>> {
        let mut all: Vec<String> = Vec::new();
        for f in &self.filters {
            match f.projects() {
                Some(ps) => all.extend(ps),
                None => {
                    // Any project — which, for a reader of a few, is those few.
                    return match self.caller.read_scope() {
                        ReadScope::Some {
                            projects: Some(mut mine),
                            global,
                        } => {
                            if global {
                                mine.push(String::new());
                            }
                            Some(mine)
                        }
                        _ => None,
                    };
                }
            }
        }
        all.sort();
        all.dedup();
        Some(all)
    }
}

/// What a hatchery follows on `/v2/hatchery/ws`: the job queue (enqueued
/// jobs and their later states) of the regions it may use, across projects.
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
    fn projects(&self) -> Option<Vec<String>> {
        None
    }
}
