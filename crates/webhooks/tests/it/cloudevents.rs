//! Notifications with `format: cloudevents`: each delivery is a CloudEvent
//! (structured, or binary with `ce-*` headers), signed over the body sent,
//! and read by a library no one here wrote (the Python CloudEvents SDK).

use crate::support::{Receiver, World, config, input, key};
use cds_events_webhooks::model::{ContentMode, EventFormat};
use cds_events_webhooks::signing::verify;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

const READ: &str = r#"
import json, sys
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.bindings.http import HTTPMessage, from_http
out = []
for m in json.load(sys.stdin):
    e = from_http(HTTPMessage(headers=m["headers"], body=m["body"].encode()), JSONFormat())
    a = e.get_attributes()
    out.append({"id": e.get_id(), "type": e.get_type(), "source": e.get_source(),
                "subject": e.get_subject(), "cdsseq": a.get("cdsseq"), "data": e.get_data()})
json.dump(out, sys.stdout)
"#;

/// What the Python SDK reads from each (headers, body).
fn sdk_reads(messages: Value) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args(["-c", READ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(messages.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "the SDK refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

async fn deliver(mode: Option<ContentMode>) -> (Vec<Value>, Value, Vec<crate::support::Received>) {
    let rx = Receiver::ok().await;
    let w = World::start(config()).await;
    let mut n = input("ce", &rx.url, &["^RunJobEnded$"]);
    n.format = Some(EventFormat::CloudEvents);
    n.content_mode = mode;
    let secret = w.create_with("P", n).await;
    let ids = w.publish("P", 1).await;
    let got = rx.wait_for(1).await;
    let stored = w.log.get(&ids[0]).await.expect("read").expect("stored");
    let event: Value = serde_json::from_str(&stored.json).expect("json");
    for r in &got {
        verify(
            &secret,
            r.webhook_id(),
            r.header("webhook-timestamp"),
            r.header("webhook-signature"),
            r.body.as_bytes(),
            chrono::Utc::now().timestamp(),
            300,
        )
        .expect("signed over the body sent");
    }
    let messages: Vec<Value> = got
        .iter()
        .map(|r| {
            let headers: serde_json::Map<String, Value> = r
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
                .collect();
            json!({"headers": headers, "body": r.body})
        })
        .collect();
    let read = sdk_reads(Value::Array(messages));
    assert_eq!(read[0]["id"], event["id"]);
    assert_eq!(read[0]["type"], "org.ovh.cds.workflowrunjob.RunJobEnded");
    assert_eq!(read[0]["source"], "/cds-events/projects/P");
    assert_eq!(read[0]["subject"], event["run_job_id"]);
    assert_eq!(read[0]["cdsseq"], format!("{:020}", stored.seq.0));
    assert_eq!(read[0]["data"], event);
    w.stop().await;
    (read, event, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_structured_cloudevent_is_delivered_signed_and_readable_by_the_sdk() {
    let (_, event, got) = deliver(None).await;
    assert_eq!(
        got[0].header("content-type"),
        "application/cloudevents+json"
    );
    assert!(
        got[0].header("ce-id").is_empty(),
        "no ce-* headers in structured mode"
    );
    assert_eq!(got[0].json()["data"], event);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_cloudevent_carries_the_full_event_as_its_body() {
    let (_, event, got) = deliver(Some(ContentMode::Binary)).await;
    assert_eq!(got[0].header("content-type"), "application/json");
    assert_eq!(got[0].header("ce-specversion"), "1.0");
    assert_eq!(got[0].json(), event, "the body is the full event");
}

/// `format: cdevents`: a run job's end is posted as a CDEvent; a type with
/// no CDEvents counterpart gets no delivery; a run result that is no
/// artifact gets a cancelled one, and the endpoint is not blamed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cdevents_notification_posts_cdevents_and_skips_what_has_none() {
    use cds_events_log::NewEvent;
    use cds_events_model::{EventType, FullEvent, Payload};
    use cds_events_webhooks::model::DeliveryStatus;
    let rx = Receiver::ok().await;
    let w = World::start(config()).await;
    let mut n = input("cd", &rx.url, &[]);
    n.format = Some(EventFormat::CdEvents);
    w.create_with("P", n).await;
    let job = |t: EventType, id: &str| {
        let mut e = cds_events_log::conformance::event(t, "P", 1);
        e.id = id.into();
        (e.workflow_run_id, e.run_job_id, e.job_id, e.status) = (
            "run-1".into(),
            "rj-1".into(),
            "compile".into(),
            "Fail".into(),
        );
        e
    };
    let mut report = job(EventType::RunJobRunResultAdded, "ev-report");
    report.payload =
        Payload::from_json(r#"{"type":"tests","detail":{"data":{"name":"junit.xml"}}}"#)
            .expect("json");
    let events: Vec<FullEvent> = vec![
        cds_events_log::conformance::event(EventType::ProjectUpdated, "P", 1),
        report,
        job(EventType::RunJobEnded, "ev-ended"),
    ];
    w.log
        .append(events.into_iter().map(NewEvent::from).collect())
        .await
        .expect("append");
    let got = rx.wait_for(1).await;
    w.settled().await;
    let got_all = rx.requests();
    assert_eq!(got_all.len(), 1, "only the job's end is posted");
    assert_eq!(
        got[0].header("content-type"),
        "application/cloudevents+json"
    );
    let ce = got[0].json();
    assert_eq!(ce["type"], "dev.cdevents.taskrun.finished.0.3.0");
    assert_eq!(ce["id"], "ev-ended");
    assert_eq!(ce["data"]["context"]["id"], "ev-ended");
    assert_eq!(ce["data"]["subject"]["id"], "rj-1");
    assert_eq!(ce["data"]["subject"]["content"]["outcome"], "failure");
    let page = w
        .hooks
        .deliveries(&key("P"), "cd", None, None, 10)
        .await
        .expect("deliveries");
    let mut by_event: Vec<(String, DeliveryStatus)> = page
        .deliveries
        .iter()
        .map(|d| (d.event_id.clone(), d.status))
        .collect();
    by_event.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by_event,
        vec![
            ("ev-ended".to_owned(), DeliveryStatus::Succeeded),
            ("ev-report".to_owned(), DeliveryStatus::Cancelled),
        ],
        "no delivery for the project update"
    );
    w.stop().await;
}
