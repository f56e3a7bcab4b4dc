//! The suite's checks of the standard formats that every broker carries:
//! CDEvents (structured: binary mode is each broker's own binding, checked
//! in its test file with a client no one here wrote).

use super::{Harness, Running, config, ids, namespace, open_log, receive, until};
use cds_events_log::conformance::event;
use cds_events_log::{EventLog, NewEvent};
use cds_events_model::cdevents;
use cds_events_model::cloudevents::Source;
use cds_events_model::{EventType, FullEvent};

/// The types [`append_runs`] cycles through: two with a CDEvents form, one
/// (`ProjectCreated`) without.
pub const RUN_TYPES: [EventType; 3] = [
    EventType::RunCrafted,
    EventType::ProjectCreated,
    EventType::RunJobEnded,
];

/// The `i`th event of [`append_runs`]: runs and jobs with their ids set, so
/// that the mapped types do map.
pub fn run_event(i: usize) -> FullEvent {
    let mut e = event(
        RUN_TYPES[i % RUN_TYPES.len()],
        "PROJ",
        1_700_000_000 + i as i64,
    );
    if e.event_type != EventType::ProjectCreated {
        e.workflow_run_id = format!("run-{}", i / 3);
        e.run_job_id = format!("job-{i}");
        e.job_id = "build".into();
        e.workflow = "wf".into();
        e.status = "Success".into();
    }
    e
}

/// Appends `n` events of [`run_event`] and answers them.
pub async fn append_runs(log: &dyn EventLog, n: usize) -> Vec<FullEvent> {
    let events: Vec<FullEvent> = (0..n).map(run_event).collect();
    log.append(events.iter().cloned().map(NewEvent::from).collect())
        .await
        .expect("append");
    events
}

pub async fn the_cdevents_format_sends_mapped_events_and_skips_the_rest(h: &dyn Harness) {
    let ns = namespace();
    let mut reader = h.reader(&ns).await;
    let (_dir, log) = open_log();
    let mut c = config("cd", h.settings(&ns));
    c.format = crate::Format::CdEvents;
    let running = Running::start(&log, &[c]).await;
    let all = append_runs(log.as_ref(), 9).await;
    let mapped: Vec<String> = all
        .iter()
        .filter(|e| e.event_type != EventType::ProjectCreated)
        .map(|e| e.id.to_string())
        .collect();
    let got = receive(reader.as_mut(), mapped.len()).await;
    assert_eq!(ids(&got), mapped, "the mapped events, in order");
    let source = Source::default();
    for r in &got {
        let stored = log.get(&r.id).await.expect("get").expect("stored");
        let event = stored.decode().expect("decodes");
        let cd = cdevents::map(&source, &event).expect("a CDEvent");
        let expected = cd.cloudevent(&source, stored.seq.0, &event);
        assert_eq!(
            r.body,
            expected.to_structured_json().as_bytes(),
            "the model's one mapping, byte for byte"
        );
        let ce: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON object");
        assert!(
            ce["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("dev.cdevents.")),
            "{ce}"
        );
        assert!(
            r.content_type
                .as_deref()
                .is_none_or(|ct| ct == "application/cloudevents+json"),
            "{r:?}"
        );
    }
    // The skipped ones are counted and passed: the position reaches the head.
    let head = *log.head().borrow();
    until("the position passes the skipped events", || async {
        let s = running.status("cd").await;
        (s.position, s.lag_events, s.skipped, s.sent) == (head.0, 0, 3, 6)
    })
    .await;
    running.stop().await;
    h.cleanup(&ns).await;
}

/// Runs a Python script (`python3 -c script args…`) and answers the JSON it
/// prints: how the tests read brokers with clients no one here wrote.
pub fn python(script: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the Python reader failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the Python reader prints JSON")
}

/// Checks one event as a CloudEvents SDK parsed it
/// (`{"attributes": {…}, "time": <unix seconds>, "data": …}`) against the
/// model's mapping of the stored event in `format` (`cloudevents`: `data`
/// is the stored event; `cdevents`: the CDEvent). Answers the event.
pub async fn expect_parsed(
    log: &dyn EventLog,
    parsed: &serde_json::Value,
    format: crate::Format,
) -> FullEvent {
    let a = &parsed["attributes"];
    let id = a["id"].as_str().expect("an id attribute");
    let stored = log.get(id).await.expect("get").expect("stored");
    let event = stored.decode().expect("decodes");
    let source = Source::default();
    let cd;
    let (ce, data): (_, serde_json::Value) = match format {
        crate::Format::CdEvents => {
            cd = cdevents::map(&source, &event).expect("a CDEvent");
            let ce = cd.cloudevent(&source, stored.seq.0, &event);
            (ce, serde_json::from_str(&cd.data).expect("json"))
        }
        _ => (
            cds_events_model::cloudevents::CloudEvent::new(
                &source,
                stored.seq.0,
                &event,
                &stored.json,
            ),
            serde_json::from_str(&stored.json).expect("json"),
        ),
    };
    for (name, value) in ce.attributes() {
        if name == "time" {
            let secs = event.timestamp.unix_nanos() as f64 / 1e9;
            let got = parsed["time"].as_f64().expect("a time");
            assert!((got - secs).abs() < 1e-3, "time {got} != {secs}");
        } else {
            assert_eq!(a[name], value, "attribute {name} of {parsed}");
        }
    }
    assert_eq!(parsed["data"], data, "data of {id}");
    event
}
