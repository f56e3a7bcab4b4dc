//! The schema of each type and the decoder agree, both ways: every event
//! made from a type's schema is accepted as that type, and every edit that
//! breaks one keyword of the schema is refused. The events are made by a
//! generator that reads only the schema (`make`), so a schema that says more
//! or less than the decoder fails here. `python` asks a validator no one
//! here wrote (Python's `jsonschema`) the same questions.

mod make;
mod python;

use cds_events_model::schema::event_schema;
use cds_events_model::{EventType, FULL_EVENT_KEYS, FullEvent, Limits, decode_event};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::sync::LazyLock;

/// Every type's schema, in catalogue order.
static SCHEMAS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    EventType::ALL
        .iter()
        .map(|t| event_schema(*t, "https://events.example", &Limits::default()))
        .collect()
});

fn schema_of(t: EventType) -> &'static Value {
    let i = EventType::ALL.iter().position(|x| *x == t).expect("a type");
    &SCHEMAS[i]
}

/// Each type's schema violations, listed once.
static VIOLATIONS: LazyLock<Vec<Vec<make::Violation>>> =
    LazyLock::new(|| SCHEMAS.iter().map(make::violations).collect());

fn violations_of(t: EventType) -> &'static [make::Violation] {
    let i = EventType::ALL.iter().position(|x| *x == t).expect("a type");
    &VIOLATIONS[i]
}

/// A type and an event made from its schema (the strategies are built once).
fn typed_instances() -> impl Strategy<Value = (EventType, Value)> {
    proptest::strategy::Union::new(
        EventType::ALL
            .iter()
            .map(|t| make::instances(schema_of(*t)).prop_map(move |v| (*t, v))),
    )
}

/// The decoder's verdict on `instance` as an event of type `t`.
fn accepted_as(t: EventType, instance: &Value) -> Result<FullEvent, String> {
    match decode_event(&instance.to_string(), &Limits::default()) {
        Ok(ev) if ev.event_type == t => Ok(ev),
        Ok(ev) => Err(format!("accepted as {}", ev.event_type)),
        Err(e) => Err(e.message),
    }
}

/// A share of the configured cases (`PROPTEST_CASES`), at least the default
/// 256: each case here decodes a whole event or many.
fn scaled(share: u32) -> ProptestConfig {
    ProptestConfig::with_cases((ProptestConfig::default().cases / share).max(256))
}

proptest! {
    // CI's PROPTEST_CASES=20000 makes 2500 cases.
    #![proptest_config(scaled(8))]
    #[test]
    fn every_event_made_from_a_schema_is_accepted_as_its_type((t, v) in typed_instances()) {
        let ev = accepted_as(t, &v).map_err(|e| TestCaseError::fail(format!("{e}: {v}")))?;
        // What was sent is kept: the payload byte for byte, every context value.
        if !v["payload"].is_null() {
            prop_assert_eq!(ev.payload.get(), v["payload"].to_string());
        }
        let out: Value = serde_json::from_str(&ev.to_json()).expect("json");
        for key in FULL_EVENT_KEYS.iter().filter(|k| !matches!(**k, "id" | "type" | "payload" | "timestamp")) {
            let sent = &v[*key];
            let empty = sent.is_null() || *sent == json!("") || *sent == json!(0);
            if !empty {
                prop_assert_eq!(&out[*key], sent, "{} of {}", key, v);
            }
        }
    }

}

proptest! {
    // Each case tries some thirty edits (CI's PROPTEST_CASES=20000 makes 625 cases).
    #![proptest_config(scaled(32))]
    #[test]
    fn every_edit_that_breaks_the_schema_is_refused((t, v) in typed_instances()) {
        for violation in violations_of(t) {
            let broken = violation.apply(&v);
            prop_assert!(
                accepted_as(t, &broken).is_err(),
                "breaks {} yet accepted: {}", violation.breaks, broken
            );
        }
    }
}

#[test]
fn an_event_that_is_not_an_object_is_refused() {
    assert_eq!(SCHEMAS[0]["type"], "object");
    for v in [json!(null), json!(1), json!("RunEnded"), json!(true)] {
        assert!(
            decode_event(&v.to_string(), &Limits::default()).is_err(),
            "{v}"
        );
    }
}

#[test]
fn the_violations_cover_every_keyword_that_constrains() {
    let breaks: Vec<String> = make::violations(schema_of(EventType::RunEnded))
        .into_iter()
        .map(|v| v.breaks)
        .collect();
    for want in [
        "required type",
        "required project_key",
        "const of type",
        "type of run_number",
        "minLength of project_key",
        "maxLength of id",
        "pattern of id",
        "pattern of timestamp",
    ] {
        assert!(breaks.iter().any(|b| b == want), "no {want} in {breaks:?}");
    }
    let global = make::violations(schema_of(EventType::UserCreated));
    assert!(global.iter().any(|v| v.breaks == "enum of project_key"));
}
