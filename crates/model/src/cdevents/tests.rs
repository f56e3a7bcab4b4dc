use super::*;
use crate::{Payload, Timestamp};
use serde_json::Value;

fn ev(t: EventType) -> FullEvent {
    let mut e = FullEvent::new(t);
    e.id = "ev-1".into();
    e.project_key = "PROJ".into();
    e.vcs_name = "github".into();
    e.repository = "ovh/cds".into();
    e.workflow = "build".into();
    e.workflow_run_id = "run-9".into();
    e.run_job_id = "job-3".into();
    e.job_id = "compile".into();
    e.username = "alice".into();
    e.timestamp = Timestamp::parse("2024-02-13T10:23:01.5Z").expect("time");
    e
}

fn data(source: &Source, e: &FullEvent) -> Value {
    let cd = map(source, e).expect("mapped");
    serde_json::from_str(&cd.data).expect("json")
}

fn with_payload(mut e: FullEvent, payload: Value) -> FullEvent {
    e.payload = Payload::from_json(payload.to_string()).expect("json");
    e
}

#[test]
fn the_context_carries_the_cds_id_the_cloudevents_source_and_the_pinned_versions() {
    let v = data(&Source::default(), &ev(EventType::RunBuilding));
    assert_eq!(v["context"]["specversion"], "0.5.1");
    assert_eq!(v["context"]["id"], "ev-1");
    assert_eq!(v["context"]["source"], "/cds-events/projects/PROJ");
    assert_eq!(
        v["context"]["type"],
        "dev.cdevents.pipelinerun.started.0.3.0"
    );
    assert_eq!(v["context"]["timestamp"], "2024-02-13T10:23:01.5Z");
    assert_eq!(v["subject"]["id"], "run-9");
    assert_eq!(v["subject"]["content"]["pipelineName"], "ovh/cds/build");
}

#[test]
fn run_and_job_ends_take_their_outcome_from_the_status() {
    for (status, want) in [
        ("Success", "success"),
        ("Fail", "failure"),
        ("Stopped", "cancel"),
        ("Cancelled", "cancel"),
        ("Skipped", "cancel"),
        ("Blocked", "error"),
    ] {
        for t in [EventType::RunEnded, EventType::RunJobEnded] {
            let mut e = ev(t);
            e.status = status.into();
            let v = data(&Source::default(), &e);
            assert_eq!(v["subject"]["content"]["outcome"], want, "{t} {status}");
            assert_eq!(
                v["subject"]["content"].get("errors").is_some(),
                want == "error",
                "{t} {status}: errors only for an error"
            );
        }
    }
}

#[test]
fn a_task_run_names_its_job_and_its_pipeline_run() {
    let v = data(&Source::default(), &ev(EventType::RunJobBuilding));
    assert_eq!(v["context"]["type"], "dev.cdevents.taskrun.started.0.3.0");
    assert_eq!(v["subject"]["id"], "job-3");
    assert_eq!(v["subject"]["content"]["taskName"], "compile");
    assert_eq!(v["subject"]["content"]["pipelineRun"]["id"], "run-9");
}

#[test]
fn the_enqueued_job_is_a_custom_event_in_the_cdeventsx_namespace() {
    let mut e = ev(EventType::RunJobEnqueued);
    e.region = "eu".into();
    let v = data(&Source::default(), &e);
    assert_eq!(
        v["context"]["type"],
        "dev.cdeventsx.cds-taskrun.queued.0.1.0"
    );
    assert_eq!(v["subject"]["content"]["region"], "eu");
}

#[test]
fn uris_are_absolute_under_an_absolute_source_and_urns_under_a_relative_one() {
    let abs = Source::new("https://cds.example.com/events").expect("source");
    let v = data(&abs, &ev(EventType::RunCrafted));
    assert_eq!(
        v["subject"]["content"]["uri"],
        "https://cds.example.com/events/projects/PROJ/workflow-runs/run-9"
    );
    let v = data(&Source::default(), &ev(EventType::RunCrafted));
    assert_eq!(
        v["subject"]["content"]["uri"],
        "urn:cds-events:cds-events/projects/PROJ/workflow-runs/run-9"
    );
}

#[test]
fn a_repository_is_vcs_slash_name_with_its_clone_url_when_cds_gives_one() {
    let e = with_payload(
        ev(EventType::RepositoryCreated),
        json!({"name": "ovh/cds", "clone_url": "https://github.com/ovh/cds.git"}),
    );
    let v = data(&Source::default(), &e);
    assert_eq!(
        v["context"]["type"],
        "dev.cdevents.repository.created.0.3.0"
    );
    assert_eq!(v["subject"]["id"], "github/ovh/cds");
    assert_eq!(v["subject"]["content"]["name"], "ovh/cds");
    assert_eq!(
        v["subject"]["content"]["uri"],
        "https://github.com/ovh/cds.git"
    );
    let v = data(&Source::default(), &ev(EventType::RepositoryDeleted));
    assert_eq!(
        v["subject"]["content"]["uri"],
        "urn:cds-events:cds-events/projects/PROJ/repositories/github%2Fovh%2Fcds"
    );
}

#[test]
fn artifacts_get_a_purl_where_their_detail_names_a_package() {
    let result = |kind: &str, detail: Value| {
        let e = with_payload(
            ev(EventType::RunJobRunResultAdded),
            json!({"id": "rr-1", "type": kind, "detail": {"data": detail}}),
        );
        map(&Source::default(), &e).map(|c| c.subject_id)
    };
    assert_eq!(
        result("generic", json!({"name": "app 1.tar.gz", "sha256": "abc"})).as_deref(),
        Some("pkg:generic/app%201.tar.gz?checksum=sha256:abc")
    );
    assert_eq!(
        result("python", json!({"name": "My_Lib", "version": "1.2"})).as_deref(),
        Some("pkg:pypi/my-lib@1.2")
    );
    assert_eq!(
        result("docker", json!({"name": "registry:5000/team/app:v3"})).as_deref(),
        Some("pkg:docker/registry%3A5000/team/app@v3")
    );
    assert_eq!(
        result("helm", json!({"name": "chart", "chartVersion": "0.1.0"})).as_deref(),
        Some("pkg:generic/chart@0.1.0")
    );
    // No package named: the run result's own id.
    assert_eq!(result("docker", json!({})).as_deref(), Some("rr-1"));
    // Reports, variables and releases are no artifacts.
    for kind in ["coverage", "tests", "variable", "release", "deployment"] {
        assert_eq!(result(kind, json!({"name": "x"})), None, "{kind}");
    }
}

#[test]
fn a_packaged_artifact_names_its_run_as_the_change_and_a_published_one_its_user() {
    let payload = json!({"type": "generic", "detail": {"data": {"name": "a.tgz"}}});
    let v = data(
        &Source::default(),
        &with_payload(ev(EventType::RunJobRunResultAdded), payload.clone()),
    );
    assert_eq!(v["context"]["type"], "dev.cdevents.artifact.packaged.0.3.0");
    assert_eq!(v["subject"]["content"]["change"]["id"], "run-9");
    let v = data(
        &Source::default(),
        &with_payload(ev(EventType::RunJobRunResultUpdated), payload),
    );
    assert_eq!(
        v["context"]["type"],
        "dev.cdevents.artifact.published.0.3.0"
    );
    assert_eq!(v["subject"]["content"]["user"], "alice");
}

#[test]
fn types_without_a_counterpart_and_events_without_a_subject_id_are_not_mapped() {
    let src = Source::default();
    assert!(map(&src, &ev(EventType::ProjectCreated)).is_none());
    assert!(map(&src, &ev(EventType::RunJobScheduled)).is_none());
    let mut e = ev(EventType::RunEnded);
    e.workflow_run_id.clear();
    assert!(map(&src, &e).is_none());
    let mut e = ev(EventType::RunJobEnded);
    e.run_job_id.clear();
    assert!(map(&src, &e).is_none());
    // A run result without a CDS payload says nothing of its type.
    assert!(map(&src, &ev(EventType::RunJobRunResultAdded)).is_none());
}

#[test]
fn the_cloudevent_carries_the_cdevent_as_data_and_its_subject_id() {
    let e = ev(EventType::RunCrafted);
    let cd = map(&Source::default(), &e).expect("mapped");
    let ce: Value = serde_json::from_str(
        &cd.cloudevent(&Source::default(), 7, &e)
            .to_structured_json(),
    )
    .expect("json");
    assert_eq!(ce["type"], "dev.cdevents.pipelinerun.queued.0.3.0");
    assert_eq!(ce["id"], "ev-1");
    assert_eq!(ce["subject"], "run-9");
    assert_eq!(ce["source"], ce["data"]["context"]["source"]);
    assert_eq!(ce["cdsseq"], "00000000000000000007");
    assert_eq!(ce["data"]["subject"]["id"], "run-9");
}

#[test]
fn every_documented_kind_is_a_valid_type_name() {
    for t in EventType::ALL {
        if let Some(kind) = cd_kind(*t) {
            let ty = cd_type(kind);
            assert!(
                ty.starts_with("dev.cdevents.") || ty.starts_with("dev.cdeventsx.cds-"),
                "{ty}"
            );
        }
    }
}

#[test]
fn the_documented_table_is_the_mappings() {
    let doc = include_str!("../../../../docs/cdevents.md");
    assert!(
        doc.contains(&type_table()),
        "docs/cdevents.md is out of date; its table must be:\n{}",
        type_table()
    );
}
