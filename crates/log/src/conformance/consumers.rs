//! What the suite checks of consumers' positions and retention's
//! low-water mark on a backend.

use super::{Harness, batch, event};
use crate::consumer::{DurableConsumers, LogPositions, PositionStore};
use crate::{Retention, Seq};
use cds_events_model::EventType;
use std::sync::Arc;

pub async fn a_registered_consumers_hold_keeps_its_events_through_a_purge(h: &dyn Harness) {
    let log = h.open().await;
    log.append(batch(
        (0..10).map(|i| event(EventType::ProjectUpdated, "A", i)),
    ))
    .await
    .expect("append");
    let consumers = DurableConsumers::default();
    let slow = LogPositions::new(Arc::clone(&log), "slow");
    let fast = LogPositions::new(Arc::clone(&log), "fast");
    consumers.register(Arc::new(slow.clone()));
    consumers.register(Arc::new(fast.clone()));
    // Not started yet: they will start at the head, and need nothing.
    assert_eq!(consumers.low_water_mark().await.expect("mark"), None);
    slow.save(Seq(4)).await.expect("position");
    fast.save(Seq(8)).await.expect("position");
    let low = consumers.low_water_mark().await.expect("mark");
    assert_eq!(low, Some(Seq(5)), "the event after the slowest position");
    let keep_2 = |hold_from| Retention {
        max_events: Some(2),
        hold_from,
        ..Retention::default()
    };
    while log.purge(keep_2(low), 3).await.expect("purge") > 0 {}
    let stats = log.stats().await.expect("stats");
    assert_eq!((stats.events, stats.oldest_seq), (6, Seq(5)));
    let next = log.read_after(Seq(4), 100).await.expect("read");
    assert_eq!(
        next.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        [5, 6, 7, 8, 9, 10],
        "the slow consumer reads on without a gap"
    );
    // Once it moved on, the hold follows the slowest one left.
    slow.save(Seq(10)).await.expect("position");
    let low = consumers.low_water_mark().await.expect("mark");
    assert_eq!(low, Some(Seq(9)));
    while log.purge(keep_2(low), 3).await.expect("purge") > 0 {}
    let stats = log.stats().await.expect("stats");
    assert_eq!((stats.events, stats.oldest_seq), (2, Seq(9)));
    log.close().await.expect("close");
}

pub async fn a_consumers_pause_is_kept_apart_from_its_position_and_across_a_reopen(
    h: &dyn Harness,
) {
    let log = h.open().await;
    assert!(!log.consumer_paused("sink:a").await.expect("paused"));
    // Paused before it ever stored a position: kept all the same.
    log.set_consumer_paused("sink:a", true)
        .await
        .expect("pause");
    log.set_consumer_paused("sink:a", true)
        .await
        .expect("again");
    log.set_consumer_position("sink:a", Seq(3))
        .await
        .expect("position");
    log.set_consumer_position("sink:b", Seq(5))
        .await
        .expect("position");
    log.close().await.expect("close");
    drop(log);
    let log = h.open().await;
    assert!(log.consumer_paused("sink:a").await.expect("paused"));
    assert!(!log.consumer_paused("sink:b").await.expect("paused"));
    log.set_consumer_paused("sink:a", false)
        .await
        .expect("resume");
    assert!(!log.consumer_paused("sink:a").await.expect("paused"));
    assert_eq!(
        log.consumer_position("sink:a").await.expect("position"),
        Some(Seq(3)),
        "a pause never moves the position"
    );
    log.close().await.expect("close");
}
