//! What the store keeps and for how long: the purge, ids that never come
//! back, what retention must hold, the epoch.

use super::{
    Harness, actor, attempt, create, deliver, key, listed, move_position, open, open_with_one, set,
};
use crate::model::DeliveryStatus;
use crate::store::{PURGE_CHUNK, Purged};
use crate::time::now_ms;
use cds_events_log::Seq;

pub async fn a_deleted_notifications_rows_are_purged_in_chunks(h: &dyn Harness) {
    let o = open(h).await;
    let s = o.store.as_ref();
    let gone = create(s, "P", "gone").await;
    let kept = create(s, "P", "kept").await;
    let many = PURGE_CHUNK + PURGE_CHUNK / 2;
    let ids = deliver(s, &gone, 1..=many).await;
    attempt(s, &gone, ids[0], DeliveryStatus::Pending).await;
    deliver(s, &kept, [many + 1]).await;
    s.delete_notification(&key("P"), "gone", &actor())
        .await
        .expect("delete");
    // The finished-before limit keeps every finished delivery: only the
    // deleted notification's go.
    let first = s.purge_step(0).await.expect("purge");
    assert_eq!(
        first,
        Purged {
            deliveries: PURGE_CHUNK,
            more: true
        }
    );
    let mut total = first.deliveries;
    let mut steps = 1;
    loop {
        let step = s.purge_step(0).await.expect("purge");
        assert!(step.deliveries <= PURGE_CHUNK);
        total += step.deliveries;
        steps += 1;
        if !step.more {
            break;
        }
        assert!(steps < 10, "the purge ends");
    }
    assert_eq!(total, many);
    assert!(listed(s, &gone, &DeliveryStatus::ALL).await.is_empty());
    assert!(
        s.delivery(gone.id, ids[0]).await.expect("read").is_none(),
        "with its attempts"
    );
    assert_eq!(listed(s, &kept, &DeliveryStatus::ALL).await.len(), 1);
    assert_eq!(s.pending().await.expect("pending"), 1);
    s.close().await.expect("close");
}

pub async fn finished_deliveries_are_purged_once_old(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let ids = deliver(s, &n, [1, 2, 3, 4]).await;
    attempt(s, &n, ids[0], DeliveryStatus::Succeeded).await;
    attempt(s, &n, ids[1], DeliveryStatus::Failed).await;
    attempt(s, &n, ids[2], DeliveryStatus::Pending).await;
    let recent = s.purge_step(now_ms() - 3_600_000).await.expect("purge");
    assert_eq!(recent.deliveries, 0, "not old yet");
    let mut total = 0;
    loop {
        let step = s.purge_step(now_ms() + 3_600_000).await.expect("purge");
        total += step.deliveries;
        if !step.more {
            break;
        }
    }
    assert_eq!(total, 2, "finished ones only");
    let left: Vec<_> = listed(s, &n, &DeliveryStatus::ALL)
        .await
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(left, [ids[3], ids[2]], "pending ones stay, however old");
    assert_eq!(s.pending().await.expect("pending"), 2);
    s.close().await.expect("close");
}

pub async fn delivery_ids_are_never_reused(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let first = deliver(s, &n, [1, 2]).await;
    for id in &first {
        attempt(s, &n, *id, DeliveryStatus::Succeeded).await;
    }
    while s
        .purge_step(now_ms() + 3_600_000)
        .await
        .expect("purge")
        .more
    {}
    s.close().await.expect("close");
    let o = open(h).await;
    let s = o.store.as_ref();
    let again = deliver(s, &n, [3]).await;
    assert!(again[0] > first[1], "{again:?} after {first:?}");
    s.close().await.expect("close");
}

/// A notification made after the newest one was deleted never gets its id:
/// the deleted one's deliveries are purged by that id later, and would take
/// the new one's with them (what the soak found on SQLite).
pub async fn a_deleted_notifications_purge_spares_one_made_after_it(h: &dyn Harness) {
    let o = open(h).await;
    let s = o.store.as_ref();
    let gone = create(s, "P", "gone").await;
    deliver(s, &gone, 1..=3).await;
    s.delete_notification(&key("P"), "gone", &actor())
        .await
        .expect("delete");
    let next = create(s, "P", "next").await;
    assert_ne!(next.id, gone.id, "a deleted notification's id came back");
    let ids = deliver(s, &next, [4, 5]).await;
    while s.purge_step(0).await.expect("purge").more {}
    let left: Vec<_> = listed(s, &next, &DeliveryStatus::ALL)
        .await
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(
        left,
        [ids[1], ids[0]],
        "the new notification's deliveries stay"
    );
    assert_eq!(s.pending().await.expect("pending"), 2);
    s.close().await.expect("close");
    // Nor after a reopen, the table empty again.
    let o = open(h).await;
    let s = o.store.as_ref();
    s.delete_notification(&key("P"), "next", &actor())
        .await
        .expect("delete");
    while s.purge_step(0).await.expect("purge").more {}
    let third = create(s, "P", "third").await;
    assert!(third.id > next.id, "{:?} after {:?}", third.id, next.id);
    s.close().await.expect("close");
}

pub async fn retention_hold_is_the_oldest_pending_delivery_of_an_enabled_notification(
    h: &dyn Harness,
) {
    let o = open(h).await;
    let s = o.store.as_ref();
    assert_eq!(s.retention_hold().await.expect("hold"), None, "no position");
    move_position(s, Seq(10)).await;
    assert_eq!(
        s.retention_hold().await.expect("hold"),
        Some(Seq(11)),
        "what the dispatcher reads next"
    );
    let a = create(s, "P", "a").await;
    let ids = deliver(s, &a, [3, 5]).await;
    move_position(s, Seq(20)).await;
    assert_eq!(s.retention_hold().await.expect("hold"), Some(Seq(3)));
    attempt(s, &a, ids[0], DeliveryStatus::Succeeded).await;
    assert_eq!(s.retention_hold().await.expect("hold"), Some(Seq(5)));
    let b = create(s, "P", "b").await;
    let b_ids = deliver(s, &b, [7]).await;
    move_position(s, Seq(20)).await;
    s.update_notification(&key("P"), "a", set(|n| n.enabled = false), &actor())
        .await
        .expect("disable");
    assert_eq!(
        s.retention_hold().await.expect("hold"),
        Some(Seq(7)),
        "a disabled notification holds nothing"
    );
    attempt(s, &b, b_ids[0], DeliveryStatus::Failed).await;
    assert_eq!(
        s.retention_hold().await.expect("hold"),
        Some(Seq(21)),
        "nor does a dead letter"
    );
    s.close().await.expect("close");
}

pub async fn the_epoch_is_fixed_at_creation(h: &dyn Harness) {
    let o = open(h).await;
    let epoch = o.store.epoch().to_owned();
    assert!(!epoch.is_empty());
    assert!(
        epoch.chars().all(|c| c.is_ascii_alphanumeric()),
        "fit for a public id: {epoch}"
    );
    o.store.close().await.expect("close");
    let o = open(h).await;
    assert_eq!(o.store.epoch(), epoch);
    o.store.close().await.expect("close");
}
