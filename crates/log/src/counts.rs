//! Events counted per time bucket and type: the console's overview chart
//! ([`EventLog::count`]).
//!
//! A window is at most [`MAX_COUNT_WINDOW`] long and at most
//! [`MAX_COUNT_BUCKETS`] buckets, so that a count reads a bounded part of the
//! log whatever its size: each backend turns the window into a sequence range
//! through its zone map (per block of sequence numbers, the lowest and
//! highest event time) and reads only the rows of that range.

use crate::{EventLog, LogError, Order, Query};
use cds_events_model::{EventFilter, EventScope, EventType, Timestamp};
use std::collections::BTreeMap;
use std::time::Duration;

/// The longest window a count may cover.
pub const MAX_COUNT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The most buckets a count may have.
pub const MAX_COUNT_BUCKETS: u64 = 1440;

/// Which events to count, and in which buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct CountQuery {
    /// Events of any of these scopes (empty: every scope).
    pub scopes: Vec<EventScope>,
    /// Leave out the global-scope events.
    pub exclude_global: bool,
    /// Inclusive lower bound on the event's timestamp; bucket 0 starts here.
    pub since: Timestamp,
    /// Exclusive upper bound on the event's timestamp.
    pub until: Timestamp,
    /// The width of a bucket (at least one second).
    pub step: Duration,
}

impl CountQuery {
    /// Whether events of `scope` are counted.
    pub fn admits(&self, scope: &EventScope) -> bool {
        !(self.exclude_global && *scope == EventScope::Global)
            && (self.scopes.is_empty() || self.scopes.contains(scope))
    }

    /// The bounds in Unix nanoseconds and the step in nanoseconds, or `None`
    /// when the window is empty.
    pub(crate) fn nanos(&self) -> Option<(i64, i64, i64)> {
        let (since, until) = (self.since.unix_nanos(), self.until.unix_nanos());
        let step = (self.step.as_nanos() as i64).max(1);
        (since < until).then_some((since, until, step))
    }
}

/// How many events of one type fell in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TypeCount {
    /// The bucket's index: it starts at `since + bucket × step`.
    pub bucket: u32,
    pub event_type: EventType,
    pub count: u64,
}

/// Sums `(bucket, type, n)` rows into [`TypeCount`]s, ordered by bucket then
/// type, leaving out zero counts.
pub(crate) fn collect(rows: impl IntoIterator<Item = (i64, EventType, u64)>) -> Vec<TypeCount> {
    let mut sums: BTreeMap<(u32, EventType), u64> = BTreeMap::new();
    for (bucket, event_type, n) in rows {
        if n > 0 && bucket >= 0 {
            *sums.entry((bucket as u32, event_type)).or_default() += n;
        }
    }
    sums.into_iter()
        .map(|((bucket, event_type), count)| TypeCount {
            bucket,
            event_type,
            count,
        })
        .collect()
}

/// A count built from [`EventLog::query`]: correct on any backend, but it
/// reads and decodes every matching event (the default of
/// [`EventLog::count`], for logs with no cheaper way).
pub async fn count_by_query<L: EventLog + ?Sized>(
    log: &L,
    q: &CountQuery,
) -> Result<Vec<TypeCount>, LogError> {
    let Some((since, until, step)) = q.nanos() else {
        return Ok(Vec::new());
    };
    let filter = EventFilter {
        scopes: q.scopes.clone(),
        exclude_global: q.exclude_global,
        since: Some(q.since),
        until: Some(q.until),
        ..EventFilter::default()
    };
    let mut rows = Vec::new();
    let mut cursor = None;
    loop {
        let page = log
            .query(Query {
                filter: filter.clone(),
                cursor,
                limit: 1000,
                order: Order::Asc,
            })
            .await?;
        for e in &page.events {
            let Ok(ev) = e.decode() else { continue };
            let ts = ev.timestamp.unix_nanos();
            if ts >= since && ts < until {
                rows.push(((ts - since) / step, ev.event_type, 1));
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(collect(rows)),
        }
    }
}
