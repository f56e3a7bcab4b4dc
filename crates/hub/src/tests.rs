//! The hub's own checks: framing, lazy decoding, routing by project.

use super::*;
use cds_events_log::conformance::event;
use cds_events_model::EventType;

fn live(seq: u64) -> Arc<LiveEvent> {
    let e = event(EventType::RunJobEnded, "A", seq as i64);
    let json: Arc<str> = Arc::from(e.to_json());
    Arc::new(LiveEvent::from_parts(Seq(seq), e, json))
}

#[test]
fn an_sse_frame_keeps_a_multi_line_event_on_one_data_line() {
    let e = event(EventType::RunJobEnded, "A", 1);
    let pretty = e.to_json().replace("\",\"", "\",\r\n  \"");
    assert!(pretty.contains('\n'));
    let live = LiveEvent::from_parts(Seq(7), e, Arc::from(pretty.as_str()));
    let frame = live.sse_frame();
    let text = std::str::from_utf8(&frame).expect("utf-8");
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 4, "{text:?}");
    assert_eq!(lines[0], "id: 7");
    let data = lines[1].strip_prefix("data: ").expect("a data line");
    let a: serde_json::Value = serde_json::from_str(data).expect("json");
    let b: serde_json::Value = serde_json::from_str(&pretty).expect("json");
    assert_eq!(a, b);
    assert_eq!((lines[2], lines[3]), ("", ""));
}

/// Framing an event for SSE or websockets leaves it undecoded; asking for
/// it (a matcher, a CloudEvent) decodes it once. Stored JSON that does not
/// decode is no event, and no CloudEvent either.
#[test]
fn an_event_is_decoded_only_when_asked() {
    let json = event(EventType::RunJobEnded, "A", 1).to_json();
    let live = LiveEvent::undecoded(&StoredEvent::new(Seq(3), Arc::from(json.as_str())));
    assert!(live.sse_frame().ends_with(format!("{json}\n\n").as_bytes()));
    assert!(!live.ws_message().is_empty());
    assert!(live.event.get().is_none(), "framing did not decode");
    assert_eq!(live.event().map(|e| e.project_key.as_str()), Some("A"));
    let broken = StoredEvent::new(Seq(4), Arc::from("{\"type\":"));
    assert!(LiveEvent::new(&broken).is_none());
    let source = Source::new("https://cds.example").expect("source");
    assert!(LiveEvent::undecoded(&broken).cloudevent(&source).is_none());
}

/// An event of a project nobody follows is skipped before its decode;
/// one subscriber following everything makes every event wanted.
#[test]
fn only_events_of_a_followed_project_are_decoded() {
    let stored = |p: &str| {
        StoredEvent::new(
            Seq(1),
            Arc::from(event(EventType::RunJobEnded, p, 1).to_json()),
        )
    };
    let subscriber = |scopes| {
        let (tx, _) = mpsc::channel(1);
        let matcher: Arc<dyn Matcher> = Arc::new(EventFilter::default());
        Subscriber {
            matcher,
            scopes,
            tx,
            lag: Arc::default(),
        }
    };
    let mut index = Index::default();
    let a = ProjectKey::new("A").expect("key");
    index.insert(1, subscriber(Some(vec![EventScope::Project(a)])));
    assert!(index.may_want(&stored("A")));
    assert!(!index.may_want(&stored("B")));
    index.insert(2, subscriber(None));
    assert!(index.may_want(&stored("B")));
    index.remove(2);
    assert!(!index.may_want(&stored("B")));
}

/// Regression: a subscriber that overflowed mid-batch and then freed a
/// slot used to receive the batch's later events, with a hole where the
/// overflowing one was; resuming after the last one received lost it.
#[test]
fn after_an_overflow_a_subscriber_gets_nothing_more_from_the_batch() {
    let (tx, mut rx) = mpsc::channel(1);
    let lag = Arc::new(LagSignal::default());
    let mut index = Index::default();
    let matcher: Arc<dyn Matcher> = Arc::new(EventFilter::default());
    index.insert(
        1,
        Subscriber {
            matcher,
            scopes: None,
            tx,
            lag: Arc::clone(&lag),
        },
    );
    let stats = HubStats::default();
    let mut drop_list = Vec::new();
    route(&index, live(1), &mut drop_list, &stats);
    route(&index, live(2), &mut drop_list, &stats);
    assert!(lag.take(), "the overflow was signalled");
    assert_eq!(rx.try_recv().expect("first").seq, Seq(1));
    route(&index, live(3), &mut drop_list, &stats);
    assert!(rx.try_recv().is_err(), "nothing after the hole");
    assert_eq!(drop_list, [1]);
}

/// An SSE message is one `id:` line and one `data:` line, whatever
/// whitespace the stored JSON holds; JSON without line breaks is copied as
/// it is.
#[test]
fn an_sse_message_keeps_the_event_on_one_data_line() {
    let plain = r#"{"a":"x\ny","b":1}"#;
    assert_eq!(
        &sse_message(Seq(42), plain)[..],
        format!("id: 42\ndata: {plain}\n\n").as_bytes()
    );
    let spread = "{\r\n  \"a\": \"é\",\n  \"b\": 1\n}";
    assert_eq!(
        &sse_message(Seq(7), spread)[..],
        "id: 7\ndata: {    \"a\": \"é\",   \"b\": 1 }\n\n".as_bytes()
    );
}
