//! What the bridge knows about itself: the link's state, the windows during
//! which events may have been missed, and the message counters. Shared by
//! the subscriber (which writes the link and the windows) and the writer
//! (which counts outcomes); read by `/mon/status`.
//!
//! A window is `[start, end]`: `start` is the last moment the subscription
//! was known alive (a message or a PING answer arrived) less a second for
//! the network's latency (a message arrives after it was published, and one
//! published just after it may be the first lost), `end` the moment a new
//! subscription was confirmed. Every event CDS published in between may be
//! missing, none outside it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How much earlier than the last sign of life a gap is taken to start.
const LATENCY_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(1);

/// The subscription's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// The first connection is being made.
    Connecting,
    /// Subscribed: events flow.
    Subscribed,
    /// The subscription was lost; a gap is open until it is back.
    Reconnecting,
    /// The bridge has stopped (server shutdown).
    Stopped,
}

/// A time during which CDS's events may have been missed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub seconds: f64,
    /// Why the subscription was lost (the first reason seen).
    pub reason: String,
}

/// Message counters since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessageCounts {
    /// Messages read from the channel.
    pub received: u64,
    /// Events appended to the log for the first time.
    pub ingested: u64,
    /// Events the log already had (same id): not stored again.
    pub duplicates: u64,
    /// Messages that are not a valid CDS event; counted, logged, skipped.
    pub undecodable: u64,
    /// Messages dropped because the buffer was full (a gap was opened).
    pub dropped: u64,
}

/// The `bridge` object of `/mon/status`.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeStatus {
    pub state: LinkState,
    /// The Redis URL, password masked.
    pub redis: String,
    pub channel: String,
    /// When the current subscription was confirmed.
    pub connected_since: Option<DateTime<Utc>>,
    /// While not subscribed: the start of the open gap.
    pub gap_open_since: Option<DateTime<Utc>>,
    /// The most recent closed windows, newest last.
    pub windows: Vec<GapWindow>,
    /// Every window closed since the start (the list above is bounded).
    pub windows_total: u64,
    /// Their length added up.
    pub gap_seconds_total: f64,
    pub messages: MessageCounts,
    /// The last connection error, password masked.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Link {
    state: LinkState,
    connected_since: Option<DateTime<Utc>>,
    /// The last moment the subscription was known alive.
    alive_at: Option<DateTime<Utc>>,
    gap: Option<(DateTime<Utc>, String)>,
    windows: VecDeque<GapWindow>,
    windows_total: u64,
    gap_seconds_total: f64,
    last_error: Option<String>,
}

/// The shared record; counters are atomics so that counting a message takes
/// no lock.
#[derive(Debug)]
pub(crate) struct Shared {
    redis: String,
    channel: String,
    max_windows: usize,
    link: Mutex<Link>,
    pub(crate) received: AtomicU64,
    pub(crate) ingested: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) undecodable: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl Shared {
    pub(crate) fn new(redis: String, channel: String, max_windows: usize) -> Shared {
        Shared {
            redis,
            channel,
            max_windows,
            link: Mutex::new(Link {
                state: LinkState::Connecting,
                connected_since: None,
                alive_at: None,
                gap: None,
                windows: VecDeque::new(),
                windows_total: 0,
                gap_seconds_total: 0.0,
                last_error: None,
            }),
            received: AtomicU64::new(0),
            ingested: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A message or a PING answer arrived: the subscription was alive now.
    pub(crate) fn alive(&self, at: DateTime<Utc>) {
        let mut l = self.link();
        if l.alive_at.is_none_or(|a| a < at) {
            l.alive_at = Some(at);
        }
    }

    /// The first connection failed: events published since `since` (the
    /// bridge's start) may be missing.
    pub(crate) fn first_attempt_failed(&self, since: DateTime<Utc>, error: String) {
        let mut l = self.link();
        if l.gap.is_none() {
            l.gap = Some((since, "no connection at start".to_owned()));
        }
        l.state = LinkState::Reconnecting;
        l.last_error = Some(error);
    }

    /// A later attempt failed (the gap stays open).
    pub(crate) fn attempt_failed(&self, error: String) {
        self.link().last_error = Some(error);
    }

    /// The subscription was lost: a gap opens at the last moment it was
    /// known alive. Returns that start.
    pub(crate) fn lost(&self, reason: &str, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut l = self.link();
        let start = l.alive_at.or(l.connected_since).unwrap_or(now).min(now) - LATENCY_MARGIN;
        if l.gap.is_none() {
            l.gap = Some((start, reason.to_owned()));
        }
        l.state = LinkState::Reconnecting;
        l.connected_since = None;
        metrics::gauge!("cds_events_bridge_connected").set(0.0);
        start
    }

    /// A subscription was confirmed at `at`: the open gap, if any, closes
    /// and is returned.
    pub(crate) fn subscribed(&self, at: DateTime<Utc>) -> Option<GapWindow> {
        let mut l = self.link();
        l.state = LinkState::Subscribed;
        l.connected_since = Some(at);
        l.alive_at = Some(at);
        l.last_error = None;
        metrics::gauge!("cds_events_bridge_connected").set(1.0);
        let (start, reason) = l.gap.take()?;
        let seconds = (at - start).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6;
        let w = GapWindow {
            start,
            end: at,
            seconds: seconds.max(0.0),
            reason,
        };
        l.windows_total += 1;
        l.gap_seconds_total += w.seconds;
        l.windows.push_back(w.clone());
        while l.windows.len() > self.max_windows {
            l.windows.pop_front();
        }
        metrics::counter!("cds_events_bridge_gaps_total").increment(1);
        // A gauge that only grows: a counter would lose the fractions.
        metrics::gauge!("cds_events_bridge_gap_seconds_total").set(l.gap_seconds_total);
        Some(w)
    }

    pub(crate) fn stopped(&self) {
        let mut l = self.link();
        l.state = LinkState::Stopped;
        l.connected_since = None;
        metrics::gauge!("cds_events_bridge_connected").set(0.0);
    }

    pub(crate) fn snapshot(&self) -> BridgeStatus {
        let l = self.link();
        BridgeStatus {
            state: l.state,
            redis: self.redis.clone(),
            channel: self.channel.clone(),
            connected_since: l.connected_since,
            gap_open_since: l.gap.as_ref().map(|(s, _)| *s),
            windows: l.windows.iter().cloned().collect(),
            windows_total: l.windows_total,
            gap_seconds_total: l.gap_seconds_total,
            messages: MessageCounts {
                received: self.received.load(Ordering::Relaxed),
                ingested: self.ingested.load(Ordering::Relaxed),
                duplicates: self.duplicates.load(Ordering::Relaxed),
                undecodable: self.undecodable.load(Ordering::Relaxed),
                dropped: self.dropped.load(Ordering::Relaxed),
            },
            last_error: l.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
    }

    #[test]
    fn a_window_runs_from_the_last_sign_of_life_to_the_new_subscription() {
        let s = Shared::new("redis://h".into(), "event:ui".into(), 10);
        assert!(s.subscribed(t(0)).is_none(), "a first success is no gap");
        s.alive(t(5));
        assert_eq!(s.lost("connection closed", t(7)), t(4), "a second before");
        let snap = s.snapshot();
        assert_eq!(snap.state, LinkState::Reconnecting);
        assert_eq!(snap.gap_open_since, Some(t(4)));
        let w = s.subscribed(t(9)).expect("window");
        assert_eq!((w.start, w.end, w.seconds), (t(4), t(9), 5.0));
        assert_eq!(w.reason, "connection closed");
        let snap = s.snapshot();
        assert_eq!(snap.gap_open_since, None);
        assert_eq!(snap.windows, vec![w]);
        assert_eq!(snap.gap_seconds_total, 5.0);
    }

    #[test]
    fn a_failed_first_connection_opens_a_gap_from_the_start() {
        let s = Shared::new("redis://h".into(), "c".into(), 10);
        s.first_attempt_failed(t(0), "refused".into());
        s.attempt_failed("refused again".into());
        assert_eq!(s.snapshot().last_error.as_deref(), Some("refused again"));
        let w = s.subscribed(t(3)).expect("window");
        assert_eq!(
            (w.start, w.reason.as_str()),
            (t(0), "no connection at start")
        );
        assert_eq!(s.snapshot().last_error, None);
    }

    #[test]
    fn the_window_list_is_bounded_and_keeps_the_newest_last() {
        let s = Shared::new("r".into(), "c".into(), 3);
        s.subscribed(t(0));
        for i in 1..=5 {
            s.lost("x", t(i * 10));
            s.subscribed(t(i * 10) + Duration::seconds(1));
        }
        let snap = s.snapshot();
        assert_eq!(snap.windows_total, 5);
        assert_eq!(snap.windows.len(), 3);
        assert_eq!(
            snap.windows[2].start,
            t(40),
            "last subscribed at 41, less a second"
        );
        assert_eq!(snap.windows[0].start, t(20));
    }

    #[test]
    fn a_second_loss_keeps_the_first_start() {
        let s = Shared::new("r".into(), "c".into(), 3);
        s.subscribed(t(0));
        s.lost("first", t(2));
        s.lost("second", t(4));
        let w = s.subscribed(t(6)).expect("window");
        assert_eq!((w.start, w.reason.as_str()), (t(-1), "first"));
    }
}
