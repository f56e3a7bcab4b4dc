//! The same questions asked of Python's `jsonschema` (Draft 2020-12; installed
//! by `.ci/run`): every schema is a valid 2020-12 schema, the test fixtures
//! and their full-event encodings validate, and on events made from the
//! schemas and broken against them its verdict is the decoder's.

use super::{SCHEMAS, accepted_as, schema_of, typed_instances, violations_of};
use cds_events_model::{EventType, Limits, decode_event};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

const CHECK: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
req = json.load(sys.stdin)
validators = {}
for t, s in req["schemas"].items():
    Draft202012Validator.check_schema(s)
    validators[t] = Draft202012Validator(s)
json.dump([validators[t].is_valid(v) for t, v in req["instances"]], sys.stdout)
"#;

/// Python's verdict on each `(type, instance)`.
fn python_verdicts(instances: &[(EventType, Value)]) -> Vec<bool> {
    let schemas: Map<String, Value> = EventType::ALL
        .iter()
        .map(|t| (t.as_str().to_owned(), schema_of(*t).clone()))
        .collect();
    let req = json!({
        "schemas": schemas,
        "instances": instances.iter().map(|(t, v)| json!([t.as_str(), v])).collect::<Vec<_>>(),
    });
    let mut child = Command::new("python3")
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(req.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3 ends");
    assert!(
        out.status.success(),
        "the validator failed (is jsonschema installed? is a schema invalid?)"
    );
    let got: Vec<bool> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(got.len(), instances.len());
    got
}

/// CDS-shaped events: each type's family shape with every context field
/// set, the same with the optional ones empty, and a few written as CDS
/// writes them (offsets, Go's zero time, nulls, unknown keys).
fn fixtures() -> Vec<(EventType, Value)> {
    let mut out = Vec::new();
    for (i, t) in EventType::ALL.iter().enumerate() {
        let mut full = json!({"id": format!("fx-{i}"), "type": t.as_str(),
            "payload": {"name": "x", "nested": [1, {"k": null}]},
            "timestamp": "2024-02-13T10:23:01.123456789+02:00"});
        let mut sparse = json!({"type": t.as_str(), "timestamp": "0001-01-01T00:00:00Z"});
        for f in t.family().fields() {
            let v = match f.name {
                "run_number" | "run_attempt" => json!(i + 1),
                name => json!(format!("{name} é/{i}")),
            };
            full[f.name] = v.clone();
            if !f.optional {
                sparse[f.name] = v;
            }
        }
        out.push((*t, full));
        out.push((*t, sparse));
    }
    out.push((
        EventType::RunJobEnded,
        json!({"id": null, "type": "RunJobEnded", "project_key": "PROJ", "status": "Success",
            "run_number": null, "user_mail": "", "concurrency": "", "x_future": {"a": 1},
            "payload": null, "timestamp": "2024-02-13 10:23:60.5z"}),
    ));
    out.push((
        EventType::HatcheryTokenRegen,
        json!({"type": "HatcheryTokenRegen", "hatchery": "swarm", "project_key": null}),
    ));
    out
}

/// What the system writes out for each accepted event: the full event.
fn encoded(events: &[(EventType, Value)]) -> Vec<(EventType, Value)> {
    events
        .iter()
        .filter_map(|(t, v)| {
            let ev = accepted_as(*t, v).ok()?;
            Some((*t, serde_json::from_str(&ev.to_json()).expect("json")))
        })
        .collect()
}

#[test]
fn fixtures_and_their_full_events_validate_against_their_schemas() {
    let mut all = fixtures();
    for (t, v) in &all {
        decode_event(&v.to_string(), &Limits::default())
            .unwrap_or_else(|e| panic!("fixture {t} refused: {}", e.message));
    }
    let full = encoded(&all);
    assert_eq!(full.len(), all.len());
    all.extend(full);
    let verdicts = python_verdicts(&all);
    let bad: Vec<&Value> = all
        .iter()
        .zip(&verdicts)
        .filter(|(_, ok)| !**ok)
        .map(|((_, v), _)| v)
        .collect();
    assert!(bad.is_empty(), "invalid under their schema: {bad:#?}");
}

#[test]
fn python_jsonschema_and_the_decoder_agree_on_made_and_broken_events() {
    let mut runner = TestRunner::deterministic();
    let strategy = typed_instances();
    let mut cases: Vec<(EventType, Value)> = Vec::new();
    for _ in 0..EventType::ALL.len() * 4 {
        let (t, v) = strategy.new_tree(&mut runner).expect("a case").current();
        for violation in violations_of(t) {
            cases.push((t, violation.apply(&v)));
        }
        cases.push((t, v));
    }
    cases.extend(encoded(&cases));
    // An event of one type is not an event of another.
    cases.push((
        EventType::RunEnded,
        json!({"type": "RunBuilding", "project_key": "P"}),
    ));
    let verdicts = python_verdicts(&cases);
    let mut seen = [0usize; 2];
    for ((t, v), python) in cases.iter().zip(verdicts) {
        let decoder = accepted_as(*t, v);
        assert_eq!(
            python,
            decoder.is_ok(),
            "{t}: jsonschema says {python}, the decoder {decoder:?}, on {v}"
        );
        seen[usize::from(python)] += 1;
    }
    assert!(
        seen[0] > 1000 && seen[1] > 200,
        "too few of a kind: {seen:?}"
    );
    assert_eq!(SCHEMAS.len(), EventType::ALL.len());
}
