use super::*;
use crate::{FULL_EVENT_KEYS, Timestamp};
use proptest::prelude::*;

fn schema(t: EventType) -> Value {
    event_schema(t, "https://events.example", &Limits::default())
}

#[test]
fn every_type_has_a_draft_2020_12_schema_under_the_base() {
    for t in EventType::ALL {
        let s = schema(*t);
        assert_eq!(s["$schema"], DRAFT);
        assert_eq!(
            s["$id"],
            format!("https://events.example/v2/events/types/{t}/schema")
        );
        assert_eq!(s["title"], t.as_str());
        assert_eq!(s["properties"]["type"]["const"], t.as_str());
        assert_eq!(s["additionalProperties"], true);
    }
}

#[test]
fn an_empty_base_gives_the_path_alone() {
    assert_eq!(
        schema_url("", EventType::RunEnded),
        "/v2/events/types/RunEnded/schema"
    );
    assert_eq!(
        schema_url("http://h:1/", EventType::RunEnded),
        "http://h:1/v2/events/types/RunEnded/schema"
    );
}

#[test]
fn the_properties_are_the_envelope_keys() {
    for t in EventType::ALL {
        let s = schema(*t);
        let mut keys: Vec<&str> = s["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = FULL_EVENT_KEYS.to_vec();
        keys.sort_unstable();
        want.sort_unstable();
        assert_eq!(keys, want, "{t}");
    }
}

#[test]
fn project_types_require_a_project_key_and_global_ones_refuse_it() {
    let project = schema(EventType::RunJobEnded);
    assert_eq!(project["required"], json!(["type", "project_key"]));
    assert_eq!(project["properties"]["project_key"]["minLength"], 1);
    let global = schema(EventType::HatcheryCreated);
    assert_eq!(global["required"], json!(["type"]));
    assert_eq!(
        global["properties"]["project_key"]["enum"],
        json!(["", null])
    );
}

#[test]
fn the_family_context_is_described_and_the_rest_is_marked_foreign() {
    let s = schema(EventType::HatcheryCreated);
    let desc = |k: &str| {
        s["properties"][k]["description"]
            .as_str()
            .expect("a string")
            .to_owned()
    };
    assert!(desc("hatchery").starts_with("context of the Hatchery family"));
    assert!(desc("user_id").contains("may leave it empty"));
    assert!(desc("workflow").starts_with("not a context field"));
    assert!(
        s["description"]
            .as_str()
            .expect("a string")
            .contains("hatchery, user_id?, username?")
    );
    let run = schema(EventType::RunEnded);
    assert_eq!(
        run["properties"]["run_number"]["type"],
        json!(["integer", "null"])
    );
}

#[test]
fn the_id_bound_follows_the_configured_limits() {
    let limits = Limits {
        max_id_bytes: 16,
        ..Limits::default()
    };
    let s = event_schema(EventType::UserCreated, "", &limits);
    assert_eq!(s["properties"]["id"]["maxLength"], 16);
    assert!(
        s["$comment"]
            .as_str()
            .expect("a string")
            .contains("longer than 16 bytes")
    );
}

fn pattern() -> regex::Regex {
    regex::Regex::new(TIMESTAMP_PATTERN).expect("the pattern compiles")
}

#[test]
fn the_timestamp_pattern_takes_what_the_decoder_takes() {
    let re = pattern();
    for (ts, ok) in [
        ("2024-02-13T10:23:01.123456789Z", true),
        ("2024-02-13t10:23:01z", true),
        ("2024-02-13 10:23:01+02:00", true),
        ("2024-02-13T10:23:01\u{2212}05:30", true),
        ("2024-02-13T10:23:60Z", true),
        ("2024-02-13T10:23:01.1234567890123Z", true),
        ("2024-02-29T00:00:00Z", true),
        ("2000-02-29T00:00:00Z", true),
        ("0000-02-29T00:00:00Z", true),
        ("0001-01-01T00:00:00Z", true),
        ("2023-02-29T00:00:00Z", false),
        ("1900-02-29T00:00:00Z", false),
        ("2024-04-31T00:00:00Z", false),
        ("2024-13-01T00:00:00Z", false),
        ("2024-02-13T24:00:00Z", false),
        ("2024-02-13T10:23:61Z", false),
        ("2024-02-13T10:23:01+24:00", false),
        ("2024-02-13T10:23:01+0200", false),
        ("2024-02-13T10:23:01", false),
        ("2024-02-13T10:23:01.Z", false),
        ("2024-02-13", false),
        ("yesterday", false),
    ] {
        assert_eq!(re.is_match(ts), ok, "pattern on {ts}");
        assert_eq!(Timestamp::parse(ts).is_ok(), ok, "decoder on {ts}");
    }
    assert!(re.is_match(""), "empty means the receive time");
}

proptest! {
    /// Strings shaped like RFC 3339, with any digits anywhere: the pattern
    /// and chrono agree on every one of them.
    #[test]
    fn the_timestamp_pattern_and_chrono_agree(ts in concat!(
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt x][0-9]{2}:[0-9]{2}:[0-9]{2}",
        "(\\.[0-9]{0,12})?([Zz]|[-+\u{2212}][0-9]{2}:?[0-9]{2})?"
    )) {
        prop_assert_eq!(pattern().is_match(&ts), Timestamp::parse(&ts).is_ok(), "{}", ts);
    }

    /// Real dates near the calendar's edges (month ends, leap days).
    #[test]
    fn the_pattern_knows_the_calendar(year in 0u32..10000, month in 1u32..=12, day in 28u32..=31) {
        let ts = format!("{year:04}-{month:02}-{day:02}T00:00:00Z");
        prop_assert_eq!(pattern().is_match(&ts), Timestamp::parse(&ts).is_ok(), "{}", ts);
    }
}
