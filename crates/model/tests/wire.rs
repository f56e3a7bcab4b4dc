//! The wire format of spec §3, family by family, and every validation error.

use cds_events_model::*;
use serde_json::{Map, Value, json};

fn keys(json: &str) -> Vec<String> {
    // serde_json's Map keeps insertion order with `preserve_order`; we don't
    // enable it, so read the key order straight from the text instead.
    let v: Value = serde_json::from_str(json).expect("valid json");
    let obj = v.as_object().expect("object");
    let mut found: Vec<(usize, String)> = obj
        .keys()
        .map(|k| {
            (
                json.find(&format!("\"{k}\":")).expect("key in text"),
                k.clone(),
            )
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, k)| k).collect()
}

fn limits() -> Limits {
    Limits::default()
}

/// A producer (family-shaped) JSON object with every context field set.
fn family_shape(t: EventType) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(format!("id-{t}")));
    m.insert("type".into(), json!(t.as_str()));
    m.insert(
        "payload".into(),
        json!({"name": "x", "nested": {"list": [1, 2, {"k": null}]}}),
    );
    m.insert("timestamp".into(), json!("2024-02-13T10:23:01.123456789Z"));
    for f in t.family().fields() {
        let v = match f.name {
            "run_number" => json!(42),
            "run_attempt" => json!(2),
            name => json!(format!("v-{name}")),
        };
        m.insert(f.name.into(), v);
    }
    m
}

#[test]
fn every_family_decodes_its_producer_shape_and_encodes_the_full_event() {
    for family in Family::ALL {
        for t in family.types() {
            let shape = family_shape(*t);
            let text = Value::Object(shape.clone()).to_string();
            let ev = decode_event(&text, &limits()).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(ev.event_type, *t);
            assert_eq!(ev.id, format!("id-{t}"));
            let out = ev.to_json();
            // Exactly: the common keys, the two always-present ones, and the
            // family's fields, in FullEventV2 order.
            let mut want: Vec<&str> = FULL_EVENT_KEYS
                .iter()
                .copied()
                .filter(|k| {
                    matches!(
                        *k,
                        "id" | "type" | "payload" | "timestamp" | "user_mail" | "concurrency"
                    ) || family.fields().iter().any(|f| f.name == *k)
                })
                .collect();
            want.dedup();
            assert_eq!(keys(&out), want, "{t}");
            let back: Value = serde_json::from_str(&out).expect("json");
            for (k, v) in &shape {
                assert_eq!(&back[k], v, "{t}: key {k}");
            }
            // Round trip.
            assert_eq!(decode_event(&out, &limits()).expect("re-decode"), ev, "{t}");
        }
    }
}

#[test]
fn empty_fields_are_omitted_except_user_mail_and_concurrency() {
    let ev = decode_event(
        r#"{"type":"UserCreated","timestamp":"2024-01-01T00:00:00Z"}"#,
        &limits(),
    )
    .expect("ok");
    let out = ev.to_json();
    assert_eq!(
        keys(&out),
        [
            "id",
            "type",
            "payload",
            "user_mail",
            "concurrency",
            "timestamp"
        ]
    );
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["payload"], Value::Null);
    assert_eq!(v["user_mail"], json!(""));
    assert_eq!(v["concurrency"], json!(""));
    assert_eq!(v["timestamp"], json!("2024-01-01T00:00:00Z"));
    // Zero counters are omitted too.
    let ev = decode_event(
        r#"{"type":"RunCrafted","project_key":"P","run_number":0,"run_attempt":0}"#,
        &limits(),
    )
    .expect("ok");
    assert!(!ev.to_json().contains("run_number"));
}

#[test]
fn every_full_event_key_is_written_in_cds_order_when_set() {
    let mut m = Map::new();
    for k in FULL_EVENT_KEYS {
        let v = match *k {
            "type" => json!("RunJobEnded"),
            "payload" => json!({"a": 1}),
            "run_number" | "run_attempt" => json!(7),
            "timestamp" => json!("2024-02-13T10:23:01Z"),
            other => json!(format!("v-{other}")),
        };
        m.insert((*k).into(), v);
    }
    let ev = decode_event(&Value::Object(m).to_string(), &limits()).expect("ok");
    assert_eq!(keys(&ev.to_json()), FULL_EVENT_KEYS);
}

#[test]
fn timestamps_are_written_as_go_writes_them() {
    let cases = [
        (
            "2024-02-13T10:23:01.123456789Z",
            "2024-02-13T10:23:01.123456789Z",
        ),
        ("2024-02-13T10:23:01.120000Z", "2024-02-13T10:23:01.12Z"),
        ("2024-02-13T10:23:01.000Z", "2024-02-13T10:23:01Z"),
        ("2024-02-13T10:23:01Z", "2024-02-13T10:23:01Z"),
        ("2024-02-13T12:23:01.5+02:00", "2024-02-13T12:23:01.5+02:00"),
        ("2024-02-13T10:23:01+00:00", "2024-02-13T10:23:01Z"),
        ("2024-02-13t10:23:01z", "2024-02-13T10:23:01Z"),
    ];
    for (input, want) in cases {
        let text = format!(r#"{{"type":"UserCreated","timestamp":"{input}"}}"#);
        let ev = decode_event(&text, &limits()).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(ev.timestamp.to_go_string(), want, "{input}");
    }
}

#[test]
fn absent_or_zero_timestamp_and_id_get_defaults() {
    let before = Timestamp::now().unix_nanos();
    for text in [
        r#"{"type":"UserCreated"}"#,
        r#"{"type":"UserCreated","timestamp":"0001-01-01T00:00:00Z","id":""}"#,
        r#"{"type":"UserCreated","timestamp":null,"id":null}"#,
    ] {
        let ev = decode_event(text, &limits()).expect("ok");
        assert!(ev.timestamp.unix_nanos() >= before, "{text}: receive time");
        let id = uuid::Uuid::parse_str(&ev.id).expect("a uuid");
        assert_eq!(id.get_version_num(), 7, "{text}: uuid v7");
    }
    let a = decode_event(r#"{"type":"UserCreated"}"#, &limits()).expect("ok");
    let b = decode_event(r#"{"type":"UserCreated"}"#, &limits()).expect("ok");
    assert!(a.id < b.id, "v7 ids sort by time");
}

#[test]
fn payload_is_kept_byte_for_byte() {
    let payload = r#"{ "b" : 1,"a":[1.50, 1e3, "é\u00e9\n"],  "z":{} }"#;
    let text = format!(r#"{{"type":"UserCreated","payload":{payload}}}"#);
    let ev = decode_event(&text, &limits()).expect("ok");
    assert_eq!(ev.payload.get(), payload);
    assert!(ev.to_json().contains(payload));
    let ev = decode_event(
        r#"{"type":"UserCreated","payload":"just a string"}"#,
        &limits(),
    )
    .expect("ok");
    assert_eq!(ev.payload.get(), r#""just a string""#);
}

#[test]
fn unknown_keys_and_null_fields_are_accepted() {
    let ev = decode_event(
        r#"{"type":"ProjectCreated","project_key":"P","future_field":{"x":[1]},"username":null,"run_number":null}"#,
        &limits(),
    )
    .expect("ok");
    assert_eq!(ev.username, "");
    assert!(!ev.to_json().contains("future_field"));
}

fn err(text: &str) -> DecodeError {
    decode_event(text, &limits()).expect_err(text)
}

#[test]
fn unknown_type_is_named_with_suggestions() {
    let e = err(r#"{"type":"RunJobEnd","project_key":"P"}"#);
    assert_eq!(e.code, ErrorCode::UnknownType);
    assert_eq!(e.field.as_deref(), Some("type"));
    assert!(e.message.contains("RunJobEnd"), "{}", e.message);
    assert_eq!(e.suggestions[0], "RunJobEnded");
    let e = err(r#"{"type":"projectcreated","project_key":"P"}"#);
    assert_eq!(
        e.suggestions[0], "ProjectCreated",
        "types are case-sensitive, but the hint helps"
    );
    let e = err(r#"{"project_key":"P"}"#);
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::MissingField, Some("type"))
    );
}

#[test]
fn project_scoped_type_needs_a_project_key() {
    for text in [
        r#"{"type":"RunCrafted"}"#,
        r#"{"type":"RunCrafted","project_key":""}"#,
    ] {
        let e = err(text);
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::MissingField, Some("project_key")),
            "{text}"
        );
    }
    // Global types do not, and may not carry one.
    decode_event(r#"{"type":"RegionCreated","region":"eu"}"#, &limits()).expect("global");
    let e = err(r#"{"type":"RegionCreated","region":"eu","project_key":"P"}"#);
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::UnexpectedField, Some("project_key"))
    );
}

#[test]
fn wrong_json_types_name_the_field() {
    for (text, field) in [
        (
            r#"{"type":"RunCrafted","project_key":"P","run_number":"12"}"#,
            "run_number",
        ),
        (
            r#"{"type":"RunCrafted","project_key":"P","run_attempt":1.5}"#,
            "run_attempt",
        ),
        (r#"{"type":"RunCrafted","project_key":7}"#, "project_key"),
        (
            r#"{"type":"RunCrafted","project_key":"P","status":["x"]}"#,
            "status",
        ),
        (r#"{"type":"UserCreated","timestamp":12}"#, "timestamp"),
        (r#"{"type":3}"#, "type"),
    ] {
        let e = err(text);
        assert_eq!(e.code, ErrorCode::WrongType, "{text}: {e:?}");
        assert_eq!(e.field.as_deref(), Some(field), "{text}");
        assert!(e.message.contains(field), "{text}: {}", e.message);
    }
}

#[test]
fn structural_limits_are_errors_not_crashes() {
    let deep = format!(
        r#"{{"type":"UserCreated","payload":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    assert_eq!(err(&deep).code, ErrorCode::TooDeep);
    let very_deep = format!(
        r#"{{"type":"UserCreated","payload":{}{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(matches!(
        err(&very_deep).code,
        ErrorCode::TooDeep | ErrorCode::InvalidJson
    ));
    let small = Limits {
        max_string_bytes: 12,
        ..Limits::default()
    };
    let e = decode_event(
        r#"{"type":"UserCreated","payload":{"k":"0123456789abc"}}"#,
        &small,
    )
    .expect_err("long");
    assert_eq!(e.code, ErrorCode::StringTooLong);
    assert_eq!(e.field.as_deref(), Some("payload.k"));
    let e = decode_event(
        r#"{"type":"UserCreated","username":"0123456789abc"}"#,
        &small,
    )
    .expect_err("long");
    assert_eq!(e.field.as_deref(), Some("username"));
}

#[test]
fn duplicate_keys_are_refused_anywhere() {
    let e = err(r#"{"type":"UserCreated","username":"a","username":"b"}"#);
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::DuplicateKey, None)
    );
    assert!(e.message.contains("username"));
    let e = err(r#"{"type":"UserCreated","payload":{"a":{"x":1,"x":2}}}"#);
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::DuplicateKey, Some("payload.a"))
    );
    let e = err(r#"{"type":"UserCreated","x":1,"x":1}"#);
    assert_eq!(e.code, ErrorCode::DuplicateKey, "unknown keys too");
    // A key written with an escape is read as a copy, the other borrowed
    // from the text: still the same key.
    let e = err(r#"{"type":"UserCreated","payload":{"ab":1,"a\u0062":2}}"#);
    assert_eq!(e.code, ErrorCode::DuplicateKey, "escaped keys too");
    let body = r#"[{"type":"UserCreated","payload":{"a\u0062":1,"ab":2}}]"#;
    assert!(matches!(
        decode_json_body(body, &Limits::default()),
        Err(BatchError::Items(items)) if items[0].1.code == ErrorCode::DuplicateKey
    ));
    // Many keys (the set-based path).
    let mut many: String = (0..100).map(|i| format!(r#""k{i}":1,"#)).collect();
    many.push_str(r#""k5":2"#);
    assert_eq!(
        err(&format!(r#"{{"type":"UserCreated","payload":{{{many}}}}}"#)).code,
        ErrorCode::DuplicateKey
    );
}

#[test]
fn malformed_input_is_an_error() {
    for text in [
        "",
        "{",
        r#"{"type":"UserCreated"} trailing"#,
        "[1,2]",
        "42",
        r#""str""#,
        "null",
    ] {
        let e = err(text);
        assert!(
            matches!(e.code, ErrorCode::InvalidJson | ErrorCode::NotAnObject),
            "{text:?}: {e:?}"
        );
    }
    let e = err(r#"{"type":"UserCreated","timestamp":"yesterday"}"#);
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::InvalidTimestamp, Some("timestamp"))
    );
    let long_id = format!(r#"{{"type":"UserCreated","id":"{}"}}"#, "a".repeat(200));
    assert_eq!(err(&long_id).code, ErrorCode::InvalidId);
}

#[test]
fn batches_report_each_bad_event_by_index_and_line() {
    let body = r#"[{"type":"UserCreated"},{"type":"Nope"},{"type":"RunCrafted"}]"#;
    match decode_json_body(body, &limits()) {
        Err(BatchError::Items(errs)) => {
            assert_eq!(errs.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![1, 2]);
        }
        other => panic!("{other:?}"),
    }
    let nd = "{\"type\":\"UserCreated\"}\n\n{\"type\":\"Nope\"}\n";
    match decode_ndjson_body(nd, &limits()) {
        Err(BatchError::Items(errs)) => {
            assert_eq!(errs[0].0, 1);
            assert_eq!(ndjson_line_of(nd, 1), Some(3));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decode_ndjson_body(nd.replace("Nope", "UserDeleted").as_str(), &limits())
            .expect("ok")
            .len(),
        2
    );
    assert!(matches!(
        decode_json_body("[1,", &limits()),
        Err(BatchError::Body(_))
    ));
}

#[test]
fn an_element_written_as_an_array_is_not_read_as_an_event() {
    // Read as a struct, a JSON array would fill the fields in order: an id,
    // then a type. An element must be an object, in a batch as alone.
    let body = r#"[{"type":"UserCreated"},["id-1","UserCreated"]]"#;
    match decode_json_body(body, &limits()) {
        Err(BatchError::Items(errs)) => {
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!((errs[0].0, errs[0].1.code), (1, ErrorCode::NotAnObject));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn typed_producers_build_full_events_of_their_family() {
    let ev = WorkflowRunJobEvent {
        project_key: "PROJ".into(),
        workflow: "build".into(),
        workflow_run_id: "r1".into(),
        run_number: 3,
        status: "Building".into(),
        payload: Some(Payload::from_json(r#"{"job":"compile"}"#).expect("json")),
        ..Default::default()
    }
    .into_event(EventType::RunJobBuilding)
    .expect("a job type");
    assert_eq!(ev.family(), Family::WorkflowRunJob);
    assert_eq!((ev.run_number, ev.workflow.as_str()), (3, "build"));
    let e = AnalysisEvent {
        project_key: "P".into(),
        ..Default::default()
    }
    .into_event(EventType::RunCrafted)
    .expect_err("wrong family");
    assert_eq!(e.code, ErrorCode::WrongFamily);
    let e = ProjectEvent::default()
        .into_event(EventType::ProjectCreated)
        .expect_err("no project");
    assert_eq!(e.field.as_deref(), Some("project_key"));
    let ev = UserEvent {
        user_id: "u".into(),
        id: Some("fixed".into()),
        ..Default::default()
    }
    .into_event(EventType::UserCreated)
    .expect("global");
    assert_eq!(ev.id, "fixed");
}

#[test]
fn the_catalogue_is_complete_and_consistent() {
    assert_eq!(EventType::ALL.len(), 67);
    for t in EventType::ALL {
        assert_eq!(EventType::parse(t.as_str()), Some(*t));
        assert!(t.family().types().contains(t));
    }
    for f in Family::ALL {
        assert_eq!(f.as_str().parse::<Family>().ok(), Some(*f));
        let has_pk = f.fields().iter().any(|x| x.name == "project_key");
        assert_eq!(has_pk, f.scope() == Scope::Project, "{f}");
        for field in f.fields() {
            assert!(FULL_EVENT_KEYS.contains(&field.name), "{f}: {}", field.name);
        }
    }
    assert_eq!(EventType::with_prefix("RunJob").len(), 11);
    assert_eq!(parse_types("Run*").expect("ok").len(), 17);
    assert!(parse_types("RunCrafted,Bogus").is_err());
    assert_eq!(parse_families("WorkflowRun,Project").expect("ok").len(), 9);
    assert!(parse_families("Nope").is_err());
}
