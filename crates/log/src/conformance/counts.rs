//! What [`EventLog::count`](crate::EventLog::count) promises: events counted
//! in the bucket of their timestamp (`since` inclusive, `until` exclusive),
//! by type, for the scopes asked only; the same answer as the generic count
//! built from queries.

use super::{Harness, batch, event, project};
use crate::counts::count_by_query;
use crate::{CountQuery, TypeCount};
use cds_events_model::{EventScope, EventType, Timestamp};
use std::time::Duration;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_nanos(secs * 1_000_000_000)
}

fn window(since: i64, until: i64) -> CountQuery {
    CountQuery {
        scopes: Vec::new(),
        exclude_global: false,
        since: at(since),
        until: at(until),
        step: Duration::from_secs(60),
    }
}

fn tc(bucket: u32, event_type: EventType, count: u64) -> TypeCount {
    TypeCount {
        bucket,
        event_type,
        count,
    }
}

pub async fn count_buckets_events_by_time_type_and_scope(h: &dyn Harness) {
    let log = h.open().await;
    let base = 1_700_000_000;
    let mut evs = Vec::new();
    // Before the window, in it (three minutes), at its exclusive end.
    evs.push(event(EventType::RunCrafted, "A", base - 1));
    for s in [0, 1, 59] {
        evs.push(event(EventType::RunCrafted, "A", base + s));
    }
    for s in [60, 61] {
        evs.push(event(EventType::RunJobEnded, "B", base + s));
    }
    evs.push(event(EventType::RunCrafted, "B", base + 90));
    evs.push(event(EventType::UserCreated, "", base + 150));
    evs.push(event(EventType::RunCrafted, "A", base + 180));
    log.append(batch(evs)).await.expect("append");

    let all = log.count(window(base, base + 180)).await.expect("count");
    assert_eq!(
        all,
        vec![
            tc(0, EventType::RunCrafted, 3),
            tc(1, EventType::RunCrafted, 1),
            tc(1, EventType::RunJobEnded, 2),
            tc(2, EventType::UserCreated, 1),
        ],
        "every scope; `until` is exclusive"
    );
    assert_eq!(
        all,
        count_by_query(log.as_ref(), &window(base, base + 180))
            .await
            .expect("generic count"),
        "the backend agrees with the count built from queries"
    );

    let mut only_b = window(base, base + 180);
    only_b.scopes = vec![project("B")];
    assert_eq!(
        log.count(only_b).await.expect("count"),
        vec![
            tc(1, EventType::RunCrafted, 1),
            tc(1, EventType::RunJobEnded, 2)
        ]
    );

    let mut no_global = window(base, base + 180);
    no_global.exclude_global = true;
    let n: u64 = log
        .count(no_global)
        .await
        .expect("count")
        .iter()
        .map(|c| c.count)
        .sum();
    assert_eq!(n, 6, "global events left out");

    let mut global = window(base - 60, base + 240);
    global.scopes = vec![EventScope::Global];
    global.step = Duration::from_secs(3600);
    assert_eq!(
        log.count(global).await.expect("count"),
        vec![tc(0, EventType::UserCreated, 1)]
    );

    assert!(
        log.count(window(base + 3600, base + 7200))
            .await
            .expect("count")
            .is_empty(),
        "a window after every event"
    );
    assert!(
        log.count(window(base, base))
            .await
            .expect("count")
            .is_empty(),
        "an empty window"
    );
    log.close().await.expect("close");
}

/// `n` events spread evenly over the 24 hours after `base` (seconds), in
/// projects `P0`..`P9`, alternately of two families; counted over the whole
/// day by hour and over its last hour by minute. Returns the time each
/// count took (whole day, last hour), for the scale test's report.
pub async fn count_a_day_of_events(h: &dyn Harness, n: u64) -> (Duration, Duration) {
    let log = h.open().await;
    let base: i64 = 1_700_000_000;
    let day_ns: i64 = 86_400_000_000_000;
    let mut pending = Vec::new();
    for i in 0..n {
        let t = if i % 2 == 0 {
            EventType::RunJobEnded
        } else {
            EventType::AnalysisDone
        };
        let mut e = event(t, &format!("P{}", i % 10), base);
        e.timestamp = Timestamp::from_unix_nanos(
            base * 1_000_000_000 + (i128::from(i) * i128::from(day_ns) / i128::from(n)) as i64,
        );
        pending.push(e);
        if pending.len() == 5000 || i + 1 == n {
            log.append(batch(std::mem::take(&mut pending)))
                .await
                .expect("append");
        }
    }
    let mut day = window(base, base + 86_400);
    day.step = Duration::from_secs(3600);
    let started = std::time::Instant::now();
    let counts = log.count(day).await.expect("count");
    let whole = started.elapsed();
    assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), n);
    assert_eq!(counts.iter().map(|c| c.bucket).max(), Some(23));
    let started = std::time::Instant::now();
    let counts = log
        .count(window(base + 82_800, base + 86_400))
        .await
        .expect("count");
    let hour = started.elapsed();
    let in_hour = (0..n)
        .filter(|i| i128::from(*i) * 24 >= i128::from(n) * 23)
        .count() as u64;
    assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), in_hour);
    let mut one = window(base + 82_800, base + 86_400);
    one.scopes = vec![project("P3")];
    let p3: u64 = log
        .count(one)
        .await
        .expect("count")
        .iter()
        .map(|c| c.count)
        .sum();
    assert!(
        p3 > 0 && p3 < in_hour,
        "one project of ten: {p3} of {in_hour}"
    );
    log.close().await.expect("close");
    (whole, hour)
}

/// A count over more than one block of sequence numbers (blocks hold 16,384
/// events) adds up every event once.
pub async fn count_spans_many_blocks(h: &dyn Harness) {
    count_a_day_of_events(h, 40_000).await;
}
