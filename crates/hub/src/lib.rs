//! Live fan-out of committed events to subscribers, with gap-free resume.
//!
//! One hub task follows the log's head ([`EventLog::head`]), reads each new
//! event once, decodes it once, and routes it to the subscribers whose
//! filter matches. Routing goes through an index by project, so an event
//! costs about the same with 10 or 10,000 subscribers that do not watch its
//! project. Each subscriber has a bounded queue: the hub never waits for a
//! subscriber. One that falls behind is dropped from the hub and catches up
//! from the log on its own ([`Feed`]), then rejoins — so it loses nothing,
//! and slows nobody.
//!
//! The hub never calls back into the ingest path; it only reads the log.

mod feed;

pub use feed::{Feed, FeedError, FeedOptions};

use cds_events_log::{EventLog, LogError, Seq, StoredEvent};
use cds_events_model::cloudevents::{CloudEvent, Source};
use cds_events_model::{EventFilter, EventScope, FullEvent, ProjectKey};
use std::collections::HashMap;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use cds_events_log::{Checkpoint, Consumer, ConsumerError, FollowOptions, follow};

/// A committed event as the hub hands it out: decoded at most once, and
/// framed once per protocol, however many clients receive it.
#[derive(Debug)]
pub struct LiveEvent {
    pub seq: Seq,
    /// The stored full-event JSON, verbatim.
    pub json: Arc<str>,
    /// Decoded on first need (a matcher, a CloudEvent): an event that a log
    /// query already filtered and that leaves as stored is never decoded.
    /// `None`: the stored JSON does not decode (logged where it is found).
    event: OnceLock<Option<FullEvent>>,
    ws_ok: OnceLock<Bytes>,
    sse: OnceLock<Bytes>,
    cloudevent: OnceLock<Option<Arc<str>>>,
    cdevent: OnceLock<Option<Arc<str>>>,
}

impl LiveEvent {
    /// The event, decoded now: `None` when it does not decode.
    pub fn new(stored: &StoredEvent) -> Option<LiveEvent> {
        let live = Self::undecoded(stored);
        live.event()?;
        Some(live)
    }

    /// The event, decoded only if something asks for [`LiveEvent::event`].
    pub fn undecoded(stored: &StoredEvent) -> LiveEvent {
        LiveEvent {
            seq: stored.seq,
            json: Arc::clone(&stored.json),
            event: OnceLock::new(),
            ws_ok: OnceLock::new(),
            sse: OnceLock::new(),
            cloudevent: OnceLock::new(),
            cdevent: OnceLock::new(),
        }
    }

    #[cfg(test)]
    fn from_parts(seq: Seq, event: FullEvent, json: Arc<str>) -> LiveEvent {
        let live = Self::undecoded(&StoredEvent::new(seq, json));
        let _ = live.event.set(Some(event));
        live
    }

    /// The decoded event; `None` when the stored JSON does not decode.
    pub fn event(&self) -> Option<&FullEvent> {
        self.event
            .get_or_init(|| {
                let decoded = cds_events_model::decode_stored(&self.json);
                if let Err(e) = &decoded {
                    tracing::error!(seq = self.seq.0, error = %e, "stored event does not decode");
                }
                decoded.ok()
            })
            .as_ref()
    }

    /// CDS's websocket message for this event, `{"status":"OK","error":"","event":…}`,
    /// with the sequence number beside the event. Built once, shared by every
    /// websocket client that receives it (cloning `Bytes` copies nothing).
    pub fn ws_message(&self) -> Bytes {
        self.ws_ok
            .get_or_init(|| {
                Bytes::from(format!(
                    r#"{{"status":"OK","error":"","event":{},"seq":{}}}"#,
                    self.json, self.seq.0
                ))
            })
            .clone()
    }

    /// The Server-Sent Events message for this event: `id:` the sequence
    /// number, `data:` the full event on one line. Built once, shared.
    pub fn sse_frame(&self) -> Bytes {
        self.sse
            .get_or_init(|| sse_message(self.seq, &self.json))
            .clone()
    }

    /// This event as a structured CloudEvent (the model's one mapping), or
    /// `None` when it does not decode. Built once, shared: `source` is the
    /// process's one configured base.
    pub fn cloudevent(&self, source: &Source) -> Option<Arc<str>> {
        self.cloudevent
            .get_or_init(|| {
                let event = self.event()?;
                Some(Arc::from(
                    CloudEvent::new(source, self.seq.0, event, &self.json).to_structured_json(),
                ))
            })
            .clone()
    }
}

impl LiveEvent {
    /// This event as a structured CDEvent (the model's `cdevents::map`
    /// carried as a CloudEvent), or `None` when CDEvents has no counterpart
    /// (or it does not decode).
    /// Built once, shared.
    pub fn cdevent(&self, source: &Source) -> Option<Arc<str>> {
        self.cdevent
            .get_or_init(|| {
                let event = self.event()?;
                let cd = cds_events_model::cdevents::map(source, event)?;
                Some(Arc::from(
                    cd.cloudevent(source, self.seq.0, event)
                        .to_structured_json(),
                ))
            })
            .clone()
    }
}

/// A Server-Sent Events message: `id:` the sequence number, `data:` `json`
/// on one line.
pub fn sse_message(seq: Seq, json: &str) -> Bytes {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(json.len() + 32);
    let _ = write!(out, "id: {}\ndata: ", seq.0);
    // A line break inside JSON can only be whitespace between tokens
    // (strings escape theirs), so a space is equivalent and keeps the event
    // on the one `data:` line SSE requires. Stored events have none: they
    // are copied whole, after a vectorised search (a `char` pattern search
    // here was a tenth of a catch-up's CPU).
    if memchr::memchr2(b'\n', b'\r', json.as_bytes()).is_some() {
        out.extend(json.chars().map(|c| match c {
            '\n' | '\r' => ' ',
            c => c,
        }));
    } else {
        out.push_str(json);
    }
    out.push_str("\n\n");
    Bytes::from(out)
}

/// What a subscriber wants. Implemented here by the query filter; the server
/// implements it for CDS's websocket filter sets and the hatchery queue,
/// which it checks against the caller's grants before subscribing.
pub trait Matcher: Send + Sync + fmt::Debug + 'static {
    fn matches(&self, e: &FullEvent) -> bool;
    /// The scopes (projects, and global) this matcher can match, or `None`
    /// when it may match any. Used to index subscribers, so a matcher must
    /// never match an event of a scope it does not list.
    fn scopes(&self) -> Option<Vec<EventScope>>;
    /// The same condition as a log query, when it is one: catching up then
    /// uses the log's indexes instead of reading every event.
    fn as_filter(&self) -> Option<&EventFilter> {
        None
    }
}

impl Matcher for EventFilter {
    fn matches(&self, e: &FullEvent) -> bool {
        EventFilter::matches(self, e)
    }
    fn scopes(&self) -> Option<Vec<EventScope>> {
        (!self.scopes.is_empty()).then(|| self.scopes.clone())
    }
    fn as_filter(&self) -> Option<&EventFilter> {
        Some(self)
    }
}

/// How a subscriber hears it was dropped for falling behind.
#[derive(Debug, Default)]
pub(crate) struct LagSignal {
    lagged: AtomicBool,
    notify: Notify,
}

impl LagSignal {
    fn raise(&self) {
        self.lagged.store(true, Ordering::Release);
        self.notify.notify_one();
    }
    pub(crate) fn take(&self) -> bool {
        self.lagged.swap(false, Ordering::AcqRel)
    }
    pub(crate) async fn wait(&self) {
        loop {
            if self.lagged.load(Ordering::Acquire) {
                return;
            }
            self.notify.notified().await;
        }
    }
}

struct Subscriber {
    matcher: Arc<dyn Matcher>,
    scopes: Option<Vec<EventScope>>,
    tx: mpsc::Sender<Arc<LiveEvent>>,
    lag: Arc<LagSignal>,
}

enum Command {
    Subscribe {
        id: u64,
        sub: Subscriber,
        reply: oneshot::Sender<Seq>,
    },
    Unsubscribe(u64),
}

/// Figures for `/mon/status` and metrics.
#[derive(Debug, Default)]
pub struct HubStats {
    pub subscribers: AtomicU64,
    pub position: AtomicU64,
    pub routed: AtomicU64,
    pub lagged: AtomicU64,
}

/// The fan-out engine; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    cmd: mpsc::UnboundedSender<Command>,
    next_id: Arc<AtomicU64>,
    log: Arc<dyn EventLog>,
    stats: Arc<HubStats>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Events read from the log per step.
const READ_BATCH: usize = 1000;

impl Hub {
    /// Starts the hub task, following `log` from its current head.
    pub fn start(log: Arc<dyn EventLog>, shutdown: CancellationToken) -> Hub {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(HubStats::default());
        let hub = Hub {
            cmd: cmd_tx,
            next_id: Arc::new(AtomicU64::new(1)),
            log: Arc::clone(&log),
            stats: Arc::clone(&stats),
        };
        let fanout = Fanout {
            cmd_rx,
            index: Index::default(),
            drop_list: Vec::new(),
            stats,
        };
        let options = FollowOptions {
            batch: READ_BATCH,
            retry: std::time::Duration::from_millis(100),
            ..FollowOptions::default()
        };
        tokio::spawn(follow(log, fanout, options, shutdown));
        hub
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    pub fn stats(&self) -> &HubStats {
        &self.stats
    }

    /// Registers a subscriber; answers the hub's position: every event after
    /// it will arrive on `tx` (unless the subscriber lags).
    pub(crate) async fn subscribe(
        &self,
        matcher: Arc<dyn Matcher>,
        tx: mpsc::Sender<Arc<LiveEvent>>,
        lag: Arc<LagSignal>,
    ) -> Result<(u64, Seq), LogError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        let scopes = matcher.scopes();
        let sub = Subscriber {
            matcher,
            scopes,
            tx,
            lag,
        };
        self.cmd
            .send(Command::Subscribe { id, sub, reply })
            .map_err(|_| LogError::Closed)?;
        let position = rx.await.map_err(|_| LogError::Closed)?;
        Ok((id, position))
    }

    pub(crate) fn unsubscribe(&self, id: u64) {
        let _ = self.cmd.send(Command::Unsubscribe(id));
    }
}

#[derive(Default)]
struct Index {
    subs: HashMap<u64, Subscriber>,
    by_project: HashMap<ProjectKey, Vec<u64>>,
    global: Vec<u64>,
    any: Vec<u64>,
}

impl Index {
    fn insert(&mut self, id: u64, sub: Subscriber) {
        match &sub.scopes {
            Some(scopes) => {
                for scope in scopes {
                    match scope {
                        EventScope::Global => self.global.push(id),
                        EventScope::Project(p) => {
                            self.by_project.entry(p.clone()).or_default().push(id)
                        }
                    }
                }
            }
            None => self.any.push(id),
        }
        self.subs.insert(id, sub);
    }

    fn remove(&mut self, id: u64) {
        let Some(sub) = self.subs.remove(&id) else {
            return;
        };
        match &sub.scopes {
            Some(scopes) => {
                for scope in scopes {
                    match scope {
                        EventScope::Global => self.global.retain(|x| *x != id),
                        EventScope::Project(p) => {
                            if let Some(v) = self.by_project.get_mut(p) {
                                v.retain(|x| *x != id);
                                if v.is_empty() {
                                    self.by_project.remove(p);
                                }
                            }
                        }
                    }
                }
            }
            None => self.any.retain(|x| *x != id),
        }
    }

    /// Whether any subscriber may want this event, read from its project
    /// alone: an event of a project nobody follows (and with nobody
    /// following everything) is skipped before it is decoded. One that
    /// does not even peek goes on, to be reported where it fails to decode.
    fn may_want(&self, stored: &StoredEvent) -> bool {
        if !self.any.is_empty() {
            return true;
        }
        match stored.head() {
            Ok(head) => !self.listed(&head.project_key).is_empty(),
            Err(_) => true,
        }
    }

    /// The subscribers listed under the scope of an event with this wire
    /// `project_key` (`""` is global on the wire, and only there).
    fn listed(&self, project_key: &str) -> &[u64] {
        if project_key.is_empty() {
            &self.global
        } else {
            self.by_project
                .get(project_key)
                .map(Vec::as_slice)
                .unwrap_or(&[])
        }
    }
}

/// The hub's side of the consumer loop: routes each batch, and serves
/// subscribe and unsubscribe commands while the loop waits for the head.
/// Not durable: it starts at the head, and a subscriber that missed events
/// catches up from the log itself.
struct Fanout {
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    index: Index,
    drop_list: Vec<u64>,
    stats: Arc<HubStats>,
}

impl Fanout {
    fn count_subscribers(&self) {
        self.stats
            .subscribers
            .store(self.index.subs.len() as u64, Ordering::Relaxed);
    }
}

impl Consumer for Fanout {
    fn name(&self) -> &str {
        "hub"
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint::Volatile
    }

    /// Nobody listening: nothing to read. A subscriber that arrives later
    /// starts from the head (or catches up itself).
    fn is_listening(&self) -> bool {
        !self.index.subs.is_empty()
    }

    async fn handle(&mut self, batch: &[StoredEvent]) -> Result<(), ConsumerError> {
        for stored in batch {
            if !self.index.may_want(stored) {
                continue;
            }
            // Logged by `event()` when it does not decode; not routed.
            let Some(live) = LiveEvent::new(stored) else {
                continue;
            };
            route(
                &self.index,
                Arc::new(live),
                &mut self.drop_list,
                &self.stats,
            );
        }
        for id in self.drop_list.drain(..) {
            self.index.remove(id);
        }
        self.count_subscribers();
        Ok(())
    }

    /// A subscriber joins at the position reached: every event after it
    /// goes to its queue.
    async fn input(&mut self, position: Seq) -> ControlFlow<()> {
        match self.cmd_rx.recv().await {
            Some(Command::Subscribe { id, sub, reply }) => {
                if reply.send(position).is_ok() {
                    self.index.insert(id, sub);
                }
            }
            Some(Command::Unsubscribe(id)) => self.index.remove(id),
            None => return ControlFlow::Break(()),
        }
        self.count_subscribers();
        ControlFlow::Continue(())
    }

    fn reached(&mut self, position: Seq) {
        self.stats.position.store(position.0, Ordering::Relaxed);
    }
}

fn route(index: &Index, live: Arc<LiveEvent>, drop_list: &mut Vec<u64>, stats: &HubStats) {
    let Some(event) = live.event() else { return };
    let listed = index.listed(&event.project_key);
    for id in listed.iter().chain(index.any.iter()) {
        // Once a subscriber overflowed, it gets nothing more from this batch:
        // a later event slipping into a freed slot would leave a hole before
        // it, and the subscriber resumes after the last event it received.
        if drop_list.contains(id) {
            continue;
        }
        let Some(sub) = index.subs.get(id) else {
            continue;
        };
        if !sub.matcher.matches(event) {
            continue;
        }
        match sub.tx.try_send(Arc::clone(&live)) {
            Ok(()) => {
                stats.routed.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                // Never wait for a subscriber: it catches up from the log.
                sub.lag.raise();
                stats.lagged.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("cds_events_stream_lagged_total").increment(1);
                drop_list.push(*id);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => drop_list.push(*id),
        }
    }
}

#[cfg(test)]
mod tests;
