//! Every configured sink of this process: built at start, run until
//! shutdown, each in a task of its own; status, pause, resume and replay
//! for the API.
//!
//! On a log that several instances share (PostgreSQL, `EventLog::leads`)
//! each sink runs on one instance at a time: it waits for its lead
//! (`standby`), runs under it (its position written only under the lead's
//! term), and when the lead is lost stops sending and waits again.

use crate::config::{SinkConfig, SinkConfigError};
use crate::driver::{Driver, Shared};
use crate::{Health, SinkError};
use cds_events_api::{SinkOut, SinkState};
use cds_events_log::pacing::{Pacing, Policy};
use cds_events_log::{EventLog, Lead, LogError, RetentionHold, Seq, follow};
use cds_events_model::cloudevents::Source;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod replay;
use replay::take_replay;

/// Why the sinks could not start, or an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum SinksError {
    #[error(transparent)]
    Config(#[from] SinkConfigError),
    #[error("two sinks are named {0:?}")]
    DuplicateName(String),
    #[error("sink {name}: {error}")]
    Build { name: String, error: SinkError },
    #[error("no sink named {0:?}")]
    NoSuchSink(String),
    #[error("replay from {from}: the log's head is {head}")]
    BeyondHead { from: u64, head: u64 },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the sinks are already running")]
    Running,
    /// On a shared log, only the instance that runs a sink moves its
    /// position.
    #[error("sink {name} runs on another instance ({holder}); ask it there")]
    NotLeading { name: String, holder: String },
}

/// The sinks of this process; cheap to clone (clones share them).
#[derive(Clone)]
pub struct Sinks {
    inner: Arc<Inner>,
}

struct Inner {
    log: Arc<dyn EventLog>,
    /// This process among the instances sharing the log: the holder the
    /// leads name.
    instance: String,
    entries: Vec<Entry>,
    pacing: Arc<Pacing>,
    policy: Option<Policy>,
}

struct Entry {
    shared: Arc<Shared>,
    /// Taken by `run`.
    driver: Mutex<Option<Driver>>,
}

impl std::fmt::Debug for Sinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.names().collect();
        f.debug_struct("Sinks").field("sinks", &names).finish()
    }
}

impl Sinks {
    /// Checks and builds every sink (nothing connects before `run`).
    /// `policy`: yield to ingest on a saturated machine (`None`: never).
    /// `instance` names this process in the leads of a shared log;
    /// `ce_source` is the base of the `source` of sinks that send
    /// CloudEvents (`cloudevents.source`).
    pub fn new(
        log: Arc<dyn EventLog>,
        instance: &str,
        configs: &[SinkConfig],
        policy: Option<Policy>,
        ce_source: &Source,
    ) -> Result<Sinks, SinksError> {
        let pacing = Arc::new(Pacing::new("sinks", "cds_events_sink_yield_rate"));
        let mut names = BTreeSet::new();
        let mut entries = Vec::with_capacity(configs.len());
        for c in configs {
            c.validate()?;
            if !names.insert(c.name.clone()) {
                return Err(SinksError::DuplicateName(c.name.clone()));
            }
            let filter = c.event_filter().map_err(|message| SinkConfigError {
                name: c.name.clone(),
                key: "filter",
                message,
            })?;
            let sink = crate::build(c).map_err(|error| SinksError::Build {
                name: c.name.clone(),
                error,
            })?;
            let shared = Arc::new(Shared::new(c.clone(), Arc::clone(&log)));
            let driver = Driver::new(
                Arc::clone(&shared),
                sink,
                filter,
                Arc::clone(&pacing),
                ce_source.clone(),
            );
            entries.push(Entry {
                shared,
                driver: Mutex::new(Some(driver)),
            });
        }
        Ok(Sinks {
            inner: Arc::new(Inner {
                log,
                instance: instance.to_owned(),
                entries,
                pacing,
                policy,
            }),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inner
            .entries
            .iter()
            .map(|e| e.shared.config.name.as_str())
    }

    /// What each sink holds from retention (register them in the server's
    /// `DurableConsumers`): the events after its position.
    pub fn holds(&self) -> Vec<Arc<dyn RetentionHold>> {
        self.inner
            .entries
            .iter()
            .map(|e| Arc::new(e.shared.positions.clone()) as Arc<dyn RetentionHold>)
            .collect()
    }

    /// Stores the log's head as the position of each sink that never had
    /// one (its first start), so that every event appended from now on is
    /// sent even though the sink connects, and starts following, only once
    /// [`Sinks::run`]'s task runs. Call it before the server takes events.
    /// Several instances opening at once on a shared log may each store
    /// their head; the highest wins, a few milliseconds of events apart.
    pub async fn start_positions(&self) -> Result<(), SinksError> {
        let head = *self.inner.log.head().borrow();
        for e in &self.inner.entries {
            let name = e.shared.positions.name();
            if self.inner.log.consumer_position(name).await?.is_none() {
                self.inner.log.set_consumer_position(name, head).await?;
            }
        }
        Ok(())
    }

    /// Runs every sink until `shutdown`; each stores its position before
    /// this returns. Once per process.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), SinksError> {
        let tracker = TaskTracker::new();
        for entry in &self.inner.entries {
            let driver = entry
                .driver
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .ok_or(SinksError::Running)?;
            tracker.spawn(run_one(
                Arc::clone(&self.inner.log),
                self.inner.instance.clone(),
                driver,
                shutdown.clone(),
            ));
            tracker.spawn(lag_gauge(
                Arc::clone(&self.inner.log),
                Arc::clone(&entry.shared),
                shutdown.clone(),
            ));
            if self.inner.log.leads().is_some() {
                tracker.spawn(follow_pause(
                    Arc::clone(&self.inner.log),
                    Arc::clone(&entry.shared),
                    shutdown.clone(),
                ));
            }
        }
        if let Some(policy) = self.inner.policy
            && !self.is_empty()
        {
            let inner = Arc::clone(&self.inner);
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                cds_events_log::pacing::control(&inner.pacing, policy, inner.log.as_ref(), shutdown)
                    .await
            });
        }
        tracker.close();
        tracker.wait().await;
        Ok(())
    }

    fn find(&self, name: &str) -> Result<&Arc<Shared>, SinksError> {
        self.inner
            .entries
            .iter()
            .map(|e| &e.shared)
            .find(|s| s.config.name == name)
            .ok_or_else(|| SinksError::NoSuchSink(name.to_owned()))
    }

    /// Every sink as the API shows it.
    pub async fn status(&self) -> Vec<SinkOut> {
        let head = *self.inner.log.head().borrow();
        let mut out = Vec::with_capacity(self.inner.entries.len());
        for e in &self.inner.entries {
            out.push(self.status_of(&e.shared, head).await);
        }
        out
    }

    /// One sink as the API shows it.
    pub async fn get(&self, name: &str) -> Result<SinkOut, SinksError> {
        let head = *self.inner.log.head().borrow();
        Ok(self.status_of(self.find(name)?, head).await)
    }

    async fn status_of(&self, shared: &Shared, head: Seq) -> SinkOut {
        let mut status = shared.status().clone();
        if status.state == SinkState::Standby {
            // Another instance moves it: the stored one.
            if let Ok(Some(p)) = self
                .inner
                .log
                .consumer_position(shared.positions.name())
                .await
            {
                status.position = p;
            }
        }
        let lag_events = head.0.saturating_sub(status.position.0);
        let lag_seconds = if lag_events == 0 {
            0.0
        } else {
            oldest_unsent_age(self.inner.log.as_ref(), status.position).await
        };
        let c = &shared.config;
        // An operator's pause shows whatever the broker does meanwhile.
        let state = match status.state {
            SinkState::Stopped => SinkState::Stopped,
            _ if *shared.paused.borrow() => SinkState::Paused,
            s => s,
        };
        SinkOut {
            name: c.name.clone(),
            kind: c.kind.name().to_owned(),
            state,
            position: status.position.0,
            head: head.0,
            lag_events,
            lag_seconds,
            sent: shared.sent.load(std::sync::atomic::Ordering::Relaxed),
            failed: shared.failed.load(std::sync::atomic::Ordering::Relaxed),
            last_error: status.last_error.as_ref().map(|(m, _)| m.clone()),
            last_error_at: status.last_error.as_ref().map(|(_, at)| *at),
            filter: c.filter.clone(),
            format: c.format.name().to_owned(),
            content_mode: c.content_mode,
            skipped: shared.skipped.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Stops sending (the position stays). Stored beside the position: the
    /// sink stays paused across a restart, on every instance.
    pub async fn pause(&self, name: &str) -> Result<SinkOut, SinksError> {
        let shared = self.find(name)?;
        let _order = shared.pause_order.lock().await;
        self.inner
            .log
            .set_consumer_paused(shared.positions.name(), true)
            .await?;
        shared.paused.send_replace(true);
        self.get(name).await
    }

    /// Sends again from where the sink stands.
    pub async fn resume(&self, name: &str) -> Result<SinkOut, SinksError> {
        let shared = self.find(name)?;
        let _order = shared.pause_order.lock().await;
        self.inner
            .log
            .set_consumer_paused(shared.positions.name(), false)
            .await?;
        shared.paused.send_replace(false);
        self.get(name).await
    }
}

/// One sink until `shutdown`: on a shared log, wait for its lead first and
/// again whenever it is lost; under it (or at once on a log of one
/// process) connect and follow, moving the position for a replay between
/// two runs.
async fn run_one(
    log: Arc<dyn EventLog>,
    instance: String,
    mut driver: Driver,
    shutdown: CancellationToken,
) {
    let shared = Arc::clone(&driver.shared);
    let name = shared.config.name.clone();
    loop {
        let lead = match log.leads() {
            None => None,
            Some(leads) => {
                shared.set_state(SinkState::Standby);
                match wait_lead(leads, &shared, &instance, &shutdown).await {
                    Some(lead) => Some(lead),
                    None => break,
                }
            }
        };
        shared.set_lead(lead.clone());
        let (back, next) = under(&log, driver, lead.as_deref(), &shutdown).await;
        driver = back;
        // Given up: the next holder resumes from the position stored.
        shared.set_lead(None);
        drop(lead);
        match next {
            Next::Lost => {
                tracing::warn!(sink = %name, "lost the sink's lead; another instance sends now");
                continue;
            }
            Next::Stop => break,
        }
    }
    shared.status().state = SinkState::Stopped;
    if let Health::Connected = driver.health().await {
        tracing::info!(sink = %name, "sink stopped");
    }
}

/// Why a sink stopped running under a lead.
enum Next {
    /// The lead was lost: wait for it again.
    Lost,
    /// The server stops, or the log closed.
    Stop,
}

/// Waits until this instance leads the sink; `None` at `shutdown`.
async fn wait_lead(
    leads: &dyn cds_events_log::ConsumerLeads,
    shared: &Shared,
    instance: &str,
    shutdown: &CancellationToken,
) -> Option<Arc<Lead>> {
    let consumer = shared.positions.name();
    loop {
        let taken = tokio::select! {
            _ = shutdown.cancelled() => return None,
            lead = leads.lead(consumer, instance) => lead,
        };
        match taken {
            Ok(lead) => {
                tracing::info!(sink = %shared.config.name, term = lead.term(), "leading the sink: it sends from this instance");
                return Some(Arc::new(lead));
            }
            Err(e) => {
                tracing::warn!(sink = %shared.config.name, error = %e, "cannot take the sink's lead; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Runs the sink (under `lead`, if any) until the lead is lost, `shutdown`,
/// or the log closes.
async fn under(
    log: &Arc<dyn EventLog>,
    mut driver: Driver,
    lead: Option<&Lead>,
    shutdown: &CancellationToken,
) -> (Driver, Next) {
    let shared = Arc::clone(&driver.shared);
    let name = shared.config.name.clone();
    let lost = || lead.is_some_and(Lead::is_lost);
    // An operator's pause (from an earlier run, or from another instance)
    // holds before anything is sent.
    loop {
        let order = shared.pause_order.lock().await;
        match log.consumer_paused(shared.positions.name()).await {
            Ok(paused) => {
                shared.paused.send_replace(paused);
                drop(order);
                break;
            }
            Err(e) => {
                drop(order);
                tracing::warn!(sink = %name, error = %e, "cannot read whether the sink is paused; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return (driver, Next::Stop),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
    if !driver.is_connected() {
        shared.set_state(SinkState::Connecting);
        if driver.connect().await.is_ok() {
            tracing::info!(sink = %name, kind = shared.config.kind.name(), "sink connected");
        }
    } else {
        shared.set_state(SinkState::Running);
    }
    let next = loop {
        let run = shutdown.child_token();
        *shared.run.lock().unwrap_or_else(|e| e.into_inner()) = Some(run.clone());
        // A replay asked between two runs takes effect now.
        if !take_replay(&shared).await {
            let options = driver.options();
            let following = follow(Arc::clone(log), driver, options, run.clone());
            // A lost lead stops the run: nothing more is sent from here.
            driver = match lead {
                Some(lead) => {
                    let mut following = std::pin::pin!(following);
                    tokio::select! {
                        d = &mut following => d,
                        _ = lead.lost() => {
                            run.cancel();
                            following.await
                        }
                    }
                }
                None => following.await,
            };
        }
        if shutdown.is_cancelled() {
            break Next::Stop;
        }
        if lost() {
            break Next::Lost;
        }
        if !take_replay(&shared).await && !shutdown.is_cancelled() {
            // The lead lost by the replay's save, or the log closed.
            break if lost() { Next::Lost } else { Next::Stop };
        }
    };
    shared.run.lock().unwrap_or_else(|e| e.into_inner()).take();
    match next {
        // A replay asked as the server stopped: its position still moves.
        Next::Stop => {
            take_replay(&shared).await;
        }
        // One asked as the lead went is not done here: its caller is told.
        Next::Lost => {
            let pending = shared
                .replay
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some((_, done)) = pending {
                let _ = done.send(false);
            }
        }
    }
    (driver, next)
}

/// Keeps `cds_events_sink_lag_events` current even while the sink is
/// stuck (the head moves, the position does not).
async fn lag_gauge(log: Arc<dyn EventLog>, shared: Arc<Shared>, shutdown: CancellationToken) {
    let head = log.head();
    let name = shared.config.name.clone();
    loop {
        let lag = head.borrow().0.saturating_sub(shared.status().position.0);
        metrics::gauge!("cds_events_sink_lag_events", "sink" => name.clone()).set(lag as f64);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// On a shared log, a pause or resume asked of another instance reaches
/// the one that sends within a second: the stored flag is read again.
async fn follow_pause(log: Arc<dyn EventLog>, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let _order = shared.pause_order.lock().await;
        if let Ok(paused) = log.consumer_paused(shared.positions.name()).await {
            shared
                .paused
                .send_if_modified(|p| std::mem::replace(p, paused) != paused);
        }
    }
}

/// Seconds since the timestamp of the first event after `position` (0 if
/// there is none, or it cannot be read).
async fn oldest_unsent_age(log: &dyn EventLog, position: Seq) -> f64 {
    let Ok(next) = log.read_after(position, 1).await else {
        return 0.0;
    };
    let Some(event) = next.first().and_then(|e| e.decode().ok()) else {
        return 0.0;
    };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let age = now.saturating_sub(event.timestamp.unix_nanos());
    (age.max(0) as f64) / 1e9
}
