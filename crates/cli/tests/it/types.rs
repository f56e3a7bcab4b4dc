//! `GET /v2/events/types/{type}/schema` on the real server: every type's
//! JSON Schema behind the catalogue's link, each event the simulator sent
//! valid under its type's schema for Python's `jsonschema`, and an unknown
//! type a 404 naming `type`.

use crate::{ADMIN, BIN, TestServer, call, client_with_token, succeeded};
use cds_events_model::EventType;
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

/// Each `(type, event)` checked against `schemas[type]` (each schema
/// checked against the 2020-12 meta-schema first): the error messages.
const CHECK: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
req = json.load(sys.stdin)
validators = {}
for t, s in req["schemas"].items():
    Draft202012Validator.check_schema(s)
    validators[t] = Draft202012Validator(s)
json.dump([[e.message for e in validators[t].iter_errors(v)] for t, v in req["events"]], sys.stdout)
"#;

fn python_errors(schemas: &Map<String, Value>, events: &[(String, Value)]) -> Vec<Vec<String>> {
    let req = json!({"schemas": schemas, "events": events});
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
        "the validator failed (is jsonschema installed?)"
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Every schema, fetched through the catalogue's links.
fn schemas(s: &TestServer) -> Map<String, Value> {
    let (status, cat) = s.get("/v2/events/types");
    assert_eq!(status, 200);
    let types = cat["types"].as_array().expect("types");
    assert_eq!(types.len(), EventType::ALL.len());
    let mut out = Map::new();
    for entry in types {
        let t = entry["type"].as_str().expect("type");
        let link = entry["schema"].as_str().expect("a schema link");
        assert_eq!(link, s.url(&format!("/v2/events/types/{t}/schema")));
        let r = s.http.get(link).send().expect("get");
        assert_eq!(r.status().as_u16(), 200, "{link}");
        assert_eq!(
            r.headers()["content-type"].to_str().expect("ascii"),
            "application/schema+json"
        );
        let schema: Value = r.json().expect("json");
        assert_eq!(schema["$id"], json!(link));
        assert_eq!(
            schema["$schema"],
            json!("https://json-schema.org/draft/2020-12/schema")
        );
        assert_eq!(schema["properties"]["type"]["const"], json!(t));
        out.insert(t.to_owned(), schema);
    }
    out
}

#[test]
fn every_simulated_event_validates_against_its_types_schema() {
    let s = TestServer::start();
    let out = Command::new(BIN)
        .args([
            "simulate",
            "--events",
            "400",
            "--batch",
            "50",
            "--projects",
            "3",
            "--json",
        ])
        .env("CDS_EVENTS_SERVER", &s.base)
        .env("CDS_EVENTS_TOKEN", ADMIN)
        .output()
        .expect("simulate runs");
    succeeded(out, "simulate");
    // A global event and one with every optional key left out, sent by hand.
    let (status, body) = s.post_json(&json!([
        {"type": "HatcheryCreated", "hatchery": "swarm"},
        {"type": "ProjectCreated", "project_key": "P", "payload": [1, "two"]},
    ]));
    assert_eq!(status, 200, "{body}");
    let schemas = schemas(&s);
    let events: Vec<(String, Value)> = s
        .query_all("")
        .into_iter()
        .map(|(_, e)| (e["type"].as_str().expect("type").to_owned(), e))
        .collect();
    assert_eq!(events.len(), 402);
    let errors = python_errors(&schemas, &events);
    let bad: Vec<_> = events
        .iter()
        .zip(&errors)
        .filter(|(_, errs)| !errs.is_empty())
        .collect();
    assert!(bad.is_empty(), "invalid under their schema: {bad:#?}");
    // The validator is not blind: the same events as another type fail.
    let (t, e) = &events[0];
    let other = if t == "HatcheryCreated" {
        "ProjectCreated"
    } else {
        "HatcheryCreated"
    };
    let errors = python_errors(&schemas, &[(other.to_owned(), e.clone())]);
    assert!(!errors[0].is_empty(), "{e} valid as {other}");
}

#[test]
fn an_unknown_types_schema_is_a_404_naming_type() {
    let s = TestServer::start();
    let (status, err) = s.get("/v2/events/types/RunEnd/schema");
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"]["code"], json!("not_found"));
    let detail = &err["error"]["details"][0];
    assert_eq!(detail["field"], json!("type"));
    assert_eq!(detail["suggestions"][0], json!("RunEnded"));
    // Types are case-sensitive.
    assert_eq!(s.get("/v2/events/types/runended/schema").0, 404);
    // The same protection as the catalogue.
    let url = s.url("/v2/events/types/RunEnded/schema");
    assert_eq!(
        call(&client_with_token(None), Method::GET, &url, None).0,
        401
    );
}

#[test]
fn behind_a_proxy_the_links_name_the_public_address() {
    let s = TestServer::start();
    let r = s
        .http
        .get(s.url("/v2/events/types/UserCreated/schema"))
        .header("x-forwarded-host", "events.example.com")
        .header("x-forwarded-proto", "https")
        .send()
        .expect("get");
    let schema: Value = r.json().expect("json");
    assert_eq!(
        schema["$id"],
        json!("https://events.example.com/v2/events/types/UserCreated/schema")
    );
    let (_, doc) = s.get("/v2/openapi.json");
    assert!(doc["paths"]["/v2/events/types/{type}/schema"]["get"].is_object());
}
