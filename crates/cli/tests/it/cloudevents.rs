//! CloudEvents 1.0 on the way out (query, one event, SSE, websocket) and in
//! (ingest of structured, batched and binary-mode CloudEvents whose data is a
//! CDS event).

use crate::{TestServer, job_event, read_sse, stream_client, succeeded};
use serde_json::{Value, json};

fn publish_jobs(s: &TestServer, n: u64) {
    let batch: Vec<Value> = (1..=n).map(|i| job_event("A", i)).collect();
    let (status, body) = s.post_json(&Value::Array(batch));
    assert_eq!(status, 200, "{body}");
}

fn assert_cloudevent_of(ce: &Value, seq: u64, event: &Value) {
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], event["id"]);
    assert_eq!(ce["source"], "https://cds.example.com/ev/projects/A");
    assert_eq!(ce["type"], "org.ovh.cds.workflowrunjob.RunJobEnded");
    assert_eq!(ce["subject"], event["run_job_id"]);
    assert_eq!(ce["time"], event["timestamp"]);
    assert_eq!(ce["datacontenttype"], "application/json");
    assert_eq!(ce["cdsseq"], format!("{seq:020}"));
    assert_eq!(ce["cdsproject"], "A");
    assert_eq!(&ce["data"], event);
}

fn server() -> TestServer {
    TestServer::builder()
        .env(
            "CDS_EVENTS_CLOUDEVENTS__SOURCE",
            "https://cds.example.com/ev/",
        )
        .start()
}

#[test]
fn the_query_api_answers_a_cloudevents_batch_with_the_cursor_in_headers() {
    let s = server();
    publish_jobs(&s, 3);
    let cds = s.query_all("&project_key=A");
    for ask in [
        s.http
            .get(s.url("/v2/events?project_key=A&limit=2&format=cloudevents")),
        s.http
            .get(s.url("/v2/events?project_key=A&limit=2"))
            .header("accept", "application/cloudevents-batch+json"),
    ] {
        let r = ask.send().expect("query");
        assert_eq!(r.status().as_u16(), 200);
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "application/cloudevents-batch+json");
        assert_eq!(h["cds-events-next-cursor"], cds[1].0.to_string().as_str());
        let link = h["link"].to_str().expect("link");
        assert!(
            link.contains(&format!("cursor={}", cds[1].0)) && link.ends_with("rel=\"next\""),
            "{link}"
        );
        let batch: Vec<Value> = r.json().expect("a JSON array");
        assert_eq!(batch.len(), 2);
        for (ce, (seq, event)) in batch.iter().zip(&cds) {
            assert_cloudevent_of(ce, *seq, event);
        }
    }
    let r = s
        .http
        .get(s.url("/v2/events?project_key=A&format=xml"))
        .send()
        .expect("query");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().expect("json");
    assert_eq!(body["error"]["details"][0]["field"], "format");
}

#[test]
fn one_event_is_a_structured_cloudevent_when_asked() {
    let s = server();
    publish_jobs(&s, 1);
    let (seq, event) = s.query_all("&project_key=A").remove(0);
    let id = event["id"].as_str().expect("id");
    let r = s
        .http
        .get(s.url(&format!("/v2/events/{id}")))
        .header("accept", "application/cloudevents+json")
        .send()
        .expect("get");
    assert_eq!(r.headers()["content-type"], "application/cloudevents+json");
    assert_eq!(r.headers()["cds-events-seq"], seq.to_string().as_str());
    let ce: Value = r.json().expect("json");
    assert_cloudevent_of(&ce, seq, &event);
    let (_, plain) = s.get(&format!("/v2/events/{id}"));
    assert_eq!(plain, event, "the default stays the full event");
}

#[test]
fn sse_with_format_cloudevents_sends_one_structured_event_per_message() {
    let s = server();
    publish_jobs(&s, 2);
    let cds = s.query_all("&project_key=A");
    let resp = stream_client()
        .get(s.url("/v2/events/stream?project_key=A&since=0&format=cloudevents"))
        .send()
        .expect("stream");
    let msgs = read_sse(resp, |m| m.id == Some(cds[1].0));
    let events: Vec<_> = msgs.iter().filter(|m| m.id.is_some()).collect();
    assert_eq!(events.len(), 2);
    for (m, (seq, event)) in events.iter().zip(&cds) {
        assert_eq!(m.id, Some(*seq));
        let ce: Value = serde_json::from_str(&m.data).expect("json data");
        assert_cloudevent_of(&ce, *seq, event);
    }
}

#[test]
fn the_websocket_sends_cloudevents_when_asked_and_cds_messages_otherwise() {
    let s = server();
    publish_jobs(&s, 1);
    let (seq, event) = s.query_all("&project_key=A").remove(0);
    let filter = json!({"filters": [{"type": "queue"}], "resume_from": 0});
    let got = crate::ws::python_ws(
        &s,
        "?format=cloudevents",
        crate::ADMIN,
        std::slice::from_ref(&filter),
        3.0,
        1,
    );
    assert_eq!(got.len(), 1, "{got:?}");
    assert_cloudevent_of(&got[0], seq, &event);
    let cds = crate::ws::python_ws(&s, "", crate::ADMIN, &[filter], 3.0, 1);
    assert_eq!(cds[0]["status"], "OK");
    assert_eq!(cds[0]["event"], event);
}

fn cloudevent(id: &str, project: &str) -> Value {
    let mut data = job_event(project, 7);
    data["id"] = json!(id);
    data["timestamp"] = json!("2024-02-13T10:23:01.5Z");
    json!({"specversion": "1.0", "id": id, "source": "/elsewhere", "type": "org.ovh.cds.workflowrunjob.RunJobEnded",
           "datacontenttype": "application/json", "cdsseq": "00000000000000000099", "data": data})
}

#[test]
fn ingest_stores_the_cds_event_a_cloudevent_carries_with_its_id() {
    let s = server();
    let one = cloudevent("ce-one", "A");
    let (status, body) = s.post_raw(
        one.to_string(),
        "application/cloudevents+json; charset=utf-8",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"][0]["id"], "ce-one");
    let batch = json!([cloudevent("ce-two", "A"), cloudevent("ce-three", "B")]);
    let (status, body) = s.post_raw(batch.to_string(), "application/cloudevents-batch+json");
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.ids(""), ["ce-one", "ce-two", "ce-three"]);
    let (_, stored) = s.get("/v2/events/ce-one");
    let mut expected = one["data"].clone();
    // The full event always has these two (spec §3).
    expected["user_mail"] = json!("");
    expected["concurrency"] = json!("");
    assert_eq!(stored, expected, "stored as the CDS event it carries");
}

#[test]
fn ingest_refuses_a_cloudevent_that_does_not_match_its_data_naming_the_field() {
    let s = server();
    let mut wrong_type = cloudevent("x1", "A");
    wrong_type["type"] = json!("org.ovh.cds.workflowrun.RunEnded");
    let mut not_cds = cloudevent("x2", "A");
    not_cds["data"] = json!({"hello": "world"});
    let mut no_version = cloudevent("x3", "A");
    no_version.as_object_mut().map(|o| o.remove("specversion"));
    for (ce, field) in [
        (wrong_type, "type"),
        (not_cds, "data.type"),
        (no_version, "specversion"),
    ] {
        let (status, body) = s.post_raw(ce.to_string(), "application/cloudevents+json");
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["details"][0]["field"], field, "{body}");
    }
    let batch = json!([cloudevent("ok", "A"), {"specversion": "1.0"}]);
    let (status, body) = s.post_raw(batch.to_string(), "application/cloudevents-batch+json");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"][0]["index"], 1);
    assert!(s.ids("").is_empty(), "nothing stored");
}

/// Has the Python CloudEvents SDK build one CloudEvent (attributes and data
/// from stdin), and posts it with urllib in `mode` (`binary` or
/// `structured`) to each server: prints each answer's status and body.
const SDK_POST: &str = r#"
import json, sys, urllib.request, urllib.error
from cloudevents.core.v1.event import CloudEvent
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.bindings.http import to_binary, to_structured
ask = json.load(sys.stdin)
event = CloudEvent(ask["attributes"], ask["data"])
out = []
for mode, url in ask["posts"]:
    m = (to_binary if mode == "binary" else to_structured)(event, JSONFormat())
    headers = dict(m.headers)
    headers["authorization"] = "Bearer " + ask["token"]
    req = urllib.request.Request(url, data=m.body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            out.append({"status": r.status, "body": json.load(r)})
    except urllib.error.HTTPError as e:
        out.append({"status": e.code, "body": json.load(e)})
json.dump(out, sys.stdout)
"#;

/// What the server answered each of the SDK's posts of `data` under
/// `attributes`, `posts` being (mode, server).
fn sdk_posts(attributes: Value, data: &Value, posts: &[(&str, &TestServer)]) -> Vec<Value> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    crate::ensure_python_package("cloudevents.core", "cloudevents>=2.2");
    let posts: Vec<Value> = posts
        .iter()
        .map(|(mode, s)| json!([mode, s.url("/v2/events")]))
        .collect();
    let ask =
        json!({"attributes": attributes, "data": data, "posts": posts, "token": crate::ADMIN});
    let mut child = Command::new("python3")
        .args(["-c", SDK_POST])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(ask.to_string().as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    serde_json::from_str(&succeeded(out, "the SDK script")).expect("json")
}

#[test]
fn ingest_stores_a_binary_mode_cloudevent_as_the_same_event_in_structured_mode() {
    let (binary, structured) = (server(), server());
    let mut data = job_event("A é", 7);
    data["timestamp"] = json!("2024-02-13T10:23:01.5Z");
    let attributes = json!({"specversion": "1.0", "id": "ce bin é", "source": "/elsewhere é",
        "type": "org.ovh.cds.workflowrunjob.RunJobEnded", "subject": "rj-7",
        "datacontenttype": "application/json", "cdsseq": "00000000000000000099"});
    let answers = sdk_posts(
        attributes,
        &data,
        &[("binary", &binary), ("structured", &structured)],
    );
    for a in &answers {
        assert_eq!(a["status"], 200, "{a}");
        assert_eq!(a["body"]["events"][0]["id"], "ce bin é", "{a}");
    }
    let path = "/v2/events/ce%20bin%20%C3%A9";
    let (status, from_binary) = binary.get(path);
    assert_eq!(status, 200, "{from_binary}");
    assert_eq!(from_binary, structured.get(path).1, "the same stored event");
    assert_eq!(from_binary["project_key"], "A é");
    assert_eq!(from_binary["payload"], data["payload"]);
}

#[test]
fn ingest_refuses_a_bad_binary_mode_cloudevent_naming_the_header() {
    let s = server();
    let data = job_event("A", 7);
    let good = [
        ("ce-specversion", "1.0"),
        ("ce-id", "b1"),
        ("ce-source", "/elsewhere"),
        ("ce-type", "org.ovh.cds.workflowrunjob.RunJobEnded"),
        ("content-type", "application/json"),
    ];
    let post = |change: (&str, Option<&str>)| {
        let mut req = s.http.post(s.url("/v2/events")).body(data.to_string());
        for (name, value) in good {
            if name != change.0 {
                req = req.header(name, value);
            }
        }
        if let Some(value) = change.1 {
            req = req.header(change.0, value);
        }
        let r = req.send().expect("post");
        (r.status().as_u16(), r.json::<Value>().expect("json"))
    };
    for change in [
        ("ce-specversion", None),
        ("ce-specversion", Some("0.3")),
        ("ce-type", Some("org.ovh.cds.workflowrun.RunEnded")),
        ("ce-id", Some("b%FF")),
        ("ce-source", None),
        ("content-type", Some("application/x-ndjson")),
    ] {
        let (status, body) = post(change);
        assert_eq!(status, 400, "{change:?}: {body}");
        assert_eq!(body["error"]["details"][0]["field"], change.0, "{body}");
    }
    assert!(s.ids("").is_empty(), "nothing stored");
    let (status, body) = post(("ce-time", Some("2024-02-13T10:23:01Z")));
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.ids(""), ["b1"]);
}
