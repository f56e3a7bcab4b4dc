//! Deliveries: created with the position, paged for the workers, results
//! recorded (with the notification's failure state), listed, redelivered.

use super::{
    Harness, Heard, SUITE, actor, attempt, claim, create, deliver, due_one, key, listed,
    move_position, open, open_with, open_with_one, outbox_types, result, state,
};
use crate::model::DeliveryStatus;
use crate::store::{DeliveryId, NewDelivery, NotificationStore, RecordAck};
use crate::time::now_ms;
use cds_events_log::Seq;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

pub async fn deliveries_and_position_are_written_together(h: &dyn Harness) {
    let o = open(h).await;
    let s = o.store.as_ref();
    assert_eq!(s.position().await.expect("position"), None);
    let n = create(s, "P", "slack").await;
    let ids = deliver(s, &n, [3, 5, 10]).await;
    assert_eq!(ids.len(), 3);
    assert_eq!(s.position().await.expect("position"), Some(Seq(10)));
    assert_eq!(s.pending().await.expect("pending"), 3);
    // A batch that matched nothing still moves the position.
    move_position(s, Seq(12)).await;
    s.close().await.expect("close");

    let o = open(h).await;
    let s = o.store.as_ref();
    assert_eq!(s.position().await.expect("position"), Some(Seq(12)));
    assert_eq!(s.pending().await.expect("pending"), 3);
    let seqs: Vec<Seq> = listed(s, &n, &[DeliveryStatus::Pending])
        .await
        .iter()
        .map(|d| d.event_seq)
        .collect();
    assert_eq!(seqs, [Seq(10), Seq(5), Seq(3)]);
    s.close().await.expect("close");
}

/// The very first open stores where the dispatcher starts; every later
/// start keeps what the dispatcher stored since.
pub async fn the_start_position_is_stored_once(h: &dyn Harness) {
    let o = open(h).await;
    let s = o.store.as_ref();
    assert_eq!(s.start_position(Seq(5)).await.expect("start"), Seq(5));
    assert_eq!(s.position().await.expect("position"), Some(Seq(5)));
    assert_eq!(s.start_position(Seq(9)).await.expect("start"), Seq(5));
    move_position(s, Seq(7)).await;
    assert_eq!(s.start_position(Seq(20)).await.expect("start"), Seq(7));
    s.close().await.expect("close");

    let o = open(h).await;
    let s = o.store.as_ref();
    assert_eq!(s.start_position(Seq(30)).await.expect("start"), Seq(7));
    assert_eq!(s.position().await.expect("position"), Some(Seq(7)));
    s.close().await.expect("close");
}

pub async fn deliveries_of_a_deleted_notification_are_not_created(h: &dyn Harness) {
    let o = open(h).await;
    let s = o.store.as_ref();
    let kept = create(s, "P", "kept").await;
    let gone = create(s, "P", "gone").await;
    s.delete_notification(&key("P"), "gone", &actor())
        .await
        .expect("delete");
    // Matched before the deletion, written after it.
    let batch = [&kept, &gone]
        .iter()
        .map(|n| NewDelivery {
            notification: n.id,
            seq: Seq(1),
            event_id: "event-1".into(),
            order_key: String::new(),
        })
        .collect();
    let lead = s.lead(SUITE).await.expect("lead");
    s.create_deliveries(&lead, batch, Seq(1))
        .await
        .expect("batch");
    drop(lead);
    assert_eq!(s.pending().await.expect("pending"), 1);
    assert_eq!(listed(s, &kept, &DeliveryStatus::ALL).await.len(), 1);
    assert!(listed(s, &gone, &DeliveryStatus::ALL).await.is_empty());
    assert_eq!(s.position().await.expect("position"), Some(Seq(1)));
    s.close().await.expect("close");
}

pub async fn due_deliveries_are_claimed_by_due_time(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let ids = deliver(s, &n, [1, 2, 3]).await;
    // The first one failed and waits a minute.
    let t = now_ms();
    let first = due_one(s, &n, ids[0]).await;
    s.record(result(&n, &first, DeliveryStatus::Pending, t))
        .await
        .expect("record");
    let now = s.claim(claim(&n, SUITE, t, 10)).await.expect("claim");
    assert_eq!(
        now.due.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[1], ids[2]],
        "the one waiting for its retry is not due"
    );
    assert_eq!(now.next_at, Some(t + 60_000), "when it is");
    s.release(SUITE, vec![ids[1], ids[2]])
        .await
        .expect("release");
    let later = s
        .claim(claim(&n, "other", t + 60_000, 10))
        .await
        .expect("claim");
    assert_eq!(
        later.due.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[1], ids[2], ids[0]],
        "by due time, then id"
    );
    let retried = &later.due[2];
    assert_eq!(
        (retried.seq, retried.event_id.as_str()),
        (Seq(1), "event-1")
    );
    assert_eq!((retried.attempts, retried.tries), (1, 1));
    assert_eq!(retried.next_attempt_at, t + 60_000);
    s.release("other", ids.clone()).await.expect("release");
    let two = s
        .claim(claim(&n, SUITE, t + 60_000, 2))
        .await
        .expect("claim");
    assert_eq!(two.due.len(), 2, "as many as wanted");
    s.close().await.expect("close");
}

pub async fn a_recorded_success_ends_the_delivery(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let id = deliver(s, &n, [1]).await[0];
    let ack = attempt(s, &n, id, DeliveryStatus::Succeeded).await;
    assert_eq!(ack, RecordAck::default());
    let d = state(s, &n, id).await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Succeeded, 1));
    assert_eq!(d.next_attempt_at, None);
    let later = s
        .claim(claim(&n, SUITE, now_ms() + 3_600_000, 10))
        .await
        .expect("claim");
    assert!(later.due.is_empty(), "{later:?}");
    assert_eq!(s.pending().await.expect("pending"), 0);
    let (_, attempts) = s.delivery(n.id, id).await.expect("read").expect("found");
    assert_eq!(attempts.len(), 1);
    let a = &attempts[0];
    assert_eq!((a.n, a.status_code, a.latency_ms), (1, Some(200), 12));
    assert_eq!(
        (a.error.as_deref(), a.response.as_deref()),
        (None, Some("ok"))
    );
    s.close().await.expect("close");
}

pub async fn a_recorded_failure_reschedules_the_delivery(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let id = deliver(s, &n, [1]).await[0];
    let d = due_one(s, &n, id).await;
    let at = now_ms();
    s.record(result(&n, &d, DeliveryStatus::Pending, at))
        .await
        .expect("record");
    let d = state(s, &n, id).await;
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.next_attempt_at, Some(at + 60_000));
    assert_eq!(s.pending().await.expect("pending"), 1);
    let (_, attempts) = s.delivery(n.id, id).await.expect("read").expect("found");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].error.as_deref(), Some("HTTP 500"));
    assert_eq!(attempts[0].at, at);
    // Out of attempts: a dead letter.
    attempt(s, &n, id, DeliveryStatus::Failed).await;
    let d = state(s, &n, id).await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 2));
    assert_eq!(s.pending().await.expect("pending"), 0);
    s.close().await.expect("close");
}

pub async fn a_result_for_a_redelivered_delivery_is_superseded(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let id = deliver(s, &n, [1]).await[0];
    attempt(s, &n, id, DeliveryStatus::Pending).await;
    // The second attempt is in flight when the delivery is redelivered.
    let in_flight = due_one(s, &n, id).await;
    s.redeliver(n.id, id)
        .await
        .expect("redeliver")
        .expect("found");
    let ack = s
        .record(result(&n, &in_flight, DeliveryStatus::Failed, now_ms()))
        .await
        .expect("record");
    assert!(ack.superseded);
    let d = due_one(s, &n, id).await;
    assert_eq!((d.tries, d.attempts), (0, 1), "the redelivery stands");
    assert_eq!(s.pending().await.expect("pending"), 1);
    s.close().await.expect("close");
}

pub async fn a_result_for_a_deleted_notification_is_superseded(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let id = deliver(s, &n, [1]).await[0];
    let in_flight = due_one(s, &n, id).await;
    s.delete_notification(&key("P"), "slack", &actor())
        .await
        .expect("delete");
    let ack = s
        .record(result(&n, &in_flight, DeliveryStatus::Succeeded, now_ms()))
        .await
        .expect("record");
    assert!(ack.superseded);
    assert_eq!(s.pending().await.expect("pending"), 0);
    s.close().await.expect("close");
}

pub async fn a_first_failure_marks_the_notification_failing_and_a_success_clears_it(
    h: &dyn Harness,
) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let ids = deliver(s, &n, [1, 2, 3]).await;
    let first = due_one(s, &n, ids[0]).await;
    let since = now_ms();
    s.record(result(&n, &first, DeliveryStatus::Pending, since))
        .await
        .expect("record");
    // A later failure keeps the first one's time.
    attempt(s, &n, ids[1], DeliveryStatus::Pending).await;
    assert_eq!(
        o.mirror.get(n.id).and_then(|n| n.failing_since),
        Some(since)
    );
    s.close().await.expect("close");

    let o = open(h).await;
    let s = o.store.as_ref();
    assert_eq!(
        o.mirror.get(n.id).and_then(|n| n.failing_since),
        Some(since),
        "stored"
    );
    attempt(s, &n, ids[2], DeliveryStatus::Succeeded).await;
    assert_eq!(o.mirror.heard().last(), Some(&Heard::Failing(n.id, None)));
    assert_eq!(o.mirror.get(n.id).and_then(|n| n.failing_since), None);
    s.close().await.expect("close");
}

pub async fn a_failure_past_disable_after_disables_the_notification_with_its_event(
    h: &dyn Harness,
) {
    let o = open_with(h, Duration::from_secs(60)).await;
    let s = o.store.as_ref();
    let n = create(s, "P", "slack").await;
    let ids = deliver(s, &n, [1, 2, 3]).await;
    let start = now_ms();
    let d = due_one(s, &n, ids[0]).await;
    let ack = s
        .record(result(&n, &d, DeliveryStatus::Pending, start))
        .await
        .expect("record");
    assert!(!ack.disabled);
    let d = due_one(s, &n, ids[1]).await;
    let ack = s
        .record(result(&n, &d, DeliveryStatus::Pending, start + 60_000))
        .await
        .expect("record");
    assert!(ack.disabled, "failing for disable_after");
    let told = o.mirror.get(n.id).expect("told");
    assert!(!told.enabled);
    assert!(told.disabled_reason.is_some());
    assert_eq!(told.failing_since, Some(start));
    assert_eq!(
        outbox_types(s).await,
        ["NotificationCreated", "NotificationUpdated"]
    );
    let updated = &s.outbox(10).await.expect("outbox")[1];
    let e = cds_events_model::decode_stored(&updated.event).expect("decodes");
    assert_eq!(e.username, crate::model::Actor::system().username);
    let d = due_one(s, &n, ids[2]).await;
    let ack = s
        .record(result(&n, &d, DeliveryStatus::Pending, start + 120_000))
        .await
        .expect("record");
    assert!(!ack.disabled, "disabled once");
    s.close().await.expect("close");
    let o = open(h).await;
    assert_eq!(o.mirror.get(n.id), Some(told), "stored with the change");
    o.store.close().await.expect("close");
}

pub async fn a_410_gone_disables_the_notification_at_once_with_its_event(h: &dyn Harness) {
    // However long `disable_after`, a receiver that says Gone is heard.
    let o = open_with(h, Duration::from_secs(3600)).await;
    let s = o.store.as_ref();
    let n = create(s, "P", "gone").await;
    let ids = deliver(s, &n, [1, 2]).await;
    let at = now_ms();
    let d = due_one(s, &n, ids[0]).await;
    let mut gone = result(&n, &d, DeliveryStatus::Failed, at);
    gone.status_code = Some(410);
    gone.gone = true;
    let ack = s.record(gone).await.expect("record");
    assert!(ack.disabled, "410 Gone disables at once");
    let told = o.mirror.get(n.id).expect("told");
    assert!(!told.enabled);
    assert!(
        told.disabled_reason
            .as_deref()
            .is_some_and(|r| r.contains("410 Gone")),
        "{:?}",
        told.disabled_reason
    );
    assert_eq!(
        state(s, &n, ids[0]).await.status,
        DeliveryStatus::Failed,
        "no more retries of that delivery"
    );
    assert_eq!(
        outbox_types(s).await,
        ["NotificationCreated", "NotificationUpdated"]
    );
    s.close().await.expect("close");
    let o = open(h).await;
    assert_eq!(o.mirror.get(n.id), Some(told), "stored with the change");
    o.store.close().await.expect("close");
}

pub async fn listings_are_newest_first_per_status_and_page_below_a_delivery(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let other = create(s, "P", "other").await;
    let ids = deliver(s, &n, 1..=5).await;
    deliver(s, &other, [6]).await;
    attempt(s, &n, ids[1], DeliveryStatus::Succeeded).await;
    attempt(s, &n, ids[3], DeliveryStatus::Failed).await;
    let all: Vec<DeliveryId> = listed(s, &n, &DeliveryStatus::ALL)
        .await
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(all, [ids[4], ids[3], ids[2], ids[1], ids[0]]);
    let pending: Vec<DeliveryId> = listed(s, &n, &[DeliveryStatus::Pending])
        .await
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(pending, [ids[4], ids[2], ids[0]]);
    let page = s
        .list_deliveries(n.id, DeliveryStatus::ALL.to_vec(), Some(ids[3]), 2)
        .await
        .expect("page");
    assert_eq!(
        page.iter().map(|d| d.id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    s.close().await.expect("close");
}

pub async fn listing_every_status_reads_one_snapshot(h: &dyn Harness) {
    const N: usize = 200;
    let o = open(h).await;
    let s = Arc::clone(&o.store);
    let n = create(s.as_ref(), "P", "slack").await;
    let ids = deliver(s.as_ref(), &n, 1..=N as u64).await;
    // Every delivery moves from pending to succeeded while the listings run:
    // listed once each, never twice nor missing.
    let mover = {
        let (s, n) = (Arc::clone(&s), n.clone());
        tokio::spawn(async move {
            for id in ids {
                attempt(s.as_ref(), &n, id, DeliveryStatus::Succeeded).await;
            }
        })
    };
    let mut listings = 0;
    while !mover.is_finished() || listings == 0 {
        let listed = listed(s.as_ref(), &n, &DeliveryStatus::ALL).await;
        let distinct: HashSet<DeliveryId> = listed.iter().map(|d| d.id).collect();
        assert_eq!((listed.len(), distinct.len()), (N, N), "listing {listings}");
        listings += 1;
    }
    mover.await.expect("mover");
    assert!(
        listed(s.as_ref(), &n, &[DeliveryStatus::Pending])
            .await
            .is_empty()
    );
    s.close().await.expect("close");
}

pub async fn a_delivery_lists_its_attempts_in_order(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let id = deliver(s, &n, [1]).await[0];
    attempt(s, &n, id, DeliveryStatus::Pending).await;
    attempt(s, &n, id, DeliveryStatus::Pending).await;
    attempt(s, &n, id, DeliveryStatus::Succeeded).await;
    let (d, attempts) = s.delivery(n.id, id).await.expect("read").expect("found");
    assert_eq!((d.id, d.attempts), (id, 3));
    let summary: Vec<(i64, Option<u16>)> = attempts.iter().map(|a| (a.n, a.status_code)).collect();
    assert_eq!(summary, [(1, Some(500)), (2, Some(500)), (3, Some(200))]);
    let other = create(s, "P", "other").await;
    assert_eq!(
        s.delivery(other.id, id).await.expect("read"),
        None,
        "a delivery of another notification"
    );
    s.close().await.expect("close");
}

pub async fn redeliver_resets_the_attempt_budget_and_keeps_the_id(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let id = deliver(s, &n, [1]).await[0];
    attempt(s, &n, id, DeliveryStatus::Pending).await;
    attempt(s, &n, id, DeliveryStatus::Succeeded).await;
    assert_eq!(s.pending().await.expect("pending"), 0);
    let before = now_ms();
    let d = s
        .redeliver(n.id, id)
        .await
        .expect("redeliver")
        .expect("found");
    assert_eq!(
        (d.id, d.status, d.attempts),
        (id, DeliveryStatus::Pending, 2)
    );
    assert!(
        d.next_attempt_at
            .is_some_and(|t| t >= before && t <= now_ms())
    );
    let due = due_one(s, &n, id).await;
    assert_eq!((due.tries, due.attempts), (0, 2), "a fresh budget");
    assert_eq!(s.pending().await.expect("pending"), 1);
    attempt(s, &n, id, DeliveryStatus::Succeeded).await;
    let (_, attempts) = s.delivery(n.id, id).await.expect("read").expect("found");
    let summary: Vec<(i64, Option<u16>)> = attempts.iter().map(|a| (a.n, a.status_code)).collect();
    assert_eq!(
        summary,
        [(1, Some(500)), (2, Some(200)), (3, Some(200))],
        "the history is kept"
    );
    let unknown = s.redeliver(n.id, DeliveryId(id.0 + 1000)).await;
    assert_eq!(unknown.expect("redeliver"), None);
    s.close().await.expect("close");
}

pub async fn redeliver_failed_since_takes_failed_deliveries_created_since(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let ids = deliver(s, &n, [1, 2, 3]).await;
    attempt(s, &n, ids[0], DeliveryStatus::Failed).await;
    attempt(s, &n, ids[1], DeliveryStatus::Failed).await;
    attempt(s, &n, ids[2], DeliveryStatus::Succeeded).await;
    let later = now_ms() + 60_000;
    assert_eq!(
        s.redeliver_failed_since(n.id, later).await.expect("none"),
        0
    );
    assert_eq!(s.redeliver_failed_since(n.id, 0).await.expect("all"), 2);
    assert_eq!(s.pending().await.expect("pending"), 2);
    let pending: HashSet<DeliveryId> = listed(s, &n, &[DeliveryStatus::Pending])
        .await
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(pending, HashSet::from([ids[0], ids[1]]));
    assert_eq!(due_one(s, &n, ids[0]).await.tries, 0);
    s.close().await.expect("close");
}

pub async fn pending_counts_what_waits_to_be_sent(h: &dyn Harness) {
    let o = open(h).await;
    let s: &dyn NotificationStore = o.store.as_ref();
    let n = create(s, "P", "slack").await;
    let other = create(s, "P", "other").await;
    let ids = deliver(s, &n, [1, 2, 3]).await;
    deliver(s, &other, [4, 5]).await;
    assert_eq!(s.pending().await.expect("pending"), 5);
    attempt(s, &n, ids[0], DeliveryStatus::Succeeded).await;
    attempt(s, &n, ids[1], DeliveryStatus::Pending).await;
    attempt(s, &n, ids[2], DeliveryStatus::Cancelled).await;
    assert_eq!(s.pending().await.expect("pending"), 3);
    s.delete_notification(&key("P"), "other", &actor())
        .await
        .expect("delete");
    assert_eq!(s.pending().await.expect("pending"), 1, "at once");
    s.close().await.expect("close");
    let o = open(h).await;
    assert_eq!(
        o.store.pending().await.expect("pending"),
        1,
        "after a reopen"
    );
    o.store.close().await.expect("close");
}
