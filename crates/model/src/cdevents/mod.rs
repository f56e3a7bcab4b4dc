//! CDEvents (spec [`SPEC_VERSION`]): the second standard shape events leave
//! in. A CDEvent is a CloudEvent whose `type` is `dev.cdevents.<subject>.
//! <predicate>.<version>` and whose `data` is the CDEvents object (`context`
//! and `subject`); it is written and sent exactly as the CloudEvents of
//! [`crate::cloudevents`] are ([`CdEvent::cloudevent`]), so every way out
//! that speaks CloudEvents speaks CDEvents with one more branch.
//!
//! Only what has a CDEvents counterpart is mapped ([`map`] answers `None`
//! otherwise, and the way out skips and counts it):
//!
//! | CDS | CDEvents |
//! |---|---|
//! | RunCrafted | `pipelinerun.queued` |
//! | RunBuilding | `pipelinerun.started` |
//! | RunEnded | `pipelinerun.finished`, `outcome` from the status |
//! | RunJobEnqueued | custom `dev.cdeventsx.cds-taskrun.queued` (the spec has no queued task run) |
//! | RunJobBuilding | `taskrun.started` |
//! | RunJobEnded | `taskrun.finished`, `outcome` from the status |
//! | RepositoryCreated / RepositoryDeleted | `repository.created` / `repository.deleted` |
//! | RunJobRunResultAdded / Updated of an artifact | `artifact.packaged` / `artifact.published`, the subject id a purl where one can be built |
//!
//! Ids: `context.id` is the CDS event id, `context.source` the CloudEvents
//! `source`; the subject is the workflow run, the run job, the repository
//! (`<vcs>/<repository>`) or the artifact. Nothing here does I/O.

mod artifact;

use crate::cloudevents::{CloudEvent, Source, seq_text};
use crate::{EventType, FullEvent};
use serde_json::{Map, Value, json};
use std::fmt::Write;

/// The CDEvents release every event is written for (and whose schemas the
/// tests validate against: `tests/data/cdevents-0.5.1/`).
pub const SPEC_VERSION: &str = "0.5.1";
/// The version of each event type in [`SPEC_VERSION`] (all of the types we
/// emit are at 0.3.0 in that release).
pub const EVENT_VERSION: &str = "0.3.0";
/// The version of our own custom event types.
pub const CUSTOM_VERSION: &str = "0.1.0";
/// Custom types are `dev.cdeventsx.<tool>-<subject>.<predicate>.<version>`.
pub const CUSTOM_TOOL: &str = "cds";

/// What a CDS event type becomes, for the documentation: the CDEvents
/// `<subject>.<predicate>` (custom ones prefixed `cds-`), or `None`.
pub fn cd_kind(t: EventType) -> Option<&'static str> {
    use EventType as T;
    Some(match t {
        T::RunCrafted => "pipelinerun.queued",
        T::RunBuilding => "pipelinerun.started",
        T::RunEnded => "pipelinerun.finished",
        T::RunJobEnqueued => "cds-taskrun.queued",
        T::RunJobBuilding => "taskrun.started",
        T::RunJobEnded => "taskrun.finished",
        T::RepositoryCreated => "repository.created",
        T::RepositoryDeleted => "repository.deleted",
        T::RunJobRunResultAdded => "artifact.packaged",
        T::RunJobRunResultUpdated => "artifact.published",
        _ => return None,
    })
}

/// The full CloudEvents `type` of a kind from [`cd_kind`].
pub fn cd_type(kind: &str) -> String {
    match kind.strip_prefix("cds-") {
        Some(custom) => format!("dev.cdeventsx.{CUSTOM_TOOL}-{custom}.{CUSTOM_VERSION}"),
        None => format!("dev.cdevents.{kind}.{EVENT_VERSION}"),
    }
}

/// One CDS event as a CDEvent: its type, subject id and `data` (the
/// CDEvents JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct CdEvent {
    pub cd_type: String,
    pub subject_id: String,
    /// The CDEvents object: `{"context":…,"subject":…}`.
    pub data: String,
}

impl CdEvent {
    /// The CloudEvent that carries it (the CDEvents binding: same `id`,
    /// `source` and `type` as the context, `subject` = the subject id).
    pub fn cloudevent<'a>(
        &'a self,
        source: &Source,
        seq: u64,
        event: &'a FullEvent,
    ) -> CloudEvent<'a> {
        CloudEvent {
            id: &event.id,
            source: source.for_project(&event.project_key),
            ce_type: self.cd_type.clone(),
            subject: Some(self.subject_id.clone()),
            time: event.timestamp.to_go_string(),
            cdsseq: seq_text(seq),
            cdsproject: (!event.project_key.is_empty()).then_some(event.project_key.as_str()),
            data: &self.data,
        }
    }
}

/// The mapping: `event` as a CDEvent, or `None` when CDEvents has nothing
/// for it (its type has no counterpart, a run result is no artifact, or an
/// id the subject needs is empty).
pub fn map(source: &Source, event: &FullEvent) -> Option<CdEvent> {
    use EventType as T;
    let kind = cd_kind(event.event_type)?;
    let src = source.for_project(&event.project_key);
    let run_uri = || {
        resource_uri(
            source,
            &event.project_key,
            "workflow-runs",
            &event.workflow_run_id,
        )
    };
    let (id, content) = match event.event_type {
        T::RunCrafted | T::RunBuilding | T::RunEnded => {
            let mut c = Map::new();
            c.insert("pipelineName".into(), json!(pipeline_name(event)));
            c.insert("uri".into(), json!(run_uri()));
            if event.event_type == T::RunEnded {
                let (outcome, errors) = outcome(&event.status);
                c.insert("outcome".into(), json!(outcome));
                if let Some(e) = errors {
                    c.insert("errors".into(), json!(e));
                }
            }
            (event.workflow_run_id.clone(), c)
        }
        T::RunJobEnqueued | T::RunJobBuilding | T::RunJobEnded => {
            let mut c = Map::new();
            c.insert("taskName".into(), json!(event.job_id));
            c.insert(
                "uri".into(),
                json!(resource_uri(
                    source,
                    &event.project_key,
                    "run-jobs",
                    &event.run_job_id
                )),
            );
            if event.workflow_run_id.is_empty() {
                return None;
            }
            c.insert(
                "pipelineRun".into(),
                json!({"id": event.workflow_run_id, "source": src}),
            );
            match event.event_type {
                T::RunJobEnded => {
                    let (outcome, errors) = outcome(&event.status);
                    c.insert("outcome".into(), json!(outcome));
                    if let Some(e) = errors {
                        c.insert("errors".into(), json!(e));
                    }
                }
                // The custom type is open: it says where the job waits.
                T::RunJobEnqueued if !event.region.is_empty() => {
                    c.insert("region".into(), json!(event.region));
                }
                _ => {}
            }
            (event.run_job_id.clone(), c)
        }
        T::RepositoryCreated | T::RepositoryDeleted => {
            if event.repository.is_empty() {
                return None;
            }
            let id = format!("{}/{}", event.vcs_name, event.repository);
            let mut c = Map::new();
            c.insert("name".into(), json!(event.repository));
            let uri = clone_url(event)
                .unwrap_or_else(|| resource_uri(source, &event.project_key, "repositories", &id));
            c.insert("uri".into(), json!(uri));
            (id, c)
        }
        T::RunJobRunResultAdded | T::RunJobRunResultUpdated => {
            let art = artifact::Artifact::of(event)?;
            let mut c = Map::new();
            if event.event_type == T::RunJobRunResultAdded {
                // The schema asks for the change the artifact was built
                // from; a CDS event names no commit, so the change is the
                // workflow run that built it.
                if event.workflow_run_id.is_empty() {
                    return None;
                }
                c.insert(
                    "change".into(),
                    json!({"id": event.workflow_run_id, "source": src}),
                );
            } else if !event.username.is_empty() {
                c.insert("user".into(), json!(event.username));
            }
            (art.id, c)
        }
        _ => return None,
    };
    if id.is_empty() {
        return None;
    }
    let cd_type = cd_type(kind);
    let data = json!({
        "context": {
            "specversion": SPEC_VERSION,
            "id": event.id,
            "source": src,
            "type": cd_type,
            "timestamp": event.timestamp.to_go_string(),
        },
        "subject": {"id": id, "source": src, "content": content},
    });
    Some(CdEvent {
        cd_type,
        subject_id: id,
        data: data.to_string(),
    })
}

/// `repository/workflow` when both are known: a workflow's name is only
/// unique in its repository.
fn pipeline_name(e: &FullEvent) -> String {
    match (e.repository.is_empty(), e.workflow.is_empty()) {
        (false, false) => format!("{}/{}", e.repository, e.workflow),
        _ => e.workflow.clone(),
    }
}

/// A run's or a job's outcome from its final CDS status; a status that is
/// no success, failure or cancellation is an `error` saying which it was.
pub fn outcome(status: &str) -> (&'static str, Option<String>) {
    match status {
        "Success" => ("success", None),
        "Fail" => ("failure", None),
        "Stopped" | "Cancelled" | "Skipped" => ("cancel", None),
        other => ("error", Some(format!("ended with status {other:?}"))),
    }
}

/// The repository's clone URL when CDS's payload has an absolute one.
fn clone_url(e: &FullEvent) -> Option<String> {
    let v: Value = serde_json::from_str(e.payload.get()).ok()?;
    let url = v.get("clone_url")?.as_str()?;
    is_absolute(url).then(|| url.to_owned())
}

fn is_absolute(uri: &str) -> bool {
    match uri.split_once(':') {
        Some((scheme, rest)) => {
            !rest.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.contains(char::is_whitespace)
        }
        None => false,
    }
}

/// An absolute URI for a resource (the schemas want `uri`, not a reference):
/// `<source>/<kind>/<id>` when the configured source base is absolute (set
/// it to the public URL of the service), else the same path as a
/// `urn:cds-events:` name.
pub fn resource_uri(source: &Source, project_key: &str, kind: &str, id: &str) -> String {
    let mut path = source.for_project(project_key);
    path.push('/');
    path.push_str(kind);
    path.push('/');
    artifact::percent_encode(&mut path, id);
    if is_absolute(&path) {
        path
    } else {
        format!("urn:cds-events:{}", path.trim_start_matches('/'))
    }
}

/// The per-type table of `docs/cdevents.md`: CDS type, CloudEvents
/// `type`, CDEvents `type` (or none).
pub fn type_table() -> String {
    let mut out =
        String::from("| CDS type | CloudEvents `type` | CDEvents `type` |\n|---|---|---|\n");
    for t in EventType::ALL {
        let cd = match cd_kind(*t) {
            Some(kind) => format!("`{}`", cd_type(kind)),
            None => "none".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {t} | `{}` | {cd} |",
            crate::cloudevents::ce_type(*t)
        );
    }
    out
}

#[cfg(test)]
mod tests;
