use super::decode::{decode_binary_cloudevent, decode_cloudevent, decode_cloudevents_body};
use super::*;
use crate::{BatchError, ErrorCode, Limits, Payload, Timestamp};
use serde_json::{Value, json};

fn run_job_ended() -> FullEvent {
    let mut e = FullEvent::new(EventType::RunJobEnded);
    e.id = "ev-1".into();
    e.project_key = "PROJ".into();
    e.workflow_run_id = "run-9".into();
    e.run_job_id = "job-3".into();
    e.status = "Success".into();
    e.payload = Payload::from_json(r#"{"a":[1,2,{"b":"é\"x"}]}"#).expect("json");
    e.timestamp = Timestamp::parse("2024-02-13T10:23:01.123456789Z").expect("time");
    e
}

fn structured(e: &FullEvent, seq: u64) -> Value {
    let json = e.to_json();
    let ce = CloudEvent::new(&Source::default(), seq, e, &json);
    serde_json::from_str(&ce.to_structured_json()).expect("structured JSON")
}

#[test]
fn every_type_maps_to_its_family_namespace_and_the_mapping_is_one_to_one() {
    let mut seen = std::collections::HashSet::new();
    for t in EventType::ALL {
        let ce = ce_type(*t);
        let family = t.family().as_str().to_ascii_lowercase();
        assert_eq!(ce, format!("org.ovh.cds.{family}.{t}"));
        assert!(ce.starts_with(&type_prefix(t.family())));
        assert!(seen.insert(ce), "{t} maps to a type already taken");
    }
    assert_eq!(
        ce_type(EventType::RunEnded),
        "org.ovh.cds.workflowrun.RunEnded"
    );
    assert_eq!(ce_type(EventType::VCSCreated), "org.ovh.cds.vcs.VCSCreated");
}

#[test]
fn the_subject_fields_of_every_family_are_fields_of_that_family() {
    for f in Family::ALL {
        for s in f.subject_fields() {
            assert!(
                f.fields().iter().any(|spec| spec.name == *s),
                "{f}: subject field {s} is not one of its context fields"
            );
        }
    }
}

#[test]
fn the_subject_names_what_the_event_is_about() {
    let e = run_job_ended();
    assert_eq!(e.subject().as_deref(), Some("job-3"));
    let mut run = FullEvent::new(EventType::RunEnded);
    run.workflow_run_id = "run-9".into();
    assert_eq!(run.subject().as_deref(), Some("run-9"));
    let mut analysis = FullEvent::new(EventType::AnalysisDone);
    analysis.vcs_name = "github".into();
    analysis.repository = "ovh/cds".into();
    assert_eq!(analysis.subject().as_deref(), Some("github/ovh/cds"));
    let mut entity = FullEvent::new(EventType::EntityDeleted);
    entity.entity = "workflow:build".into();
    assert_eq!(entity.subject().as_deref(), Some("workflow:build"));
    assert_eq!(FullEvent::new(EventType::UserCreated).subject(), None);
}

#[test]
fn a_structured_event_has_every_required_attribute_and_the_full_event_as_data() {
    let e = run_job_ended();
    let v = structured(&e, 42);
    assert_eq!(v["specversion"], "1.0");
    assert_eq!(v["id"], "ev-1");
    assert_eq!(v["source"], "/cds-events/projects/PROJ");
    assert_eq!(v["type"], "org.ovh.cds.workflowrunjob.RunJobEnded");
    assert_eq!(v["subject"], "job-3");
    assert_eq!(v["time"], "2024-02-13T10:23:01.123456789Z");
    assert_eq!(v["datacontenttype"], "application/json");
    assert_eq!(v["cdsseq"], "00000000000000000042");
    assert_eq!(v["cdsproject"], "PROJ");
    let data: Value = serde_json::from_str(&e.to_json()).expect("json");
    assert_eq!(v["data"], data);
}

#[test]
fn attribute_names_are_lowercase_alphanumeric_as_the_spec_requires() {
    let e = run_job_ended();
    let json = e.to_json();
    let ce = CloudEvent::new(&Source::default(), 1, &e, &json);
    for (name, _) in ce.attributes() {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && name.len() <= 20,
            "{name}"
        );
    }
}

#[test]
fn the_time_is_rfc_3339_with_the_producers_offset() {
    let mut e = run_job_ended();
    e.timestamp = Timestamp::parse("2024-02-13T12:23:01+02:00").expect("time");
    let v = structured(&e, 1);
    let time = v["time"].as_str().expect("time");
    assert_eq!(time, "2024-02-13T12:23:01+02:00");
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok());
}

#[test]
fn a_global_event_has_the_global_source_and_no_cdsproject() {
    let mut e = FullEvent::new(EventType::HatcheryCreated);
    e.hatchery = "h1".into();
    let v = structured(&e, 7);
    assert_eq!(v["source"], "/cds-events/global");
    assert_eq!(v["subject"], "h1");
    assert!(v.get("cdsproject").is_none());
}

#[test]
fn cdsseq_strings_sort_as_the_sequence_numbers_do() {
    let seqs = [1u64, 9, 10, 99, 100, 12_345, u64::MAX];
    let texts: Vec<String> = seqs.iter().map(|s| seq_text(*s)).collect();
    let mut sorted = texts.clone();
    sorted.sort();
    assert_eq!(texts, sorted);
    assert!(texts.iter().all(|t| t.len() == 20));
}

#[test]
fn the_source_base_is_checked_and_a_project_key_is_percent_encoded() {
    let s = Source::new("https://cds.example.com/events/").expect("valid");
    assert_eq!(s.as_str(), "https://cds.example.com/events");
    assert_eq!(
        s.for_project("MY PROJ/é"),
        "https://cds.example.com/events/projects/MY%20PROJ%2F%C3%A9"
    );
    assert!(Source::new("").is_err());
    assert!(Source::new("/").is_err());
    assert!(Source::new("has space").is_err());
    assert!(
        CloudEventsConfig::default().source().is_ok(),
        "the default is valid"
    );
}

#[test]
fn binary_headers_percent_encode_what_the_http_binding_asks() {
    assert_eq!(header_value("a b\"c%d/é"), "a%20b%22c%25d/%C3%A9");
    let e = run_job_ended();
    let json = e.to_json();
    let ce = CloudEvent::new(&Source::default(), 5, &e, &json);
    let headers = ce.binary_headers();
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "ce-specversion",
            "ce-id",
            "ce-source",
            "ce-type",
            "ce-subject",
            "ce-time",
            "ce-cdsseq",
            "ce-cdsproject"
        ]
    );
}

#[test]
fn each_brokers_binding_names_and_encodes_the_attributes_its_own_way() {
    let mut e = run_job_ended();
    e.project_key = "MY PRÖJ".into();
    let json = e.to_json();
    let ce = CloudEvent::new(&Source::default(), 5, &e, &json);
    let get = |b: Binding, name: &str| {
        ce.binding_headers(b)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    };
    // Kafka: `ce_`, values as UTF-8, datacontenttype in `content-type`.
    assert_eq!(
        get(Binding::Kafka, "ce_cdsproject").as_deref(),
        Some("MY PRÖJ")
    );
    assert_eq!(get(Binding::Kafka, "ce_id").as_deref(), Some("ev-1"));
    assert_eq!(get(Binding::Kafka, "ce_datacontenttype"), None);
    // NATS: `ce-`, percent-encoded, and datacontenttype is an attribute header.
    assert_eq!(
        get(Binding::Nats, "ce-cdsproject").as_deref(),
        Some("MY%20PR%C3%96J")
    );
    assert_eq!(
        get(Binding::Nats, "ce-datacontenttype").as_deref(),
        Some("application/json")
    );
    // AMQP: `cloudEvents_`, strings as they are.
    assert_eq!(
        get(Binding::Amqp, "cloudEvents_cdsproject").as_deref(),
        Some("MY PRÖJ")
    );
    assert_eq!(get(Binding::Amqp, "cloudEvents_datacontenttype"), None);
    for b in [Binding::Http, Binding::Kafka, Binding::Nats, Binding::Amqp] {
        let n = ce.binding_headers(b).len();
        let expected = if b.content_type_carries_datacontenttype() {
            8
        } else {
            9
        };
        assert_eq!(n, expected, "{b:?}: every attribute once");
    }
    assert_eq!(ce.binary_headers(), ce.binding_headers(Binding::Http));
}

#[test]
fn a_batch_is_a_json_array_of_structured_events() {
    let a = run_job_ended();
    let mut b = run_job_ended();
    b.id = "ev-2".into();
    let (ja, jb) = (a.to_json(), b.to_json());
    let src = Source::default();
    let text = batch_json([
        CloudEvent::new(&src, 1, &a, &ja),
        CloudEvent::new(&src, 2, &b, &jb),
    ]);
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert_eq!(v[1]["id"], "ev-2");
    assert_eq!(batch_json(std::iter::empty()), "[]");
}

#[test]
fn a_structured_event_decodes_back_to_the_same_cds_event() {
    let e = run_job_ended();
    let json = e.to_json();
    let text = CloudEvent::new(&Source::default(), 3, &e, &json).to_structured_json();
    let back = decode_cloudevent(&text, &Limits::default()).expect("decodes");
    assert_eq!(back, e);
    assert_eq!(back.payload.get(), e.payload.get(), "payload byte for byte");
    let batch = format!("[{text},{text}]");
    let events = decode_cloudevents_body(&batch, &Limits::default()).expect("batch");
    assert_eq!(events.len(), 2);
}

#[test]
fn data_without_an_id_takes_the_cloudevents_id() {
    let text =
        json!({"specversion":"1.0","id":"ce-7","source":"/x","type":"org.ovh.cds.user.UserCreated",
        "data":{"type":"UserCreated","user_id":"u","username":"n"}})
        .to_string();
    let ev = decode_cloudevent(&text, &Limits::default()).expect("decodes");
    assert_eq!(ev.id, "ce-7");
}

fn refusal(v: Value) -> (ErrorCode, String) {
    let e = decode_cloudevent(&v.to_string(), &Limits::default()).expect_err("refused");
    (e.code, e.field.unwrap_or_default())
}

#[test]
fn each_mismatch_is_refused_naming_the_field() {
    let good = json!({"specversion":"1.0","id":"u1","source":"/x","type":"org.ovh.cds.user.UserCreated",
        "data":{"id":"u1","type":"UserCreated","user_id":"u","username":"n"}});
    assert!(decode_cloudevent(&good.to_string(), &Limits::default()).is_ok());
    let with = |key: &str, value: Value| {
        let mut v = good.clone();
        v[key] = value;
        v
    };
    let without = |key: &str| {
        let mut v = good.clone();
        v.as_object_mut().map(|o| o.remove(key));
        v
    };
    assert_eq!(
        refusal(without("specversion")),
        (ErrorCode::MissingField, "specversion".into())
    );
    assert_eq!(
        refusal(with("specversion", json!("0.3"))),
        (ErrorCode::WrongType, "specversion".into())
    );
    assert_eq!(
        refusal(without("source")),
        (ErrorCode::MissingField, "source".into())
    );
    assert_eq!(
        refusal(with("id", json!("other"))),
        (ErrorCode::InvalidId, "id".into())
    );
    assert_eq!(
        refusal(with("type", json!("org.ovh.cds.user.UserDeleted"))),
        (ErrorCode::WrongType, "type".into())
    );
    assert_eq!(
        refusal(without("data")),
        (ErrorCode::MissingField, "data".into())
    );
    let mut b64 = without("data");
    b64["data_base64"] = json!("e30=");
    assert_eq!(refusal(b64), (ErrorCode::MissingField, "data".into()));
    assert_eq!(refusal(with("data", json!("text"))).1, "data");
    assert_eq!(
        refusal(with("datacontenttype", json!("text/xml"))),
        (ErrorCode::WrongType, "datacontenttype".into())
    );
    let mut bad_field = good.clone();
    bad_field["data"]["user_id"] = json!(5);
    assert_eq!(
        refusal(bad_field),
        (ErrorCode::WrongType, "data.user_id".into())
    );
    let mut unknown = good.clone();
    unknown["data"]["type"] = json!("Nope");
    assert_eq!(
        refusal(unknown),
        (ErrorCode::UnknownType, "data.type".into())
    );
}

#[test]
fn a_batch_names_the_index_of_each_bad_cloudevent() {
    let good = json!({"specversion":"1.0","id":"u1","source":"/x","type":"org.ovh.cds.user.UserCreated",
        "data":{"type":"UserCreated","user_id":"u","username":"n"}});
    let body = json!([good, {"specversion":"1.0"}]).to_string();
    match decode_cloudevents_body(&body, &Limits::default()) {
        Err(BatchError::Items(errors)) => {
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].0, 1);
            assert_eq!(errors[0].1.field.as_deref(), Some("id"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Decodes a binary-mode CloudEvent from (name, value) header pairs.
fn binary(headers: &[(&str, &str)], body: &str) -> Result<FullEvent, crate::DecodeError> {
    decode_binary_cloudevent(
        headers.iter().map(|(n, v)| (*n, v.as_bytes())),
        body,
        &Limits::default(),
    )
}

#[test]
fn a_binary_event_decodes_back_to_the_same_cds_event() {
    let e = run_job_ended();
    let json = e.to_json();
    let ce = CloudEvent::new(&Source::default(), 3, &e, &json);
    let mut headers = ce.binary_headers();
    headers.push(("content-type".into(), "application/json".into()));
    headers.push(("ce-unknownextension".into(), "%FF ignored".into()));
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let back = binary(&pairs, ce.data).expect("decodes");
    assert_eq!(back, e);
    assert_eq!(back.payload.get(), e.payload.get(), "payload byte for byte");
}

#[test]
fn a_binary_event_reads_percent_encoded_headers_and_may_omit_content_type() {
    let body = r#"{"type":"UserCreated","user_id":"u","username":"n"}"#;
    let ev = binary(
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "id%20%C3%A9"),
            ("ce-source", "/x"),
            ("ce-type", "org.ovh.cds.user.UserCreated"),
        ],
        body,
    )
    .expect("decodes");
    assert_eq!(ev.id, "id é", "the data without an id takes ce-id, decoded");
}

#[test]
fn each_bad_binary_header_is_refused_naming_the_header() {
    let good: Vec<(&str, &str)> = vec![
        ("ce-specversion", "1.0"),
        ("ce-id", "u1"),
        ("ce-source", "/x"),
        ("ce-type", "org.ovh.cds.user.UserCreated"),
        ("content-type", "application/json; charset=utf-8"),
    ];
    let body = r#"{"id":"u1","type":"UserCreated","user_id":"u","username":"n"}"#;
    assert!(binary(&good, body).is_ok());
    let refused = |headers: Vec<(&str, &str)>, body: &str| {
        let e = binary(&headers, body).expect_err("refused");
        (e.code, e.field.unwrap_or_default())
    };
    let with = |name: &'static str, value: &'static str| {
        let mut h: Vec<_> = good.iter().copied().filter(|(n, _)| *n != name).collect();
        h.push((name, value));
        h
    };
    let without = |name: &str| -> Vec<(&str, &str)> {
        good.iter().copied().filter(|(n, _)| *n != name).collect()
    };
    let cases = [
        (
            without("ce-specversion"),
            ErrorCode::MissingField,
            "ce-specversion",
        ),
        (
            with("ce-specversion", "0.3"),
            ErrorCode::WrongType,
            "ce-specversion",
        ),
        (without("ce-id"), ErrorCode::MissingField, "ce-id"),
        (with("ce-id", "other"), ErrorCode::InvalidId, "ce-id"),
        (with("ce-id", "u%FF1"), ErrorCode::InvalidUtf8, "ce-id"),
        (without("ce-source"), ErrorCode::MissingField, "ce-source"),
        (
            with("ce-type", "org.ovh.cds.user.UserDeleted"),
            ErrorCode::WrongType,
            "ce-type",
        ),
        (
            with("content-type", "text/plain"),
            ErrorCode::WrongType,
            "content-type",
        ),
    ];
    for (headers, code, field) in cases {
        assert_eq!(refused(headers, body), (code, field.to_owned()), "{field}");
    }
    let mut twice = good.clone();
    twice.push(("ce-id", "u1"));
    assert_eq!(
        refused(twice, body),
        (ErrorCode::DuplicateKey, "ce-id".into())
    );
    assert_eq!(
        refused(good.clone(), " "),
        (ErrorCode::MissingField, "data".into())
    );
    let wrong_data = r#"{"id":"u1","type":"UserCreated","user_id":5,"username":"n"}"#;
    assert_eq!(
        refused(good.clone(), wrong_data),
        (ErrorCode::WrongType, "data.user_id".into())
    );
}

#[test]
fn the_documented_table_is_the_catalogues() {
    let doc = include_str!("../../../../docs/cloudevents.md");
    assert!(
        doc.contains(&family_table()),
        "docs/cloudevents.md is out of date; its table must be:\n{}",
        family_table()
    );
}
