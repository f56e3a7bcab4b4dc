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

/// On a backend that several instances share ([`EventLog::leads`]), a
/// consumer's lead has one holder at a time, the next one waits and gets a
/// later term, and a position write under any lead but the latest is
/// refused: a deposed holder moves the position neither back nor forward.
/// A backend without leads (SQLite: one process) has nothing to check.
///
/// [`EventLog::leads`]: crate::EventLog::leads
pub async fn a_consumers_lead_has_one_holder_and_fences_its_position(h: &dyn Harness) {
    let a = h.open().await;
    let Some(leads_a) = a.leads() else {
        a.close().await.expect("close");
        return;
    };
    let b = h.open().await;
    let first = leads_a.lead("sink:led", "a").await.expect("lead");
    leads_a
        .save_position(&first, "sink:led", Seq(5))
        .await
        .expect("the holder saves");
    // Another consumer's lead is apart: taken at once.
    let other = leads_a.lead("sink:other", "a").await.expect("other lead");
    // The same consumer's lead, asked from another instance, waits.
    let waiting = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.leads().expect("leads").lead("sink:led", "b").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "one holder at a time");
    let deposed = first.term();
    drop(first);
    let second = tokio::time::timeout(std::time::Duration::from_secs(20), waiting)
        .await
        .expect("the waiter takes the lead once it is given up")
        .expect("task")
        .expect("lead");
    assert!(second.term() > deposed, "a later term");
    assert_eq!(
        leads_a.holder("sink:led").await.expect("holder").as_deref(),
        Some("b")
    );
    // A holder that has not noticed it was deposed: same term, as it had.
    let stale = crate::Lead::new(deposed, Default::default(), ());
    for seq in [Seq(3), Seq(9)] {
        let refused = leads_a.save_position(&stale, "sink:led", seq).await;
        assert!(
            matches!(refused, Err(crate::LogError::LostLead)),
            "{refused:?}"
        );
        assert!(stale.is_lost(), "a refused save marks the lead lost");
    }
    assert_eq!(
        a.consumer_position("sink:led").await.expect("position"),
        Some(Seq(5)),
        "the deposed holder moved it neither back nor forward"
    );
    b.leads()
        .expect("leads")
        .save_position(&second, "sink:led", Seq(7))
        .await
        .expect("the new holder saves");
    assert_eq!(
        b.consumer_position("sink:led").await.expect("position"),
        Some(Seq(7))
    );
    assert!(!second.is_lost() && !other.is_lost());
    drop((second, other));
    a.close().await.expect("close");
    b.close().await.expect("close");
}
