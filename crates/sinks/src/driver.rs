//! The driver: one sink as a durable consumer of the log.
//!
//! [`cds_events_log::follow`] reads each batch after the sink's position;
//! the driver keeps what the filter matches, formats it, waits for its turn
//! (paused, reconnect backoff, ingest-first pacing) and hands it to the
//! [`Sink`], which returns once the broker acknowledged all of it; only then
//! does the loop store the position (`Checkpoint::AfterBatch`). A failure
//! leaves the position where it was: the same batch is sent again after the
//! backoff, so a consumer sees duplicates only of a batch that was not
//! acknowledged. It never waits on anything but its own broker.

use crate::config::{ContentMode, Format, SinkConfig};
use crate::{Health, Message, Sink, SinkError};
use cds_events_api::SinkState;
use cds_events_log::pacing::Pacing;
use cds_events_log::{
    Checkpoint, Consumer, ConsumerError, EventLog, FollowOptions, Lead, LedPositions, LogError,
    LogPositions, PositionStore, RetentionHold, Seq, StoredEvent,
};
use cds_events_model::EventFilter;
use cds_events_model::cdevents;
use cds_events_model::cloudevents::{CONTENT_TYPE, CloudEvent, DATA_CONTENT_TYPE, Source};
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the API and the metrics see of one sink; shared between its driver
/// and the [`Sinks`](crate::Sinks) handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SinkConfig,
    log: Arc<dyn EventLog>,
    pub(crate) positions: LogPositions,
    /// The sink's lead while this instance holds it, on a log that several
    /// instances share (`EventLog::leads`); `None` otherwise. The position
    /// is then written only under it.
    lead: Mutex<Option<Arc<Lead>>>,
    pub(crate) status: Mutex<Status>,
    pub(crate) sent: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Events not sent for want of a CDEvents form (`format = "cdevents"`).
    pub(crate) skipped: AtomicU64,
    /// Set by an operator: nothing is sent while `true`. Stored in the log
    /// (`consumer_paused`) and read back at start.
    pub(crate) paused: watch::Sender<bool>,
    /// Held while the stored pause is written or read and `paused` set from
    /// it: a read that began before an operator's pause cannot set the flag
    /// back after the pause set it.
    pub(crate) pause_order: tokio::sync::Mutex<()>,
    /// A replay asked for: the position to move back to, and where to say
    /// whether it was done here (`false`: the lead was lost first). The
    /// current run is stopped (`run`), the position moved, and the sink
    /// follows again from there.
    pub(crate) replay: Mutex<Option<(Seq, tokio::sync::oneshot::Sender<bool>)>>,
    pub(crate) run: Mutex<Option<CancellationToken>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub(crate) state: SinkState,
    pub(crate) position: Seq,
    pub(crate) last_error: Option<(String, DateTime<Utc>)>,
}

impl Shared {
    pub(crate) fn new(config: SinkConfig, log: Arc<dyn EventLog>) -> Shared {
        let positions = LogPositions::new(Arc::clone(&log), format!("sink:{}", config.name));
        Shared {
            config,
            log,
            positions,
            lead: Mutex::new(None),
            status: Mutex::new(Status {
                state: SinkState::Connecting,
                position: Seq(0),
                last_error: None,
            }),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            paused: watch::Sender::new(false),
            pause_order: tokio::sync::Mutex::new(()),
            replay: Mutex::new(None),
            run: Mutex::new(None),
        }
    }

    pub(crate) fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_state(&self, state: SinkState) {
        self.status().state = state;
    }

    /// The lead this instance holds, if any.
    pub(crate) fn lead(&self) -> Option<Arc<Lead>> {
        self.lead.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_lead(&self, lead: Option<Arc<Lead>>) {
        *self.lead.lock().unwrap_or_else(|e| e.into_inner()) = lead;
    }

    /// Whether the sink must take a lead before it sends: the log is shared
    /// by several instances.
    pub(crate) fn needs_lead(&self) -> bool {
        self.log.leads().is_some()
    }

    /// Where the position is written now: under the lead when the log has
    /// leads (refused once the lead is lost, or without one), else plainly.
    pub(crate) fn position_store(&self) -> Arc<dyn PositionStore> {
        if !self.needs_lead() {
            return Arc::new(self.positions.clone());
        }
        match self.lead() {
            Some(lead) => Arc::new(LedPositions::new(
                Arc::clone(&self.log),
                self.positions.name().to_owned(),
                lead,
            )),
            None => Arc::new(Unled),
        }
    }

    fn record_failure(&self, e: &SinkError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("cds_events_sink_failed_total", "sink" => self.config.name.clone())
            .increment(1);
        let mut s = self.status();
        s.state = SinkState::Disconnected;
        s.last_error = Some((e.to_string(), Utc::now()));
    }
}

/// The position store of a sink that would write without holding the lead
/// of a shared log: every save is refused.
struct Unled;

#[async_trait::async_trait]
impl PositionStore for Unled {
    async fn load(&self) -> Result<Option<Seq>, ConsumerError> {
        Err(ConsumerError::Log(LogError::LostLead))
    }

    async fn save(&self, _: Seq) -> Result<(), ConsumerError> {
        Err(ConsumerError::Log(LogError::LostLead))
    }
}

/// The consumer that `follow` drives for one sink.
pub(crate) struct Driver {
    pub(crate) shared: Arc<Shared>,
    sink: Box<dyn Sink>,
    filter: Option<EventFilter>,
    pacing: Arc<Pacing>,
    /// The base of the CloudEvents `source` (format `cloudevents`).
    ce_source: Source,
    connected: bool,
    backoff: Duration,
    retry_at: Option<Instant>,
    consumer_name: String,
}

impl Driver {
    pub(crate) fn new(
        shared: Arc<Shared>,
        sink: Box<dyn Sink>,
        filter: Option<EventFilter>,
        pacing: Arc<Pacing>,
        ce_source: Source,
    ) -> Driver {
        let backoff = shared.config.reconnect_min;
        let consumer_name = format!("sink:{}", shared.config.name);
        Driver {
            shared,
            sink,
            filter,
            pacing,
            ce_source,
            connected: false,
            backoff,
            retry_at: None,
            consumer_name,
        }
    }

    pub(crate) fn options(&self) -> FollowOptions {
        FollowOptions {
            batch: self.shared.config.batch,
            // The backoff is the driver's own (in `admit`).
            retry: Duration::from_millis(20),
            idle_persist: Duration::from_secs(1),
        }
    }

    /// Connects now (at start: the status says at once whether the broker
    /// is reached); a failure is tried again with the first batch.
    pub(crate) async fn connect(&mut self) -> Result<(), SinkError> {
        let limit = self.shared.config.send_timeout;
        let connected = tokio::time::timeout(limit, self.sink.connect())
            .await
            .unwrap_or_else(|_| Err(SinkError::Connect(timed_out("connect", limit))));
        match connected {
            Ok(()) => {
                self.connected = true;
                self.backoff = self.shared.config.reconnect_min;
                self.retry_at = None;
                self.shared.set_state(SinkState::Running);
                Ok(())
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    pub(crate) async fn health(&self) -> Health {
        self.sink.health().await
    }

    /// Records a failure and schedules the next try after the backoff,
    /// which doubles up to `reconnect_max`.
    fn failed(&mut self, e: SinkError) -> SinkError {
        tracing::warn!(sink = %self.shared.config.name, error = %e, retry_in_ms = self.backoff.as_millis() as u64, "sink failed");
        self.shared.record_failure(&e);
        self.connected = false;
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(self.shared.config.reconnect_max);
        e
    }

    /// The messages of a batch: those the filter keeps, in the sink's format
    /// and content mode. With `cdevents`, an event without a CDEvents form
    /// is skipped and counted; the position passes it like a filtered one.
    fn messages(&self, batch: &[StoredEvent]) -> Vec<Message> {
        let config = &self.shared.config;
        let mut out = Vec::with_capacity(batch.len());
        let mut unmapped = 0u64;
        for stored in batch {
            let not_sent = |e: &dyn std::fmt::Display| {
                tracing::error!(sink = %config.name, seq = stored.seq.0, error = %e, "stored event does not decode; not sent");
            };
            let head = match stored.head() {
                Ok(h) => h,
                Err(e) => {
                    not_sent(&e);
                    continue;
                }
            };
            // Decoded only when the filter or the format needs the event.
            let event = if self.filter.is_some() || config.format != Format::Cds {
                match stored.decode() {
                    Ok(event) => Some(event),
                    Err(e) => {
                        not_sent(&e);
                        continue;
                    }
                }
            } else {
                None
            };
            if let (Some(filter), Some(event)) = (&self.filter, &event)
                && !filter.matches(event)
            {
                continue;
            }
            let mut message = Message::cds(
                stored.seq,
                head.id.into_owned(),
                head.event_type,
                head.project_key.into_owned(),
                Arc::clone(&stored.json),
            );
            match (config.format, &event) {
                (Format::CloudEvents, Some(event)) => {
                    let ce = CloudEvent::new(&self.ce_source, stored.seq.0, event, &stored.json);
                    self.standard(&mut message, &ce);
                }
                (Format::CdEvents, Some(event)) => {
                    let Some(cd) = cdevents::map(&self.ce_source, event) else {
                        unmapped += 1;
                        continue;
                    };
                    self.standard(
                        &mut message,
                        &cd.cloudevent(&self.ce_source, stored.seq.0, event),
                    );
                }
                // `cds`: the stored JSON, byte for byte.
                _ => {}
            }
            out.push(message);
        }
        if unmapped > 0 {
            self.shared.skipped.fetch_add(unmapped, Ordering::Relaxed);
            metrics::counter!("cds_events_cdevents_unmapped_total", "way" => "sink")
                .increment(unmapped);
        }
        out
    }

    /// `message` as the CloudEvent `ce`, in the sink's content mode:
    /// structured (the body is the event) or binary (the body is `data`,
    /// the attributes go as the broker's binding asks).
    fn standard(&self, message: &mut Message, ce: &CloudEvent<'_>) {
        let binding = match self.shared.config.content_mode {
            ContentMode::Binary => self.shared.config.kind.binding(),
            ContentMode::Structured => None,
        };
        match binding {
            // Refused by `validate` without a binding (Redis).
            Some(binding) => {
                message.body = Arc::from(ce.data);
                message.ce_headers = ce.binding_headers(binding);
                message.content_type = binding
                    .content_type_carries_datacontenttype()
                    .then_some(DATA_CONTENT_TYPE);
            }
            None => {
                message.body = ce.to_structured_json().into();
                message.content_type = Some(CONTENT_TYPE);
            }
        }
    }
}

/// The driver's own bound on a broker call (`send_timeout`).
fn timed_out(what: &str, limit: Duration) -> String {
    format!("{what} not done within {limit:?} (send_timeout)")
}

impl Consumer for Driver {
    fn name(&self) -> &str {
        &self.consumer_name
    }

    /// Asked at each start of `follow`: under the lead held then.
    fn checkpoint(&self) -> Checkpoint {
        Checkpoint::AfterBatch(self.shared.position_store())
    }

    /// Waits while paused, then until the reconnect backoff is over, then
    /// for ingest-first pacing.
    async fn admit(&mut self, max: usize) -> usize {
        // The status shows `paused` from the flag itself.
        let mut paused = self.shared.paused.subscribe();
        let _ = paused.wait_for(|p| !*p).await;
        if let Some(at) = self.retry_at {
            tokio::time::sleep_until(at).await;
        }
        self.pacing.admit_reads(max).await
    }

    async fn handle(&mut self, batch: &[StoredEvent]) -> Result<(), ConsumerError> {
        // A deposed holder sends nothing more (its run is being stopped).
        if self.shared.lead().is_some_and(|l| l.is_lost()) {
            return Err(ConsumerError::Log(LogError::LostLead));
        }
        let messages = self.messages(batch);
        if messages.is_empty() {
            return Ok(());
        }
        if !self.connected {
            self.connect()
                .await
                .map_err(|e| ConsumerError::Handle(Box::new(e)))?;
        }
        self.pacing.admit_attempt().await;
        let limit = self.shared.config.send_timeout;
        let sent = tokio::time::timeout(limit, self.sink.send(&messages))
            .await
            .unwrap_or_else(|_| Err(SinkError::Send(timed_out("send", limit))));
        match sent {
            Ok(()) => {
                let n = messages.len() as u64;
                self.shared.sent.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("cds_events_sink_sent_total", "sink" => self.shared.config.name.clone())
                    .increment(n);
                self.backoff = self.shared.config.reconnect_min;
                let mut s = self.shared.status();
                s.state = SinkState::Running;
                s.last_error = None;
                Ok(())
            }
            Err(e) => Err(ConsumerError::Handle(Box::new(self.failed(e)))),
        }
    }

    fn reached(&mut self, position: Seq) {
        self.shared.status().position = position;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{append, config, open_log};
    use async_trait::async_trait;

    /// A broker whose client never answers (a connection that hangs).
    #[derive(Debug)]
    struct Hangs;

    #[async_trait]
    impl Sink for Hangs {
        async fn connect(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
        async fn send(&mut self, _: &[Message]) -> Result<(), SinkError> {
            std::future::pending().await
        }
        async fn health(&self) -> Health {
            Health::Connected
        }
    }

    #[tokio::test]
    async fn a_send_that_never_returns_fails_after_send_timeout() {
        let (_dir, log) = open_log();
        append(log.as_ref(), 3).await;
        let batch = log.read_after(Seq(0), 3).await.expect("read");
        let mut c = config(
            "hang",
            crate::SinkKind::Redis(crate::redis::RedisConfig::new("redis://x")),
        );
        c.send_timeout = Duration::from_millis(100);
        let shared = Arc::new(Shared::new(c, Arc::clone(&log)));
        let pacing = Arc::new(Pacing::new("test", "cds_events_test_yield_rate"));
        let mut driver = Driver::new(
            Arc::clone(&shared),
            Box::new(Hangs),
            None,
            pacing,
            Source::default(),
        );
        let failed = tokio::time::timeout(Duration::from_secs(10), driver.handle(&batch))
            .await
            .expect("the driver's own bound ends the send");
        let e = failed.expect_err("a send that never returns fails");
        assert!(e.to_string().contains("send_timeout"), "{e}");
        assert_eq!(shared.status().state, SinkState::Disconnected);
        assert_eq!(shared.failed.load(Ordering::Relaxed), 1);
    }
}
