//! CDS's websocket messages and filters (spec §5), and our `events`
//! superset: what a client may send, parsed and checked against the caller's
//! grants once, then kept as a hub [`Matcher`] that never matches an event
//! the caller may not read.
//!
//! Every refusal is a [`Refused`] whose text is what CDS answers in its KO
//! message; the session sends it and keeps the connection open.

use super::QUEUE_TYPES;
use cds_events_api::FilterText;
use cds_events_auth::{Principal, ReadScope};
use cds_events_hub::Matcher;
use cds_events_log::Seq;
use cds_events_model::{
    DecodeError, EventFilter, EventScope, EventType, FullEvent, ProjectKey, Scope,
};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// Why a client message or filter was refused; the text goes in the KO.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("invalid message: {0}")]
    Message(serde_json::Error),
    #[error("invalid filter: {0}")]
    Filter(serde_json::Error),
    #[error("a filter is a JSON object")]
    NotAnObject,
    #[error("resume_from must be a sequence number")]
    ResumeFrom,
    /// CDS's words, for an unknown type and for a message that asks nothing.
    #[error("invalid or empty given filter type: {0}")]
    FilterType(String),
    #[error("missing project key")]
    MissingProject,
    #[error("missing project key or report id")]
    MissingReport,
    #[error("unknown project_runs_params key {0:?}")]
    RunParam(String),
    #[error("not allowed to read project {0}")]
    Project(ProjectKey),
    #[error("not allowed to read global events")]
    Global,
    /// An `events` filter's conditions, as the query API words them.
    #[error("{}", .0.message)]
    Events(DecodeError),
}

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

/// One filter as a client sends it: CDS's four keys, plus, for our `events`
/// type, the query API's filter keys ([`FilterText`]) under the same names,
/// except that the types are `types` (`type` is the filter's own).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FilterIn {
    #[serde(rename = "type")]
    pub filter_type: String,
    pub project_key: String,
    pub project_runs_params: String,
    pub purge_report_id: String,
    /// Event types: exact, comma list or `Prefix*`.
    pub types: Option<String>,
    /// The other keys of an `events` filter. `project_key` and `type` never
    /// land here: the keys above take them first.
    #[serde(flatten)]
    pub conditions: FilterText,
}

/// A compiled filter.
#[derive(Debug, Clone)]
enum Compiled {
    Project(ProjectKey),
    ProjectRuns {
        project: ProjectKey,
        params: RunParams,
    },
    PurgeReport {
        project: ProjectKey,
        report: String,
    },
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
    fn parse(q: &str) -> Result<RunParams, Refused> {
        let mut p = RunParams::default();
        for (k, v) in url::form_urlencoded::parse(q.trim_start_matches('?').as_bytes()) {
            let v = Some(v.into_owned());
            match k.as_ref() {
                "workflow" => p.workflow = v,
                "repository" => p.repository = v,
                "branch" | "ref" => p.branch = v,
                "status" => p.status = v,
                "user" | "username" => p.user = v,
                other => return Err(Refused::RunParam(other.to_owned())),
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
            Compiled::Project(p) => *p == *e.project_key && PROJECT_TYPES.contains(&e.event_type),
            Compiled::ProjectRuns { project, params } => {
                *project == *e.project_key && RUN_TYPES.contains(&e.event_type) && params.matches(e)
            }
            Compiled::PurgeReport { project, report } => {
                e.event_type == EventType::EventProjectPurge
                    && *project == *e.project_key
                    && e.purge_report_id == *report
            }
            Compiled::Queue => QUEUE_TYPES.contains(&e.event_type),
            Compiled::Global => e.event_type.scope() == Scope::Global,
            Compiled::Events(f) => f.matches(e),
        }
    }

    /// `None`: any scope.
    fn scopes(&self) -> Option<Vec<EventScope>> {
        match self {
            Compiled::Project(p)
            | Compiled::ProjectRuns { project: p, .. }
            | Compiled::PurgeReport { project: p, .. } => {
                Some(vec![EventScope::Project(p.clone())])
            }
            Compiled::Global => Some(vec![EventScope::Global]),
            Compiled::Queue => None,
            Compiled::Events(f) => (!f.scopes.is_empty()).then(|| f.scopes.clone()),
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
    pub fn compile(filters: &[FilterIn], caller: Arc<Principal>) -> Result<CdsFilterSet, Refused> {
        let mut out = Vec::with_capacity(filters.len());
        let readable = |scope: &EventScope| -> Result<(), Refused> {
            match scope {
                _ if caller.can_read(scope) => Ok(()),
                EventScope::Global => Err(Refused::Global),
                EventScope::Project(p) => Err(Refused::Project(p.clone())),
            }
        };
        // A project filter's key, readable by the caller; `missing` when empty.
        let project = |pk: &str, missing: Refused| -> Result<ProjectKey, Refused> {
            let key = ProjectKey::new(pk).map_err(|_| missing)?;
            readable(&EventScope::Project(key.clone()))?;
            Ok(key)
        };
        for f in filters {
            let pk = f.project_key.trim();
            let compiled = match f.filter_type.as_str() {
                "project" => Compiled::Project(project(pk, Refused::MissingProject)?),
                "project-runs" => {
                    let key = project(pk, Refused::MissingProject)?;
                    Compiled::ProjectRuns {
                        project: key,
                        params: RunParams::parse(&f.project_runs_params)?,
                    }
                }
                "project-purge-report" => {
                    if f.purge_report_id.trim().is_empty() {
                        return Err(Refused::MissingReport);
                    }
                    Compiled::PurgeReport {
                        project: project(pk, Refused::MissingReport)?,
                        report: f.purge_report_id.trim().to_owned(),
                    }
                }
                "queue" => Compiled::Queue,
                "global" => {
                    if !caller.can_read(&EventScope::Global) {
                        return Err(Refused::Global);
                    }
                    Compiled::Global
                }
                "events" => {
                    let ef = FilterText {
                        projects: Some(pk.to_owned()),
                        types: f.types.clone(),
                        // A live filter has no time bounds: `since` resumes.
                        since: None,
                        until: None,
                        ..f.conditions.clone()
                    }
                    .parse()
                    .map_err(Refused::Events)?;
                    for scope in &ef.scopes {
                        readable(scope)?;
                    }
                    Compiled::Events(ef)
                }
                other => return Err(Refused::FilterType(other.to_owned())),
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
        self.caller.can_read_event(e) && self.filters.iter().any(|f| f.matches(e))
    }

    /// A set of one `events` filter is a log query: a catch-up then reads
    /// through the log's indexes what it matches, without decoding every
    /// event to ask (nor refusing a resume point further back than
    /// `stream.max_catchup`, as SSE does not). Only where the grants
    /// cannot narrow it: its projects were each checked readable when it
    /// was compiled, or, naming none, the caller reads everything.
    fn as_filter(&self) -> Option<&EventFilter> {
        match self.filters.as_slice() {
            [Compiled::Events(f)]
                if !f.scopes.is_empty()
                    || matches!(self.caller.read_scope(), ReadScope::Everything) =>
            {
                Some(f)
            }
            _ => None,
        }
    }

    fn scopes(&self) -> Option<Vec<EventScope>> {
        let mut all: Vec<EventScope> = Vec::new();
        for f in &self.filters {
            match f.scopes() {
                Some(ps) => all.extend(ps),
                None => {
                    // Any project — which, for a reader of a few, is those few.
                    return match self.caller.read_scope() {
                        ReadScope::Some {
                            projects: Some(mine),
                            global,
                        } => {
                            let mut mine: Vec<EventScope> =
                                mine.into_iter().map(EventScope::Project).collect();
                            if global {
                                mine.push(EventScope::Global);
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

/// What a client message asks for.
#[derive(Debug)]
pub struct Request {
    /// A new filter set, replacing the whole current one.
    pub filters: Option<Vec<FilterIn>>,
    pub resume_from: Option<Seq>,
}

/// A client message: a filter, an array of filters, or
/// `{"filters":[…],"resume_from":N}` (either key alone too).
pub fn parse_request(text: &str) -> Result<Request, Refused> {
    let v: Value = serde_json::from_str(text).map_err(Refused::Message)?;
    let as_filters = |v: Value| -> Result<Vec<FilterIn>, Refused> {
        match v {
            Value::Array(items) => items
                .into_iter()
                .map(|i| serde_json::from_value(i).map_err(Refused::Filter))
                .collect(),
            obj @ Value::Object(_) => {
                Ok(vec![serde_json::from_value(obj).map_err(Refused::Filter)?])
            }
            _ => Err(Refused::NotAnObject),
        }
    };
    match v {
        Value::Object(mut m) if !m.contains_key("type") => {
            let resume_from = match m.remove("resume_from") {
                None | Some(Value::Null) => None,
                Some(r) => Some(Seq(r.as_u64().ok_or(Refused::ResumeFrom)?)),
            };
            let filters = m.remove("filters").map(as_filters).transpose()?;
            if filters.is_none() && resume_from.is_none() {
                return Err(Refused::FilterType(String::new()));
            }
            Ok(Request {
                filters,
                resume_from,
            })
        }
        other => Ok(Request {
            filters: Some(as_filters(other)?),
            resume_from: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cds_events_auth::Grant;

    fn key(k: &str) -> ProjectKey {
        k.parse().expect("key")
    }

    fn reader(grants: &[&str]) -> Arc<Principal> {
        Arc::new(Principal {
            token_id: "t".into(),
            name: "t".into(),
            grants: grants
                .iter()
                .map(|g| g.parse::<Grant>().expect("grant"))
                .collect(),
        })
    }

    fn compile(filters: serde_json::Value, grants: &[&str]) -> Result<CdsFilterSet, Refused> {
        let request = parse_request(&filters.to_string()).expect("a filter message");
        CdsFilterSet::compile(&request.filters.expect("filters"), reader(grants))
    }

    fn refusal(r: Result<CdsFilterSet, Refused>) -> String {
        match r {
            Ok(set) => panic!("accepted: {set:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_message_that_asks_nothing_is_refused_in_cds_words() {
        let e = parse_request("{}").expect_err("refused");
        assert_eq!(e.to_string(), "invalid or empty given filter type: ");
        let e = parse_request("[1]").expect_err("refused");
        assert!(e.to_string().starts_with("invalid filter: "), "{e}");
        let e = parse_request(r#"{"resume_from":"x"}"#).expect_err("refused");
        assert_eq!(e.to_string(), "resume_from must be a sequence number");
    }

    #[test]
    fn filters_and_resume_come_in_one_message_or_alone() {
        let r = parse_request(r#"{"filters":[{"type":"queue"}],"resume_from":4}"#).expect("ok");
        assert_eq!(
            (r.filters.map(|f| f.len()), r.resume_from),
            (Some(1), Some(Seq(4)))
        );
        let r = parse_request(r#"{"resume_from":4}"#).expect("ok");
        assert!(r.filters.is_none());
        let r = parse_request(r#"{"type":"global"}"#).expect("ok");
        assert_eq!(r.filters.map(|f| f.len()), Some(1));
    }

    #[test]
    fn a_filter_outside_the_grants_is_refused_in_cds_words() {
        let grants = ["read:A"];
        let e = compile(
            serde_json::json!({"type": "project", "project_key": "B"}),
            &grants,
        );
        assert_eq!(refusal(e), "not allowed to read project B");
        let e = compile(serde_json::json!({"type": "global"}), &grants);
        assert_eq!(refusal(e), "not allowed to read global events");
        let e = compile(
            serde_json::json!({"type": "events", "project_key": "A,B"}),
            &grants,
        );
        assert_eq!(refusal(e), "not allowed to read project B");
        let e = compile(serde_json::json!({"type": "nope"}), &grants);
        assert_eq!(refusal(e), "invalid or empty given filter type: nope");
        let e = compile(serde_json::json!({"type": "project"}), &grants);
        assert_eq!(refusal(e), "missing project key");
    }

    #[test]
    fn an_events_filter_refuses_an_unknown_type_as_the_query_api_does() {
        let e = compile(
            serde_json::json!({"type": "events", "types": "Nope"}),
            &["admin"],
        );
        assert!(refusal(e).starts_with("unknown event type \"Nope\""));
    }

    #[test]
    fn an_events_filter_takes_the_query_keys_but_no_time_bounds() {
        let r = parse_request(
            r#"{"type":"events","project_key":"A","types":"RunJobEnded","vcs_name":"gh","since":"2030-01-01T00:00:00Z"}"#,
        )
        .expect("a filter");
        let f = &r.filters.expect("filters")[0];
        assert_eq!(f.conditions.vcs_name.as_deref(), Some("gh"));
        assert_eq!(f.conditions.projects, None, "project_key is CDS's key");
        assert_eq!(f.conditions.types, None, "type is the filter's own");
        let set =
            CdsFilterSet::compile(std::slice::from_ref(f), reader(&["admin"])).expect("accepted");
        match &set.filters[0] {
            Compiled::Events(ef) => {
                assert_eq!(ef.scopes, [EventScope::Project(key("A"))]);
                assert_eq!(ef.types.as_ref().map(|t| t.len()), Some(1));
                assert_eq!(ef.vcs_name.as_deref(), Some("gh"));
                assert_eq!(ef.since, None);
            }
            other => panic!("compiled as {other:?}"),
        }
    }

    #[test]
    fn a_queue_filter_of_a_reader_of_few_projects_is_indexed_under_those() {
        let set = compile(
            serde_json::json!({"type": "queue"}),
            &["read:A", "read-global"],
        )
        .expect("accepted");
        assert_eq!(
            set.scopes(),
            Some(vec![EventScope::Project(key("A")), EventScope::Global])
        );
        let set = compile(serde_json::json!({"type": "queue"}), &["admin"]).expect("accepted");
        assert_eq!(set.scopes(), None);
    }
}
