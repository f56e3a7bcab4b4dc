//! One subscriber's ordered, gap-free view: the log up to the hub's position,
//! then the hub's live events; after a lag, the log again, then live again.
//! A catch-up read that finds the log away (its database restarting) is
//! tried again after a pause: the subscriber waits rather than ends.

use crate::{Hub, LagSignal, LiveEvent, Matcher};
use cds_events_log::{LogError, Order, Query, Seq};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Bounds of one feed.
#[derive(Debug, Clone, Copy)]
pub struct FeedOptions {
    /// Live events queued for this subscriber before it counts as lagging.
    pub queue: usize,
    /// A subscriber further behind than this many events is not caught up
    /// but closed with [`FeedError::Lagged`], to resume when it can keep up.
    pub max_catchup: u64,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            queue: 1024,
            max_catchup: 1_000_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Log(#[from] LogError),
    /// Too far behind to catch up: resume later from `resume_from`.
    #[error("lagged; resume from {resume_from}")]
    Lagged { resume_from: Seq },
    /// The hub stopped (shutdown).
    #[error("the event hub stopped")]
    Closed,
}

/// Events read from the log per catch-up step.
const CATCHUP_BATCH: usize = 1000;

/// The first pause before reading the log again when it is away
/// ([`LogError::Busy`]), doubled after each failure up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);

/// A subscription that yields every matching event after its start, in
/// sequence order, exactly once.
#[derive(Debug)]
pub struct Feed {
    hub: Hub,
    matcher: Arc<dyn Matcher>,
    opts: FeedOptions,
    sub_id: u64,
    rx: mpsc::Receiver<Arc<LiveEvent>>,
    lag: Arc<LagSignal>,
    /// The last event handed out (or the start position).
    delivered: Seq,
    /// Catch-up: the log has been read up to `scanned`; read on up to `until`.
    catchup: Option<(Seq, Seq)>,
    backlog: VecDeque<Arc<LiveEvent>>,
    /// The pause before the next catch-up read if this one finds the log
    /// away.
    retry: Duration,
}

impl Feed {
    /// Subscribes `matcher`: every matching event after `after` (or, without
    /// it, every one committed from now on).
    pub async fn open(
        hub: &Hub,
        matcher: Arc<dyn Matcher>,
        after: Option<Seq>,
        opts: FeedOptions,
    ) -> Result<Feed, FeedError> {
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let lag = Arc::new(LagSignal::default());
        let (sub_id, position) = hub
            .subscribe(Arc::clone(&matcher), tx, Arc::clone(&lag))
            .await?;
        let mut feed = Feed {
            hub: hub.clone(),
            matcher,
            opts,
            sub_id,
            rx,
            lag,
            delivered: position,
            catchup: None,
            backlog: VecDeque::new(),
            retry: FIRST_RETRY,
        };
        if let Some(after) = after {
            feed.delivered = after;
            if after < position {
                if position.0 - after.0 > opts.max_catchup && feed.matcher.as_filter().is_none() {
                    return Err(FeedError::Lagged { resume_from: after });
                }
                feed.catchup = Some((after, position));
            }
        }
        Ok(feed)
    }

    /// The last sequence number handed out: where to resume after a disconnect.
    pub fn position(&self) -> Seq {
        self.delivered
    }

    /// The next event.
    pub async fn next(&mut self) -> Result<Arc<LiveEvent>, FeedError> {
        loop {
            if let Some(e) = self.backlog.pop_front() {
                if e.seq > self.delivered {
                    self.delivered = e.seq;
                    return Ok(e);
                }
                continue;
            }
            if let Some((scanned, until)) = self.catchup {
                if scanned >= until {
                    self.catchup = None;
                } else {
                    match self.read_log(scanned, until).await {
                        Ok(()) => self.retry = FIRST_RETRY,
                        // The database away (restarting): the subscriber
                        // waits, then goes on from where it was; its stream
                        // stays open meanwhile.
                        Err(FeedError::Log(LogError::Busy(error))) => {
                            tracing::debug!(%error, retry_in = ?self.retry, "catch-up read failed");
                            tokio::time::sleep(self.retry).await;
                            self.retry = (self.retry * 2).min(MAX_RETRY);
                        }
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                ev = self.rx.recv() => match ev {
                    Some(e) => self.backlog.push_back(e),
                    None if self.lag.take() => self.rejoin().await?,
                    None => return Err(FeedError::Closed),
                },
                _ = self.lag.wait() => {
                    self.lag.take();
                    self.rejoin().await?;
                }
            }
        }
    }

    /// The next event if it is ready now, without waiting or reading the log:
    /// lets a writer send what is already queued in one go. `None` does not
    /// mean the end; call [`Feed::next`] then.
    pub fn try_next(&mut self) -> Option<Arc<LiveEvent>> {
        loop {
            let e = match self.backlog.pop_front() {
                Some(e) => e,
                // Live events wait until a catch-up from the log is done.
                None if self.catchup.is_some() => return None,
                None => self.rx.try_recv().ok()?,
            };
            if e.seq > self.delivered {
                self.delivered = e.seq;
                return Some(e);
            }
        }
    }

    /// Dropped by the hub for lagging: keep what was queued, subscribe again,
    /// and read the log between the two.
    async fn rejoin(&mut self) -> Result<(), FeedError> {
        while let Ok(e) = self.rx.try_recv() {
            self.backlog.push_back(e);
        }
        let resume = self
            .backlog
            .back()
            .map(|e| e.seq)
            .unwrap_or(self.delivered)
            .max(self.delivered);
        let (tx, rx) = mpsc::channel(self.opts.queue.max(1));
        let (sub_id, position) = self
            .hub
            .subscribe(Arc::clone(&self.matcher), tx, Arc::clone(&self.lag))
            .await?;
        self.hub.unsubscribe(self.sub_id);
        self.sub_id = sub_id;
        self.rx = rx;
        if position.0.saturating_sub(resume.0) > self.opts.max_catchup {
            return Err(FeedError::Lagged {
                resume_from: self.delivered,
            });
        }
        if resume < position {
            self.catchup = Some((resume, position));
        }
        Ok(())
    }

    /// Reads the next step of `(scanned, until]` into the backlog.
    async fn read_log(&mut self, scanned: Seq, until: Seq) -> Result<(), FeedError> {
        let log = self.hub.log();
        // A filter the log query applied needs no second look: those events
        // leave as stored, undecoded (a CloudEvents reader decodes its own).
        let filtered = self.matcher.as_filter().is_some();
        let (events, reached) = match self.matcher.as_filter() {
            Some(filter) => {
                let page = log
                    .query(Query {
                        filter: filter.clone(),
                        cursor: Some(scanned),
                        limit: CATCHUP_BATCH,
                        order: Order::Asc,
                    })
                    .await?;
                // Where this page leaves the walk: its cursor, or the end.
                let reached = page.next_cursor.unwrap_or(until);
                (page.events, reached)
            }
            None => {
                let batch = log.read_after(scanned, CATCHUP_BATCH).await?;
                let reached = batch.last().map(|e| e.seq).unwrap_or(until);
                (batch, reached)
            }
        };
        for stored in events {
            if stored.seq > until {
                break;
            }
            let live = LiveEvent::undecoded(&stored);
            if filtered || live.event().is_some_and(|e| self.matcher.matches(e)) {
                self.backlog.push_back(Arc::new(live));
            }
        }
        let reached = reached.min(until);
        self.catchup = Some((reached.max(scanned), until));
        if reached <= scanned {
            // Nothing further in the log below `until` (purged or empty).
            self.catchup = None;
        }
        Ok(())
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.sub_id);
    }
}
