//! Property-based fuzzing of the decoder and the NDJSON reader: whatever the
//! bytes, decoding answers Ok or a structured error, never a panic; whatever
//! event it accepts, it writes back and reads again unchanged.
//!
//! `cargo fuzz` needs a nightly toolchain, which this project's machines do
//! not have; proptest runs on stable, shrinks failures, and records them in
//! `proptest-regressions/`, where each becomes a permanent regression case.
//! CI runs it with `PROPTEST_CASES` set (see `.ci/run`).

use cds_events_model::*;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn limits() -> Limits {
    Limits {
        max_depth: 16,
        max_string_bytes: 4096,
        max_id_bytes: 128,
    }
}

/// Any JSON value, shallow or nested, with some keys that the decoder knows.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(24, 256, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(FULL_EVENT_KEYS.to_vec()).prop_map(str::to_owned),
        "[a-z_]{1,12}"
    ]
}

/// An object shaped like an event: a real or near-miss type and random fields.
fn event_like() -> impl Strategy<Value = Value> {
    let ty = prop_oneof![
        prop::sample::select(EventType::ALL.to_vec()).prop_map(|t| Value::from(t.as_str())),
        ".{0,16}".prop_map(Value::String),
        json_value(),
    ];
    (ty, prop::collection::vec((key(), json_value()), 0..12)).prop_map(|(ty, fields)| {
        let mut m: Map<String, Value> = fields.into_iter().collect();
        m.insert("type".into(), ty);
        Value::Object(m)
    })
}

/// A valid event of any type, with random context values.
fn valid_event() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(EventType::ALL.to_vec()),
        "[A-Z]{1,8}",
        prop::collection::vec("[ -~]{0,16}", 16),
        any::<i64>(),
        json_value(),
        0i64..4_000_000_000,
        0u32..1_000_000_000,
    )
        .prop_map(|(t, project, values, n, payload, secs, nanos)| {
            let mut m = Map::new();
            m.insert("type".into(), json!(t.as_str()));
            for (f, v) in t.family().fields().iter().zip(values) {
                let value = match f.name {
                    "run_number" | "run_attempt" => json!(n),
                    "project_key" => json!(project),
                    _ => json!(v),
                };
                m.insert(f.name.into(), value);
            }
            m.insert("payload".into(), payload);
            let ts = chrono::DateTime::from_timestamp(secs, nanos).expect("in range");
            m.insert(
                "timestamp".into(),
                json!(ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            );
            Value::Object(m)
        })
}

/// An event with what the decoder makes up when the input lacks it (a fresh
/// id, the time now) blanked, so that two decodes of one input compare.
fn without_made_up_fields(mut e: FullEvent) -> FullEvent {
    e.id.clear();
    e.timestamp = Timestamp::parse("2026-01-01T00:00:00Z").expect("a timestamp");
    e
}

proptest! {
    #[test]
    fn an_array_decodes_as_its_elements_one_by_one(items in prop::collection::vec(prop_oneof![valid_event(), event_like(), json_value()], 0..5)) {
        let texts: Vec<String> = items.iter().map(Value::to_string).collect();
        let body = format!("[{}]", texts.join(","));
        let one_by_one: Vec<Result<FullEvent, DecodeError>> =
            texts.iter().map(|t| decode_event(t, &limits())).collect();
        match decode_json_body(&body, &limits()) {
            Ok(events) => {
                prop_assert_eq!(events.len(), texts.len());
                for (got, want) in events.into_iter().zip(one_by_one) {
                    let want = want.map_err(|e| TestCaseError::fail(format!("accepted in a batch, refused alone: {e:?}")))?;
                    prop_assert_eq!(without_made_up_fields(got), without_made_up_fields(want));
                }
            }
            Err(BatchError::Items(errors)) => {
                let want: Vec<(usize, DecodeError)> = one_by_one
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, r)| r.err().map(|e| (i, e)))
                    .collect();
                prop_assert_eq!(errors, want);
            }
            Err(BatchError::Body(e)) => prop_assert!(false, "a JSON array refused whole: {e:?}"),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = decode_event(text, &limits());
            let _ = decode_json_body(text, &limits());
            let _ = decode_ndjson_body(text, &limits());
        }
    }

    #[test]
    fn event_shaped_input_decodes_or_errors_and_round_trips(v in event_like()) {
        let text = v.to_string();
        if let Ok(ev) = decode_event(&text, &limits()) {
            let again = decode_event(&ev.to_json(), &limits()).expect("our own output decodes");
            prop_assert_eq!(again, ev);
        }
    }

    #[test]
    fn mutated_valid_events_never_panic(v in valid_event(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>(), 0u8..3), 1..6)) {
        let mut text: Vec<char> = v.to_string().chars().collect();
        for (at, c, op) in edits {
            if text.is_empty() { break; }
            let i = at.index(text.len());
            match op {
                0 => text[i] = c,
                1 => { text.remove(i); }
                _ => text.insert(i, c),
            }
        }
        let text: String = text.into_iter().collect();
        let _ = decode_event(&text, &limits());
        let _ = decode_ndjson_body(&format!("{text}\n{text}"), &limits());
    }

    #[test]
    fn valid_events_are_accepted_and_round_trip(v in valid_event()) {
        let text = v.to_string();
        let ev = decode_event(&text, &Limits::default()).map_err(|e| TestCaseError::fail(format!("{e:?} for {text}")))?;
        prop_assert_eq!(decode_event(&ev.to_json(), &Limits::default()).expect("re-decode"), ev.clone());
        // NDJSON of several of them: all accepted, in order.
        let body = format!("{text}\n\n{}\n", ev.to_json());
        let both = decode_ndjson_body(&body, &Limits::default()).expect("ndjson");
        prop_assert_eq!(both.len(), 2);
        prop_assert_eq!(&both[1], &ev);
        // What routing peeks at in the stored form agrees with the decode.
        let stored = ev.to_json();
        let head = peek_stored(&stored).expect("peek");
        prop_assert_eq!(head.id.as_ref(), ev.id.as_str());
        prop_assert_eq!(head.event_type, ev.event_type);
        prop_assert_eq!(head.project_key.as_ref(), ev.project_key.as_str());
    }
}
