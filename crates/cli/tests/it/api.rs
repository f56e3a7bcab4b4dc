//! Ingest, query and get-by-id, as a producer and a reader see them.

use crate::{TestServer, job_event};
use serde_json::{Value, json};

fn published_ids(answer: &Value) -> Vec<String> {
    answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

#[test]
fn publish_then_query_by_each_filter() {
    let s = TestServer::start();
    let events = json!([
        {"id": "e1", "type": "RunCrafted", "project_key": "A", "vcs_name": "github", "repository": "org/a",
         "workflow": "build", "workflow_run_id": "run-1", "run_number": 1, "status": "Crafting",
         "user_id": "u1", "username": "alice", "user_mail": "a@x", "timestamp": "2024-01-01T10:00:00Z"},
        {"id": "e2", "type": "RunJobEnqueued", "project_key": "A", "vcs_name": "github", "repository": "org/a",
         "workflow": "build", "workflow_run_id": "run-1", "run_job_id": "rj-1", "job_id": "compile",
         "region": "eu", "status": "Waiting", "user_id": "u1", "username": "alice",
         "timestamp": "2024-01-01T10:00:01Z"},
        {"id": "e3", "type": "RunJobEnded", "project_key": "A", "vcs_name": "github", "repository": "org/a",
         "workflow": "build", "workflow_run_id": "run-1", "run_job_id": "rj-1", "job_id": "compile",
         "region": "eu", "hatchery": "swarm", "status": "Success", "user_id": "u1", "username": "alice",
         "timestamp": "2024-01-01T10:05:00Z"},
        {"id": "e4", "type": "AnalysisDone", "project_key": "B", "vcs_name": "gitlab", "repository": "org/b",
         "status": "Success", "username": "bob", "user_id": "u2", "timestamp": "2024-01-02T00:00:00+02:00"},
        {"id": "e5", "type": "HatcheryCreated", "hatchery": "swarm", "user_id": "u2", "username": "bob",
         "timestamp": "2024-01-03T00:00:00Z"},
        {"id": "e6", "type": "RunEnded", "project_key": "B", "workflow": "deploy", "workflow_run_id": "run-2",
         "status": "Fail", "user_id": "u2", "username": "bob", "timestamp": "2024-01-03T12:00:00Z"}
    ]);
    let (status, answer) = s.post_json(&events);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(published_ids(&answer), ["e1", "e2", "e3", "e4", "e5", "e6"]);
    let seqs: Vec<u64> = answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);

    let cases: &[(&str, &[&str])] = &[
        ("", &["e1", "e2", "e3", "e4", "e5", "e6"]),
        ("&project_key=A", &["e1", "e2", "e3"]),
        ("&project_key=A,B", &["e1", "e2", "e3", "e4", "e6"]),
        ("&type=RunCrafted", &["e1"]),
        ("&type=RunCrafted,AnalysisDone", &["e1", "e4"]),
        ("&type=RunJob*", &["e2", "e3"]),
        ("&type=Run*&project_key=B", &["e6"]),
        ("&family=WorkflowRun", &["e1", "e6"]),
        ("&family=Hatchery,Analysis", &["e4", "e5"]),
        ("&family=WorkflowRunJob&type=RunJobEnded", &["e3"]),
        ("&vcs_name=gitlab", &["e4"]),
        ("&repository=org/a", &["e1", "e2", "e3"]),
        ("&workflow=deploy", &["e6"]),
        ("&workflow_run_id=run-1", &["e1", "e2", "e3"]),
        ("&workflow_run_id=run-1&type=RunJob*", &["e2", "e3"]),
        ("&run_job_id=rj-1", &["e2", "e3"]),
        ("&job_id=compile", &["e2", "e3"]),
        ("&user=alice", &["e1", "e2", "e3"]),
        ("&user=u2", &["e4", "e5", "e6"]),
        ("&region=eu", &["e2", "e3"]),
        ("&hatchery=swarm", &["e3", "e5"]),
        ("&status=Success", &["e3", "e4"]),
        (
            "&since=2024-01-01T10:00:01Z",
            &["e2", "e3", "e4", "e5", "e6"],
        ),
        ("&until=2024-01-01T10:05:00Z", &["e1", "e2", "e3"]),
        // e4 is 2024-01-01T22:00:00Z once its offset is applied.
        (
            "&since=2024-01-01T12:00:00Z&until=2024-01-02T23:00:00%2B01:00",
            &["e4"],
        ),
        ("&order=desc", &["e6", "e5", "e4", "e3", "e2", "e1"]),
        ("&project_key=A&order=desc", &["e3", "e2", "e1"]),
        ("&project_key=nobody", &[]),
    ];
    for (params, want) in cases {
        assert_eq!(s.ids(params), *want, "query {params}");
    }

    // Pages of 2 with the cursor, in both orders.
    let (_, p1) = s.get("/v2/events?limit=2");
    assert_eq!(p1["next_cursor"], json!(2));
    let (_, p2) = s.get("/v2/events?limit=2&cursor=2");
    assert_eq!(p2["events"][0]["seq"], json!(3));
    let (_, d) = s.get("/v2/events?limit=2&order=desc&cursor=5");
    let got: Vec<u64> = d["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(got, [4, 3]);
    // The event leaves exactly as stored: the sequence number is beside it, not in it.
    assert!(p1["events"][0]["event"].get("seq").is_none());
    assert_eq!(
        p1["events"][0]["event"]["timestamp"],
        json!("2024-01-01T10:00:00Z")
    );
    assert_eq!(
        s.query_all("&type=AnalysisDone")[0].1["timestamp"],
        json!("2024-01-02T00:00:00+02:00")
    );
}

#[test]
fn get_by_id_returns_the_bare_event_with_its_sequence_in_a_header() {
    let s = TestServer::start();
    let (_, a) = s.post_raw(
        r#"{"id": "ev/with space", "type": "ProjectCreated", "project_key": "P",
            "payload": {"b":1,"a":[true,null]}, "user_id": "u", "username": "n"}"#,
        "application/json",
    );
    assert_eq!(a["events"][0]["seq"], json!(1));
    let r = s
        .http
        .get(s.url("/v2/events/ev%2Fwith%20space"))
        .send()
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cds-events-seq"], "1");
    let text = r.text().expect("text");
    assert!(text.starts_with(r#"{"id":"ev/with space","type":"ProjectCreated","payload":{"b":1,"a":[true,null]},"project_key":"P","user_id":"u","username":"n","user_mail":"","concurrency":"","timestamp":""#), "{text}");
    let (status, err) = s.get("/v2/events/nope");
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], json!("not_found"));
}

#[test]
fn batch_with_one_invalid_event_stores_nothing() {
    let s = TestServer::start();
    let batch = json!([job_event("P", 1), {"type": "RunJobEnde", "project_key": "P"}, job_event("P", 2),
        {"type": "RunCrafted"}, {"type": "RunCrafted", "project_key": "P", "run_number": "7"}]);
    let (status, err) = s.post_json(&batch);
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], json!("invalid_events"));
    let details = err["error"]["details"].as_array().expect("details");
    let idx: Vec<u64> = details
        .iter()
        .map(|d| d["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(idx, [1, 3, 4]);
    assert_eq!(details[0]["suggestions"][0], json!("RunJobEnded"));
    assert_eq!(details[1]["field"], json!("project_key"));
    assert_eq!(details[2]["field"], json!("run_number"));
    assert!(s.ids("").is_empty(), "nothing stored");
    // The next good batch starts at sequence 1: the refused one consumed none.
    let (_, ok) = s.post_json(&json!([job_event("P", 1)]));
    assert_eq!(ok["events"][0]["seq"], json!(1));
}

#[test]
fn ndjson_batches_are_accepted_and_errors_name_the_line() {
    let s = TestServer::start();
    let good: String = (0..5)
        .map(|i| format!("{}\n\n", job_event("P", i)))
        .collect();
    let (status, a) = s.post_raw(good, "application/x-ndjson");
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["events"].as_array().expect("events").len(), 5);
    let bad = format!(
        "{}\n{}\n{{\"type\":\"ProjectCreated\"",
        job_event("P", 9),
        job_event("P", 10)
    );
    let (status, e) = s.post_raw(bad, "application/x-ndjson; charset=utf-8");
    assert_eq!(status, 400);
    assert_eq!(e["error"]["details"][0]["line"], json!(3));
    assert_eq!(e["error"]["details"][0]["index"], json!(2));
    assert_eq!(s.ids("").len(), 5);
}

#[test]
fn a_retried_post_returns_the_original_sequence_numbers() {
    let s = TestServer::start();
    let batch = json!([
        {"id": "a", "type": "UserCreated", "user_id": "1", "username": "x"},
        {"id": "b", "type": "UserCreated", "user_id": "2", "username": "y"}
    ]);
    let (_, first) = s.post_json(&batch);
    let (_, other) =
        s.post_json(&json!({"id": "c", "type": "UserDeleted", "user_id": "1", "username": "x"}));
    let (status, retry) = s.post_json(&batch);
    assert_eq!(status, 200);
    assert_eq!(retry["events"][0]["seq"], first["events"][0]["seq"]);
    assert_eq!(retry["events"][1]["seq"], first["events"][1]["seq"]);
    assert_eq!(retry["events"][0]["duplicate"], json!(true));
    assert_eq!(other["events"][0]["seq"], json!(3));
    assert_eq!(s.ids(""), ["a", "b", "c"]);
}

#[test]
fn bad_bodies_and_parameters_get_structured_errors() {
    let s = TestServer::builder()
        .env("CDS_EVENTS_INGEST__MAX_BATCH_EVENTS", "3")
        .env("CDS_EVENTS_INGEST__MAX_BODY_BYTES", "4096")
        .start();
    let four = json!([
        job_event("P", 1),
        job_event("P", 2),
        job_event("P", 3),
        job_event("P", 4)
    ]);
    let (status, e) = s.post_json(&four);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{e}"
    );
    let big = json!({"type": "UserCreated", "payload": "x".repeat(5000)});
    let (status, e) = s.post_json(&big);
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{e}"
    );
    let (status, e) = s.post_raw(
        b"{\"type\":\"UserCreated\",\"username\":\"\xff\xfe\"}".to_vec(),
        "application/json",
    );
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("invalid_utf8")),
        "{e}"
    );
    let (status, e) = s.post_raw("[{\"type\":", "application/json");
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{e}"
    );
    let (status, e) = s.post_raw("[]", "application/json");
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("empty_batch")),
        "{e}"
    );
    for (params, field) in [
        ("limit=5000", "limit"),
        ("limit=0", "limit"),
        ("limit=ten", "limit"),
        ("order=up", "order"),
        ("cursor=-3", "cursor"),
        ("since=yesterday", "since"),
        ("until=2024-13-01T00:00:00Z", "until"),
        ("type=Bogus", "type"),
        ("type=Nothing*", "type"),
        ("family=Nope", "family"),
    ] {
        let (status, e) = s.get(&format!("/v2/events?{params}"));
        assert_eq!(status, 400, "{params}");
        assert_eq!(
            e["error"]["details"][0]["field"],
            json!(field),
            "{params}: {e}"
        );
    }
    let (status, e) = s.get("/v2/nothing-here");
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert!(s.ids("").is_empty());
}

#[test]
fn the_catalogue_and_openapi_document_are_served() {
    let s = TestServer::start();
    let (status, cat) = s.get("/v2/events/types");
    assert_eq!(status, 200);
    assert_eq!(
        cat["types"].as_array().expect("types").len(),
        cds_events_model::EventType::ALL.len()
    );
    let run = cat["families"]
        .as_array()
        .expect("families")
        .iter()
        .find(|f| f["name"] == "WorkflowRun")
        .expect("WorkflowRun");
    assert_eq!(run["scope"], json!("project"));
    assert!(
        run["types"]
            .as_array()
            .expect("types")
            .contains(&json!("RunCrafted"))
    );
    let (status, doc) = s.get("/v2/openapi.json");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    for (path, method) in [
        ("/v2/events", "post"),
        ("/v2/events", "get"),
        ("/v2/events/{id}", "get"),
        ("/v2/events/types", "get"),
        ("/v2/openapi.json", "get"),
        ("/mon/status", "get"),
        ("/mon/version", "get"),
        ("/mon/metrics", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["FullEvent"]["properties"]["user_mail"].is_object());
}
