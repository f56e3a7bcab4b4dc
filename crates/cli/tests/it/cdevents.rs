//! CDEvents on the way out (`format=cdevents`): the query API, one event,
//! SSE and the websocket from the real server. Events with a CDEvents
//! counterpart are sent as CDEvents (CloudEvents whose `data` is the
//! CDEvents object); the others are skipped and counted.

use crate::{TestServer, job_event, read_sse, stream_client};
use serde_json::{Value, json};

fn server() -> TestServer {
    TestServer::builder()
        .env(
            "CDS_EVENTS_CLOUDEVENTS__SOURCE",
            "https://cds.example.com/ev/",
        )
        .start()
}

/// A run in project A: crafted, one job scheduled (no CDEvents form),
/// ended, the run ended. Returns the stored events in order.
fn publish_run(s: &TestServer) -> Vec<(u64, Value)> {
    let run = |t: &str, status: &str| {
        json!({"type": t, "project_key": "A", "vcs_name": "github", "repository": "ovh/cds",
               "workflow": "build", "workflow_run_id": "run-A", "run_number": 1, "run_attempt": 1,
               "status": status, "user_id": "u1", "username": "alice"})
    };
    let mut scheduled = job_event("A", 1);
    scheduled["type"] = json!("RunJobScheduled");
    let batch = json!([
        run("RunCrafted", "Crafting"),
        scheduled,
        job_event("A", 1),
        run("RunEnded", "Success")
    ]);
    let (status, body) = s.post_json(&batch);
    assert_eq!(status, 200, "{body}");
    s.query_all("&project_key=A")
}

const TYPES: [&str; 3] = [
    "dev.cdevents.pipelinerun.queued.0.3.0",
    "dev.cdevents.taskrun.finished.0.3.0",
    "dev.cdevents.pipelinerun.finished.0.3.0",
];

fn assert_cdevent_of(ce: &Value, ty: &str, seq: u64, event: &Value) {
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["type"], ty);
    assert_eq!(ce["id"], event["id"]);
    assert_eq!(ce["source"], "https://cds.example.com/ev/projects/A");
    assert_eq!(ce["cdsseq"], format!("{seq:020}"));
    let cd = &ce["data"];
    assert_eq!(cd["context"]["specversion"], "0.5.1");
    assert_eq!(cd["context"]["id"], event["id"]);
    assert_eq!(cd["context"]["type"], ty);
    assert_eq!(cd["context"]["source"], ce["source"]);
    assert_eq!(ce["subject"], cd["subject"]["id"]);
}

/// The stored events that have a CDEvents form, with their types.
fn mapped(cds: &[(u64, Value)]) -> Vec<(&'static str, u64, &Value)> {
    let keep: Vec<&(u64, Value)> = cds
        .iter()
        .filter(|(_, e)| e["type"] != "RunJobScheduled")
        .collect();
    assert_eq!(keep.len(), 3);
    TYPES
        .iter()
        .zip(keep)
        .map(|(t, (s, e))| (*t, *s, e))
        .collect()
}

fn unmapped_count(s: &TestServer, way: &str) -> f64 {
    let needle = format!("cds_events_cdevents_unmapped_total{{way=\"{way}\"}} ");
    s.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_query_api_answers_cdevents_and_leaves_out_and_counts_the_rest() {
    let s = server();
    let cds = publish_run(&s);
    assert_eq!(cds.len(), 4);
    let r = s
        .http
        .get(s.url("/v2/events?project_key=A&format=cdevents"))
        .send()
        .expect("query");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/cloudevents-batch+json"
    );
    let batch: Vec<Value> = r.json().expect("a JSON array");
    let want = mapped(&cds);
    assert_eq!(batch.len(), want.len(), "{batch:#?}");
    for (ce, (ty, seq, event)) in batch.iter().zip(&want) {
        assert_cdevent_of(ce, ty, *seq, event);
    }
    assert_eq!(batch[2]["data"]["subject"]["content"]["outcome"], "success");
    assert_eq!(unmapped_count(&s, "query"), 1.0);

    // One event: a CDEvent, or 406 when it has none.
    let (seq, run_end) = &cds[3];
    let id = run_end["id"].as_str().expect("id");
    let r = s
        .http
        .get(s.url(&format!("/v2/events/{id}?format=cdevents")))
        .send()
        .expect("get");
    assert_eq!(r.headers()["content-type"], "application/cloudevents+json");
    let ce: Value = r.json().expect("json");
    assert_cdevent_of(&ce, TYPES[2], *seq, run_end);
    let scheduled = cds[1].1["id"].as_str().expect("id");
    let r = s
        .http
        .get(s.url(&format!("/v2/events/{scheduled}?format=cdevents")))
        .send()
        .expect("get");
    assert_eq!(r.status().as_u16(), 406);
    let body: Value = r.json().expect("json");
    assert_eq!(body["error"]["code"], "no_cdevent");
}

#[test]
fn sse_with_format_cdevents_sends_the_cdevents_and_skips_the_rest() {
    let s = server();
    let cds = publish_run(&s);
    let last = cds[3].0;
    let resp = stream_client()
        .get(s.url("/v2/events/stream?project_key=A&since=0&format=cdevents"))
        .send()
        .expect("stream");
    let msgs = read_sse(resp, |m| m.id == Some(last));
    let events: Vec<_> = msgs.iter().filter(|m| m.id.is_some()).collect();
    let want = mapped(&cds);
    assert_eq!(events.len(), want.len(), "{events:#?}");
    for (m, (ty, seq, event)) in events.iter().zip(&want) {
        assert_eq!(m.id, Some(*seq));
        let ce: Value = serde_json::from_str(&m.data).expect("json data");
        assert_cdevent_of(&ce, ty, *seq, event);
    }
    assert_eq!(unmapped_count(&s, "sse"), 1.0);
}

#[test]
fn the_websocket_sends_cdevents_when_asked() {
    let s = server();
    let cds = publish_run(&s);
    // The queue filter: the job events, of which only RunJobEnded has a
    // CDEvents form.
    let filter = json!({"filters": [{"type": "queue"}], "resume_from": 0});
    let got = crate::ws::python_ws(&s, "?format=cdevents", crate::ADMIN, &[filter], 3.0, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    let (seq, ended) = &cds[2];
    assert_cdevent_of(&got[0], TYPES[1], *seq, ended);
    assert_eq!(got[0]["data"]["subject"]["id"], "rj-1");
    assert_eq!(unmapped_count(&s, "ws"), 1.0);
}
