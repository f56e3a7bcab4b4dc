//! The CloudEvents output, read by a library no one here wrote: the Python
//! CloudEvents SDK (`cloudevents` on PyPI, installed by `.ci/run`). Every
//! type of the catalogue is written in structured mode and in binary HTTP
//! mode; the SDK must parse both (validating the attributes as the spec
//! asks) and find the same attributes and the full event as data.

use cds_events_model::cloudevents::{CloudEvent, Source};
use cds_events_model::{EventType, FullEvent, Limits, decode_event};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

const CHECK: &str = r#"
import json, sys
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.bindings.http import HTTPMessage, from_http
out = []
for case in json.load(sys.stdin):
    fmt = JSONFormat()
    s = from_http(HTTPMessage(headers={"content-type": "application/cloudevents+json"},
                              body=case["structured"].encode()), fmt)
    b = from_http(HTTPMessage(headers=dict(case["headers"], **{"content-type": "application/json"}),
                              body=case["data"].encode()), fmt)
    row = []
    for e in (s, b):
        a = e.get_attributes()
        row.append({"id": e.get_id(), "source": e.get_source(), "type": e.get_type(),
                    "specversion": e.get_specversion(), "subject": e.get_subject(),
                    "time": e.get_time().isoformat(), "cdsseq": a.get("cdsseq"),
                    "cdsproject": a.get("cdsproject"), "data": e.get_data()})
    out.append(row)
json.dump(out, sys.stdout)
"#;

/// An event of type `t` with every context field of its family set.
fn sample(t: EventType, i: usize) -> FullEvent {
    let mut obj = json!({
        "id": format!("id {i} \"é\""),
        "type": t.as_str(),
        "payload": {"k": [1, "two", {"three": null}]},
        "timestamp": "2024-02-13T10:23:01.123456789+02:00",
    });
    for f in t.family().fields() {
        obj[f.name] = match f.name {
            "run_number" | "run_attempt" => json!(i + 1),
            "project_key" => json!("MY PROJ"),
            name => json!(format!("{name} value/{i}")),
        };
    }
    decode_event(&obj.to_string(), &Limits::default()).expect("a valid event")
}

#[test]
fn the_python_cloudevents_sdk_reads_every_type_in_both_content_modes() {
    let source = Source::new("https://cds.example.com/cds-events").expect("source");
    let events: Vec<FullEvent> = EventType::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| sample(*t, i))
        .collect();
    let jsons: Vec<String> = events.iter().map(FullEvent::to_json).collect();
    let ces: Vec<CloudEvent<'_>> = events
        .iter()
        .zip(&jsons)
        .enumerate()
        .map(|(i, (e, j))| CloudEvent::new(&source, 1000 + i as u64, e, j))
        .collect();
    let cases: Vec<Value> = ces
        .iter()
        .map(|ce| {
            let headers: serde_json::Map<String, Value> = ce
                .binary_headers()
                .into_iter()
                .map(|(k, v)| (k, json!(v)))
                .collect();
            json!({"structured": ce.to_structured_json(), "headers": headers, "data": ce.data})
        })
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(Value::Array(cases).to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "the SDK refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<Value>> = serde_json::from_slice(&out.stdout).expect("json out");
    assert_eq!(rows.len(), EventType::ALL.len());
    for ((row, ce), e) in rows.iter().zip(&ces).zip(&events) {
        let full: Value = serde_json::from_str(ce.data).expect("json");
        for read in row {
            assert_eq!(read["id"], ce.id, "{}", e.event_type);
            assert_eq!(read["source"], ce.source.as_str());
            assert_eq!(read["type"], ce.ce_type.as_str());
            assert_eq!(read["specversion"], "1.0");
            assert!(ce.subject.is_some(), "{}", e.event_type);
            assert_eq!(read["subject"], json!(ce.subject));
            assert_eq!(read["time"], "2024-02-13T10:23:01.123456+02:00");
            assert_eq!(read["cdsseq"], ce.cdsseq.as_str());
            assert_eq!(read["cdsproject"], json!(ce.cdsproject));
            assert_eq!(read["data"], full);
        }
    }
}
