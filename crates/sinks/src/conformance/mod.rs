//! The conformance suite every sink must pass, against its real broker.
//!
//! Each check is a plain async function over a [`Harness`] (the broker's
//! settings for a namespace of the test's own, and a reader of what
//! arrives there); a broker runs them all with
//! [`sink_conformance_tests!`](crate::sink_conformance_tests) in its own
//! test file. The log is a throw-away SQLite log; the sinks run as the
//! server runs them ([`Sinks`]).

use crate::{Health, Message, SinkConfig, SinkKind, Sinks, build};
use async_trait::async_trait;
use cds_events_api::{SinkOut, SinkState};
use cds_events_log::conformance::event;
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_log::{EventLog, NewEvent, Seq};
use cds_events_model::EventType;
use cds_events_model::cloudevents::{CloudEvent, Source, ce_type, seq_text};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod cut;
pub mod proxy;
mod standards;

pub use cut::a_cut_connection_loses_nothing_and_repeats_only_the_batch_in_flight;
pub use standards::{
    RUN_TYPES, append_runs, expect_parsed, python, run_event,
    the_cdevents_format_sends_mapped_events_and_skips_the_rest,
};

/// What a test reads back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The event id the message carries (header or field).
    pub id: String,
    /// The sequence number it carries, when the broker has headers.
    pub seq: Option<u64>,
    pub body: Vec<u8>,
    /// Where it was published (subject, channel, routing key).
    pub route: String,
    /// The body's media type, when the broker carries one (a header, a
    /// property).
    pub content_type: Option<String>,
}

/// Reads what sinks publish into one namespace, in order.
#[async_trait]
pub trait Reader: Send {
    /// The next message, or `None` after `timeout` without one.
    async fn next(&mut self, timeout: Duration) -> Option<Received>;
}

/// A broker, for the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Settings of a sink that publishes into namespace `ns`, which no
    /// other test uses.
    fn settings(&self, ns: &str) -> SinkKind;
    /// Settings of a sink whose broker cannot be reached, with a password
    /// `secret` that must never be shown.
    fn unreachable(&self, ns: &str, secret: &str) -> SinkKind;
    /// Starts reading `ns` (before anything is sent: a pub/sub broker keeps
    /// nothing for a late reader).
    async fn reader(&self, ns: &str) -> Box<dyn Reader>;
    /// Removes what the test left in the broker.
    async fn cleanup(&self, ns: &str);
    /// The broker's `host:port`, where a test's TCP proxy forwards to.
    fn broker_addr(&self) -> String;
    /// The settings of [`settings`](Harness::settings)`(ns)`, but reaching
    /// the broker at `addr` (`host:port`, a proxy that cuts connections),
    /// with timeouts of a second or two so that a lost acknowledgement
    /// fails its batch quickly.
    fn settings_at(&self, ns: &str, addr: &str) -> SinkKind;
    /// Whether the broker drops a message whose event id it has just
    /// stored (JetStream's `Nats-Msg-Id`): a replay then reaches it but no
    /// reader.
    fn drops_duplicate_ids(&self) -> bool {
        false
    }
    /// Whether the broker's client sends a request again by itself on a
    /// new connection when the old one broke before the answer (rskafka
    /// does): a lost acknowledgement then repeats the batch without the
    /// driver seeing a failed send.
    fn client_resends(&self) -> bool {
        false
    }
}

/// Generous: a loaded 2-core machine runs these.
pub const WAIT: Duration = Duration::from_secs(20);

/// A namespace no other test (or run) uses.
pub fn namespace() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t{}x{nanos}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A sink named `name` with `kind` and the defaults, reconnecting quickly.
pub fn config(name: &str, kind: SinkKind) -> SinkConfig {
    SinkConfig {
        name: name.to_owned(),
        kind,
        filter: None,
        format: crate::Format::Cds,
        content_mode: crate::ContentMode::Structured,
        batch: 64,
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        send_timeout: Duration::from_secs(10),
    }
}

/// A throw-away log (kept alive by the returned directory).
pub fn open_log() -> (tempfile::TempDir, Arc<dyn EventLog>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = SqliteLog::open(dir.path(), SqliteOptions::default()).expect("open log");
    (dir, Arc::new(log))
}

const TYPES: [EventType; 3] = [
    EventType::RunJobEnqueued,
    EventType::ProjectCreated,
    EventType::RunJobEnded,
];

/// Appends `n` events (types in turn, some global) and answers their ids.
pub async fn append(log: &dyn EventLog, n: usize) -> Vec<String> {
    let events: Vec<NewEvent> = (0..n)
        .map(|i| event(TYPES[i % TYPES.len()], "PROJ", 1_700_000_000 + i as i64).into())
        .collect();
    let ids: Vec<String> = events.iter().map(|e| e.head.id.clone()).collect();
    log.append(events).await.expect("append");
    ids
}

/// The next `n` messages (fails the test if they do not all come).
pub async fn receive(reader: &mut dyn Reader, n: usize) -> Vec<Received> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match reader.next(WAIT).await {
            Some(m) => out.push(m),
            None => panic!("received {} of {n} messages", out.len()),
        }
    }
    out
}

/// The sinks running in a task; stop with [`Running::stop`].
#[derive(Debug)]
pub struct Running {
    pub sinks: Sinks,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts `configs` on `log` as the server does: each sink's starting
    /// position stored first (what is appended from then on is sent), then
    /// the sinks run in a task.
    pub async fn start(log: &Arc<dyn EventLog>, configs: &[SinkConfig]) -> Running {
        let sinks = Sinks::new(
            Arc::clone(log),
            "conformance",
            configs,
            None,
            &Source::default(),
        )
        .expect("valid sinks");
        sinks.start_positions().await.expect("start positions");
        Running::run(sinks)
    }

    /// Runs `sinks` in a task.
    pub fn run(sinks: Sinks) -> Running {
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (sinks, stop) = (sinks.clone(), stop.clone());
            async move { sinks.run(stop).await.expect("runs once") }
        });
        Running { sinks, stop, task }
    }

    pub async fn status(&self, name: &str) -> SinkOut {
        self.sinks.get(name).await.expect("a sink of this test")
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("sinks task");
    }
}

/// Waits (up to [`WAIT`]) for `check`.
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn ids(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| r.id.clone()).collect()
}

pub async fn a_sent_batch_arrives_in_order_with_ids_and_stored_bytes(h: &dyn Harness) {
    let ns = namespace();
    let mut reader = h.reader(&ns).await;
    let mut sink = build(&config("b", h.settings(&ns))).expect("build");
    sink.connect().await.expect("connect");
    let batch: Vec<Message> = (0..50)
        .map(|i| {
            let e = event(TYPES[i % TYPES.len()], "PROJ", 1_700_000_000 + i as i64);
            Message::cds(
                Seq(i as u64 + 1),
                e.id.to_string(),
                e.event_type,
                e.project_key.clone(),
                e.to_json(),
            )
        })
        .collect();
    sink.send(&batch).await.expect("acknowledged");
    let got = receive(reader.as_mut(), batch.len()).await;
    for (m, r) in batch.iter().zip(&got) {
        assert_eq!(r.id, m.id);
        assert_eq!(r.body, m.body.as_bytes(), "the body is the stored JSON");
        assert!(
            r.content_type
                .as_deref()
                .is_none_or(|ct| ct == "application/json"),
            "{r:?}"
        );
        assert!(r.seq.is_none_or(|s| s == m.seq.0), "{r:?}");
    }
    h.cleanup(&ns).await;
}

pub async fn health_says_whether_the_broker_is_reached(h: &dyn Harness) {
    let ns = namespace();
    let mut down = build(&config("d", h.unreachable(&ns, "pw-s3cret"))).expect("build");
    let e = down.connect().await.expect_err("nothing listens there");
    assert!(!e.to_string().contains("pw-s3cret"), "{e}");
    assert!(matches!(down.health().await, Health::Disconnected(_)));
    let mut up = build(&config("u", h.settings(&ns))).expect("build");
    up.connect().await.expect("connect");
    assert_eq!(up.health().await, Health::Connected);
    h.cleanup(&ns).await;
}

pub async fn the_driver_sends_what_is_appended_and_stores_the_position_after_the_ack(
    h: &dyn Harness,
) {
    let ns = namespace();
    let mut reader = h.reader(&ns).await;
    let (_dir, log) = open_log();
    let running = Running::start(&log, &[config("s", h.settings(&ns))]).await;
    let mut sent = Vec::new();
    for _ in 0..3 {
        sent.extend(append(log.as_ref(), 100).await);
    }
    let got = receive(reader.as_mut(), sent.len()).await;
    assert_eq!(ids(&got), sent, "every event, in order");
    for r in got.iter().take(5) {
        let stored = log.get(&r.id).await.expect("get").expect("stored");
        assert_eq!(r.body, stored.json.as_bytes());
    }
    let head = *log.head().borrow();
    until("the position reaches the head", || async {
        log.consumer_position("sink:s").await.expect("position") == Some(head)
    })
    .await;
    let s = running.status("s").await;
    assert_eq!(
        (s.state, s.lag_events, s.sent),
        (SinkState::Running, 0, 300)
    );
    running.stop().await;
    h.cleanup(&ns).await;
}

pub async fn a_restarted_sink_resumes_after_its_stored_position(h: &dyn Harness) {
    let ns = namespace();
    let mut reader = h.reader(&ns).await;
    let (_dir, log) = open_log();
    let c = config("r", h.settings(&ns));
    let running = Running::start(&log, std::slice::from_ref(&c)).await;
    let first = append(log.as_ref(), 20).await;
    assert_eq!(ids(&receive(reader.as_mut(), 20).await), first);
    running.stop().await;
    let while_down = append(log.as_ref(), 30).await;
    let running = Running::start(&log, std::slice::from_ref(&c)).await;
    let marker = append(log.as_ref(), 1).await;
    let got = receive(reader.as_mut(), 31).await;
    let expected: Vec<String> = while_down.into_iter().chain(marker).collect();
    assert_eq!(ids(&got), expected, "nothing lost, nothing sent twice");
    running.stop().await;
    h.cleanup(&ns).await;
}

/// A new sink's start is stored before it runs, as the server does before it
/// takes events: what is appended before the sink's task first runs is
/// sent, not skipped; what was appended before that is history.
pub async fn what_is_appended_before_a_new_sink_runs_is_sent(h: &dyn Harness) {
    let ns = namespace();
    let mut reader = h.reader(&ns).await;
    let (_dir, log) = open_log();
    append(log.as_ref(), 3).await;
    let configs = [config("early", h.settings(&ns))];
    let sinks = Sinks::new(
        Arc::clone(&log),
        "conformance",
        &configs,
        None,
        &Source::default(),
    )
    .expect("valid sinks");
    sinks.start_positions().await.expect("start positions");
    let early = append(log.as_ref(), 5).await;
    let running = Running::run(sinks);
    assert_eq!(ids(&receive(reader.as_mut(), 5).await), early);
    running.stop().await;
    h.cleanup(&ns).await;
}

pub async fn a_broker_that_is_down_holds_back_only_its_own_sink(h: &dyn Harness) {
    let ns = namespace();
    let mut reader = h.reader(&ns).await;
    let (_dir, log) = open_log();
    let configs = [
        config("up", h.settings(&ns)),
        config("down", h.unreachable(&ns, "pw-s3cret")),
    ];
    let running = Running::start(&log, &configs).await;
    let start = running.status("down").await.position;
    let sent = append(log.as_ref(), 100).await;
    assert_eq!(ids(&receive(reader.as_mut(), 100).await), sent);
    until("the down sink reports its failure", || async {
        running.status("down").await.failed >= 2
    })
    .await;
    let down = running.status("down").await;
    assert_eq!(down.state, SinkState::Disconnected);
    assert_eq!((down.position, down.lag_events), (start, 100));
    assert!(down.lag_seconds > 0.0, "{down:?}");
    let error = down.last_error.expect("an error is shown");
    assert!(!error.contains("pw-s3cret"), "{error}");
    assert_eq!(
        log.consumer_position("sink:down").await.expect("position"),
        Some(Seq(start))
    );
    running.stop().await;
    h.cleanup(&ns).await;
}

pub async fn the_filter_keeps_only_matching_events(h: &dyn Harness) {
    let ns = namespace();
    let mut reader = h.reader(&ns).await;
    let (_dir, log) = open_log();
    let mut c = config("f", h.settings(&ns));
    c.filter = Some("type=RunJob*".into());
    let running = Running::start(&log, &[c]).await;
    // 30 events: types in turn, so 20 RunJob* ones; the last is RunJobEnded.
    let all = append(log.as_ref(), 30).await;
    let expected: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| TYPES[i % TYPES.len()] != EventType::ProjectCreated)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(ids(&receive(reader.as_mut(), 20).await), expected);
    running.stop().await;
    h.cleanup(&ns).await;
}

pub async fn the_cloudevents_format_sends_each_event_as_a_structured_cloudevent(h: &dyn Harness) {
    let ns = namespace();
    let mut reader = h.reader(&ns).await;
    let (_dir, log) = open_log();
    let mut c = config("c", h.settings(&ns));
    c.format = crate::Format::CloudEvents;
    let running = Running::start(&log, &[c]).await;
    let sent = append(log.as_ref(), 6).await;
    let got = receive(reader.as_mut(), 6).await;
    assert_eq!(ids(&got), sent, "in order, each with its event id");
    let source = Source::default();
    for r in &got {
        let stored = log.get(&r.id).await.expect("get").expect("stored");
        let event = stored.decode().expect("decodes");
        let ce: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON object");
        assert_eq!(ce["specversion"], "1.0");
        assert_eq!(ce["id"], r.id.as_str());
        assert_eq!(ce["type"], ce_type(event.event_type));
        assert_eq!(ce["source"], source.for_project(&event.project_key));
        assert_eq!(ce["cdsseq"], seq_text(stored.seq.0));
        let data: serde_json::Value = serde_json::from_str(&stored.json).expect("json");
        assert_eq!(ce["data"], data, "data is the stored event");
        assert!(r.seq.is_none_or(|s| s == stored.seq.0), "{r:?}");
        assert!(
            r.content_type
                .as_deref()
                .is_none_or(|ct| ct == "application/cloudevents+json"),
            "{r:?}"
        );
        let mapped = CloudEvent::new(&source, stored.seq.0, &event, &stored.json);
        assert_eq!(
            r.body,
            mapped.to_structured_json().as_bytes(),
            "the model's one mapping, byte for byte"
        );
    }
    running.stop().await;
    h.cleanup(&ns).await;
}

pub async fn a_paused_sink_holds_its_events_until_resumed(h: &dyn Harness) {
    let ns = namespace();
    let mut reader = h.reader(&ns).await;
    let (_dir, log) = open_log();
    let running = Running::start(&log, &[config("p", h.settings(&ns))]).await;
    let paused = running.sinks.pause("p").await.expect("pause");
    assert_eq!(paused.state, SinkState::Paused);
    let held = append(log.as_ref(), 10).await;
    // Nothing may arrive while paused (a wrong pass is possible, a wrong
    // failure is not).
    assert_eq!(reader.next(Duration::from_millis(500)).await, None);
    let s = running.status("p").await;
    assert_eq!((s.state, s.lag_events), (SinkState::Paused, 10));
    running.sinks.resume("p").await.expect("resume");
    assert_eq!(ids(&receive(reader.as_mut(), 10).await), held);
    running.stop().await;
    h.cleanup(&ns).await;
}

pub async fn a_replay_sends_again_from_the_sequence_asked(h: &dyn Harness) {
    let ns = namespace();
    let mut reader = h.reader(&ns).await;
    let (_dir, log) = open_log();
    let running = Running::start(&log, &[config("y", h.settings(&ns))]).await;
    let sent = append(log.as_ref(), 10).await;
    let got = receive(reader.as_mut(), 10).await;
    assert_eq!(ids(&got), sent);
    let fifth = log.get(&sent[4]).await.expect("get").expect("stored").seq;
    let head = *log.head().borrow();
    assert!(running.sinks.replay("y", head.0 + 2).await.is_err());
    let r = running.sinks.replay("y", fifth.0).await.expect("replay");
    assert_eq!(r.from, fifth.0);
    if h.drops_duplicate_ids() {
        // Sent again and acknowledged, then dropped by the broker.
        until("the six are sent again", || async {
            running.status("y").await.sent == 16
        })
        .await;
        assert_eq!(reader.next(Duration::from_millis(500)).await, None);
    } else {
        assert_eq!(ids(&receive(reader.as_mut(), 6).await), sent[4..].to_vec());
    }
    until("the position is back at the head", || async {
        let s = running.status("y").await;
        (s.position, s.lag_events) == (head.0, 0)
    })
    .await;
    running.stop().await;
    h.cleanup(&ns).await;
}

pub async fn a_pause_outlives_a_restart(h: &dyn Harness) {
    let ns = namespace();
    let mut reader = h.reader(&ns).await;
    let (_dir, log) = open_log();
    let c = config("q", h.settings(&ns));
    let running = Running::start(&log, std::slice::from_ref(&c)).await;
    running.sinks.pause("q").await.expect("pause");
    running.stop().await;
    let running = Running::start(&log, std::slice::from_ref(&c)).await;
    until("the pause is read back", || async {
        running.status("q").await.state == SinkState::Paused
    })
    .await;
    let held = append(log.as_ref(), 5).await;
    // Nothing may arrive while paused (a wrong pass is possible, a wrong
    // failure is not).
    assert_eq!(reader.next(Duration::from_millis(500)).await, None);
    running.sinks.resume("q").await.expect("resume");
    assert_eq!(ids(&receive(reader.as_mut(), 5).await), held);
    running.stop().await;
    assert!(!log.consumer_paused("sink:q").await.expect("paused"));
    h.cleanup(&ns).await;
}

/// Runs the whole suite against one broker: `sink_conformance_tests!(MyHarness::new())`.
#[macro_export]
macro_rules! sink_conformance_tests {
    ($make:expr) => {
        $crate::sink_conformance_tests!(@each $make;
            a_sent_batch_arrives_in_order_with_ids_and_stored_bytes,
            health_says_whether_the_broker_is_reached,
            the_driver_sends_what_is_appended_and_stores_the_position_after_the_ack,
            a_restarted_sink_resumes_after_its_stored_position,
            what_is_appended_before_a_new_sink_runs_is_sent,
            a_broker_that_is_down_holds_back_only_its_own_sink,
            the_filter_keeps_only_matching_events,
            the_cloudevents_format_sends_each_event_as_a_structured_cloudevent,
            the_cdevents_format_sends_mapped_events_and_skips_the_rest,
            a_paused_sink_holds_its_events_until_resumed,
            a_pause_outlives_a_restart,
            a_replay_sends_again_from_the_sequence_asked,
            a_cut_connection_loses_nothing_and_repeats_only_the_batch_in_flight,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $make;
                $crate::conformance::$name(&harness).await;
            }
        )+
    };
}
