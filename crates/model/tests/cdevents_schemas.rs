//! Every CDEvent the mapping emits validates against the official CDEvents
//! 0.5.1 JSON schemas (`tests/data/cdevents-0.5.1/`, vendored unchanged),
//! checked by a validator no one here wrote: Python's `jsonschema`
//! (Draft 2020-12, with format checks; installed by `.ci/run`).

use cds_events_model::cdevents::{SPEC_VERSION, map};
use cds_events_model::cloudevents::Source;
use cds_events_model::{EventType, FullEvent, Limits, decode_event};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

const CHECK: &str = r#"
import json, os, sys
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
root = sys.argv[1]
docs = [json.load(open(os.path.join(root, "links", f))) for f in os.listdir(os.path.join(root, "links"))]
registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)
by_type = {}
for f in os.listdir(root):
    if f.endswith(".json"):
        s = json.load(open(os.path.join(root, f)))
        by_type[s["properties"]["context"]["properties"]["type"]["enum"][0]] = s
custom = json.load(open(os.path.join(root, "custom", "schema.json")))
out = []
for ev in json.load(sys.stdin):
    t = ev["context"]["type"]
    schema = custom if t.startswith("dev.cdeventsx.") else by_type.get(t)
    if schema is None:
        out.append([t, "no schema for this type"]); continue
    v = Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)
    out.append([t, [e.message + " at " + "/".join(map(str, e.absolute_path)) for e in v.iter_errors(ev)]])
json.dump(out, sys.stdout)
"#;

fn event(obj: Value) -> FullEvent {
    decode_event(&obj.to_string(), &Limits::default()).expect("a valid event")
}

/// One run's life (§2 of the spec), its jobs and run results of each kind,
/// plus a repository created and deleted.
fn simulated_run() -> Vec<FullEvent> {
    let base = |t: &str, i: usize| {
        json!({"id": format!("ev-{i}"), "type": t, "project_key": "MY PROJ",
            "vcs_name": "github", "repository": "ovh/cds", "workflow": "build",
            "workflow_run_id": "0b7c-run", "run_number": 3, "run_attempt": 1,
            "username": "alice", "user_id": "u-1",
            "timestamp": "2024-02-13T10:23:01.123456789+02:00"})
    };
    let mut out = Vec::new();
    let mut push = |t: &str, extra: Value| {
        let mut v = base(t, out.len());
        for (k, x) in extra.as_object().cloned().unwrap_or_default() {
            v[k] = x;
        }
        out.push(event(v));
    };
    push(
        "RepositoryCreated",
        json!({"payload": {"clone_url": "https://github.com/ovh/cds.git"}}),
    );
    push("RunCrafted", json!({"status": "Crafting"}));
    push("RunBuilding", json!({"status": "Building"}));
    let results = [
        json!({"id": "r1", "type": "generic", "detail": {"data": {"name": "app.tar.gz", "sha256": "0f"}}}),
        json!({"id": "r2", "type": "docker", "detail": {"data": {"name": "reg.io/team/app:1.0"}}}),
        json!({"id": "r3", "type": "python", "detail": {"data": {"name": "lib", "version": "2.0"}}}),
        json!({"id": "r4", "type": "helm", "detail": {"data": {}}}),
        json!({"id": "r5", "type": "tests", "detail": {"data": {"name": "junit.xml"}}}),
    ];
    for (j, status) in ["Success", "Fail", "Stopped", "Blocked"].iter().enumerate() {
        let job = |extra: Value| {
            let mut v = json!({"run_job_id": format!("job-{j}"), "job_id": format!("compile-{j}"),
                "region": "eu", "hatchery": "swarm", "model_type": "docker"});
            for (k, x) in extra.as_object().cloned().unwrap_or_default() {
                v[k] = x;
            }
            v
        };
        for t in ["RunJobEnqueued", "RunJobScheduled", "RunJobBuilding"] {
            push(t, job(json!({"status": "Building"})));
        }
        for r in &results {
            push(
                "RunJobRunResultAdded",
                job(json!({"payload": r, "run_result": "x"})),
            );
            push(
                "RunJobRunResultUpdated",
                job(json!({"payload": r, "run_result": "x"})),
            );
        }
        push("RunJobEnded", job(json!({"status": status})));
    }
    push("RunEnded", json!({"status": "Fail"}));
    push("RepositoryDeleted", json!({}));
    out
}

/// An event of every type of the catalogue, every context field set.
fn every_type() -> Vec<FullEvent> {
    EventType::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut obj = json!({"id": format!("all-{i}"), "type": t.as_str(),
                "timestamp": "0001-01-01T00:00:00Z"});
            for f in t.family().fields() {
                obj[f.name] = match f.name {
                    "run_number" | "run_attempt" => json!(i + 1),
                    name => json!(format!("{name} é/{i}")),
                };
            }
            event(obj)
        })
        .collect()
}

fn validate(events: &[FullEvent], source: &Source) -> (Vec<(String, Vec<String>)>, usize) {
    let mapped: Vec<Value> = events
        .iter()
        .filter_map(|e| map(source, e))
        .map(|cd| serde_json::from_str(&cd.data).expect("json"))
        .collect();
    let root = format!(
        "{}/tests/data/cdevents-{SPEC_VERSION}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new("python3")
        .args(["-c", CHECK, &root])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(Value::Array(mapped.clone()).to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(
        out.status.success(),
        "the validator failed (is jsonschema installed?)"
    );
    let got: Vec<(String, Vec<String>)> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got.len(), mapped.len());
    (got, mapped.len())
}

fn assert_all_valid(got: &[(String, Vec<String>)]) {
    let bad: Vec<_> = got.iter().filter(|(_, errs)| !errs.is_empty()).collect();
    assert!(bad.is_empty(), "invalid CDEvents: {bad:#?}");
}

#[test]
fn every_cdevent_of_a_simulated_run_validates_against_the_official_schemas() {
    for source in [
        Source::default(),
        Source::new("https://cds.example.com/cds-events").expect("source"),
    ] {
        let events = simulated_run();
        let (got, n) = validate(&events, &source);
        assert_all_valid(&got);
        let mut types: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
        types.sort_unstable();
        types.dedup();
        // Every kind of the mapping was exercised.
        assert_eq!(types.len(), 10, "{types:?}");
        // Scheduled jobs and the test report are not sent.
        assert!(n < events.len());
    }
}

#[test]
fn every_type_of_the_catalogue_maps_to_a_valid_cdevent_or_to_none() {
    let (got, _) = validate(&every_type(), &Source::default());
    assert_all_valid(&got);
}

/// The validator is not blind: a CDEvent with a wrong outcome is refused.
#[test]
fn the_validator_refuses_an_event_the_schema_forbids() {
    let mut e = simulated_run()
        .into_iter()
        .find(|e| e.event_type == EventType::RunEnded)
        .expect("a run end");
    e.status = "Success".into();
    let cd = map(&Source::default(), &e).expect("mapped");
    let mut v: Value = serde_json::from_str(&cd.data).expect("json");
    v["subject"]["content"]["outcome"] = json!("meh");
    let root = format!(
        "{}/tests/data/cdevents-{SPEC_VERSION}",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new("python3")
        .args(["-c", CHECK, &root])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(json!([v]).to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 ends");
    let got: Vec<(String, Vec<String>)> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got.len(), 1);
    assert!(!got[0].1.is_empty(), "a bad outcome must be refused");
}
