//! What instances sharing a store rely on: one lead at a time, every
//! instance's workers woken by new deliveries, and claims leased to their
//! claimant. Different claimants stand for different instances; times are
//! given, so leases end without waiting.

use super::{Harness, LEASE, claim, create, deliver, deliver_keyed, open, open_with_one, result};
use crate::model::DeliveryStatus;
use crate::store::{Claim, DeliveryId, NotificationStore};
use crate::time::now_ms;
use std::sync::Arc;
use std::time::Duration;

fn ids(c: &crate::store::Claimed) -> Vec<DeliveryId> {
    c.due.iter().map(|d| d.id).collect()
}

pub async fn one_lead_at_a_time_each_with_a_later_term(h: &dyn Harness) {
    let o = open(h).await;
    let s: Arc<dyn NotificationStore> = Arc::clone(&o.store);
    let first = s.lead("a").await.expect("lead");
    assert!(!first.is_lost());
    let waiting = tokio::spawn({
        let s = Arc::clone(&s);
        async move { s.lead("b").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a second holder waits");
    let term = first.term();
    drop(first);
    let second = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the lead passes on once given up")
        .expect("task")
        .expect("lead");
    assert!(second.term() > term, "{} after {term}", second.term());
    // The latest lead writes.
    let n = create(s.as_ref(), "P", "slack").await;
    s.create_deliveries(&second, Vec::new(), cds_events_log::Seq(5))
        .await
        .expect("written under the latest lead");
    assert_eq!(
        s.position().await.expect("position"),
        Some(cds_events_log::Seq(5))
    );
    drop(second);
    assert!(deliver(s.as_ref(), &n, [6]).await.len() == 1);
    s.close().await.expect("close");
}

pub async fn the_mirror_hears_which_notifications_have_new_deliveries(h: &dyn Harness) {
    let o = open(h).await;
    let s = o.store.as_ref();
    let busy = create(s, "P", "busy").await;
    deliver(s, &busy, [1, 2]).await;
    // A shared store may tell it through the database, a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !o.mirror.told_due().contains(&busy.id) {
        assert!(std::time::Instant::now() < deadline, "never told");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.close().await.expect("close");
}

pub async fn a_claimed_delivery_is_leased_to_its_claimant_until_the_lease_ends(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let d = deliver(s, &n, [1, 2]).await;
    let t = now_ms();
    let a = s.claim(claim(&n, "a", t, 10)).await.expect("claim");
    assert_eq!(ids(&a), d);
    let b = s.claim(claim(&n, "b", t + 1, 10)).await.expect("claim");
    assert!(b.due.is_empty(), "held by a: {b:?}");
    assert_eq!(b.next_at, Some(t + LEASE), "when a's leases end");
    let again = s.claim(claim(&n, "a", t + 2, 10)).await.expect("claim");
    assert!(
        again.due.is_empty(),
        "not twice to the same claimant either"
    );
    // a died: once its leases ended, b gets the same deliveries (the same
    // webhook-id), their attempts as they were.
    let b = s.claim(claim(&n, "b", t + LEASE, 10)).await.expect("claim");
    assert_eq!(ids(&b), d);
    assert!(b.due.iter().all(|x| (x.attempts, x.tries) == (0, 0)));
    s.close().await.expect("close");
}

pub async fn a_result_or_a_release_ends_the_claimants_lease(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let d = deliver(s, &n, [1, 2]).await;
    let t = now_ms();
    let a = s.claim(claim(&n, "a", t, 10)).await.expect("claim");
    assert_eq!(ids(&a), d);
    let mut failed = result(&n, &a.due[0], DeliveryStatus::Pending, t);
    failed.claimant = "a".into();
    s.record(failed).await.expect("record");
    let b = s.claim(claim(&n, "b", t + 1, 10)).await.expect("claim");
    assert!(b.due.is_empty(), "{b:?}");
    assert_eq!(
        b.next_at,
        Some(t + LEASE),
        "the other's lease ends before the retry is due"
    );
    s.release("a", vec![d[1]]).await.expect("release");
    let b = s.claim(claim(&n, "b", t + 2, 10)).await.expect("claim");
    assert_eq!(ids(&b), [d[1]], "released: claimable at once");
    assert_eq!(b.next_at, Some(t + 60_000), "the retry");
    let mut ok = result(&n, &b.due[0], DeliveryStatus::Succeeded, t + 3);
    ok.claimant = "b".into();
    s.record(ok).await.expect("record");
    let c = s
        .claim(claim(&n, "c", t + 60_000, 10))
        .await
        .expect("claim");
    assert_eq!(ids(&c), [d[0]], "the retry, once due, by anyone");
    assert_eq!(c.due[0].attempts, 1);
    assert_eq!(c.next_at, None, "nothing else pending or held");
    // Another claimant's release or result leaves c's lease alone.
    s.release("a", vec![d[0]]).await.expect("release");
    let d2 = s
        .claim(claim(&n, "d", t + 60_001, 10))
        .await
        .expect("claim");
    assert!(d2.due.is_empty(), "{d2:?}");
    s.close().await.expect("close");
}

pub async fn a_renewal_extends_only_the_claimants_own_leases(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let d = deliver(s, &n, [1]).await;
    let t = now_ms();
    assert_eq!(ids(&s.claim(claim(&n, "a", t, 1)).await.expect("claim")), d);
    s.renew("a", d.clone(), t + 3 * LEASE).await.expect("renew");
    let b = s
        .claim(claim(&n, "b", t + 2 * LEASE, 1))
        .await
        .expect("claim");
    assert!(b.due.is_empty(), "renewed: still a's");
    assert_eq!(b.next_at, Some(t + 3 * LEASE));
    s.renew("b", d.clone(), t + 10 * LEASE)
        .await
        .expect("renew");
    let c = s
        .claim(claim(&n, "c", t + 3 * LEASE, 1))
        .await
        .expect("claim");
    assert_eq!(ids(&c), d, "b's renewal did not keep a's lease");
    s.close().await.expect("close");
}

pub async fn claims_never_lease_more_than_max_leased_across_claimants(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    deliver(s, &n, 1..=5).await;
    let t = now_ms();
    let capped = |who: &str, now: i64| Claim {
        max_leased: 2,
        ..claim(&n, who, now, 5)
    };
    let a = s.claim(capped("a", t)).await.expect("claim");
    assert_eq!(a.due.len(), 2);
    let b = s.claim(capped("b", t + 1)).await.expect("claim");
    assert!(b.due.is_empty(), "both leases taken: {b:?}");
    assert_eq!(b.next_at, Some(t + LEASE));
    let mut ok = result(&n, &a.due[0], DeliveryStatus::Succeeded, t + 2);
    ok.claimant = "a".into();
    s.record(ok).await.expect("record");
    let b = s.claim(capped("b", t + 3)).await.expect("claim");
    assert_eq!(b.due.len(), 1, "one lease free");
    assert!(
        s.claim(capped("c", t + 4))
            .await
            .expect("claim")
            .due
            .is_empty()
    );
    s.close().await.expect("close");
}

pub async fn an_ordered_notification_hands_out_its_oldest_pending_delivery_only(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let d = deliver(s, &n, [1, 2, 3]).await;
    let t = now_ms();
    let ordered = |who: &str, now: i64| Claim {
        ordered: true,
        max_leased: 1,
        ..claim(&n, who, now, 1)
    };
    let a = s.claim(ordered("a", t)).await.expect("claim");
    assert_eq!(ids(&a), [d[0]]);
    let b = s.claim(ordered("b", t + 1)).await.expect("claim");
    assert!(b.due.is_empty(), "the next waits for the first: {b:?}");
    assert_eq!(b.next_at, Some(t + LEASE));
    let mut failed = result(&n, &a.due[0], DeliveryStatus::Pending, t + 2);
    failed.claimant = "a".into();
    s.record(failed).await.expect("record");
    let b = s.claim(ordered("b", t + 3)).await.expect("claim");
    assert!(b.due.is_empty(), "a retry holds back the later ones");
    assert_eq!(b.next_at, Some(t + 2 + 60_000));
    let b = s.claim(ordered("b", t + 2 + 60_000)).await.expect("claim");
    assert_eq!(ids(&b), [d[0]], "the retry, by another claimant");
    let mut ok = result(&n, &b.due[0], DeliveryStatus::Succeeded, t + 60_010);
    ok.claimant = "b".into();
    s.record(ok).await.expect("record");
    let a = s.claim(ordered("a", t + 60_011)).await.expect("claim");
    assert_eq!(ids(&a), [d[1]], "then the next, in log order");
    s.close().await.expect("close");
}

/// A claim per key by the suite's claimant (many leases allowed).
fn per_key(n: &crate::store::NotificationRecord, now: i64) -> Claim {
    Claim {
        per_key: true,
        ..claim(n, super::SUITE, now, 10)
    }
}

pub async fn ordered_per_key_a_pending_delivery_holds_back_its_key_only(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    // Three runs interleaved: a1 b1 a2 c1 b2.
    let d = deliver_keyed(s, &n, [(1, "a"), (2, "b"), (3, "a"), (4, "c"), (5, "b")]).await;
    let (a1, b1, a2, c1, b2) = (d[0], d[1], d[2], d[3], d[4]);
    let t = now_ms();
    let first = s.claim(per_key(&n, t)).await.expect("claim");
    assert_eq!(
        ids(&first),
        [a1, b1, c1],
        "the first of each key, in parallel; a2 and b2 wait for theirs in flight"
    );
    let again = s.claim(per_key(&n, t + 1)).await.expect("claim");
    assert!(
        again.due.is_empty(),
        "in flight, each holds its key: {again:?}"
    );
    let by_id = |id| first.due.iter().find(|d| d.id == id).expect("claimed");
    // a1 fails (a retry in a minute), b1 and c1 succeed.
    s.record(result(&n, by_id(a1), DeliveryStatus::Pending, t + 2))
        .await
        .expect("record");
    for id in [b1, c1] {
        s.record(result(&n, by_id(id), DeliveryStatus::Succeeded, t + 2))
            .await
            .expect("record");
    }
    let next = s.claim(per_key(&n, t + 3)).await.expect("claim");
    assert_eq!(
        ids(&next),
        [b2],
        "a's retry holds back a2, not b's next delivery"
    );
    s.record(result(&n, &next.due[0], DeliveryStatus::Succeeded, t + 4))
        .await
        .expect("record");
    let waiting = s.claim(per_key(&n, t + 5)).await.expect("claim");
    assert!(
        waiting.due.is_empty(),
        "a2 waits for a1's retry: {waiting:?}"
    );
    let retry = s.claim(per_key(&n, t + 2 + 60_000)).await.expect("claim");
    assert_eq!(ids(&retry), [a1], "the retry first, a2 still behind it");
    s.record(result(
        &n,
        &retry.due[0],
        DeliveryStatus::Succeeded,
        t + 60_010,
    ))
    .await
    .expect("record");
    let last = s.claim(per_key(&n, t + 60_011)).await.expect("claim");
    assert_eq!(ids(&last), [a2], "then a's next, in log order");
    s.close().await.expect("close");
}

pub async fn ordered_per_key_a_dead_letter_no_longer_holds_its_key(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let d = deliver_keyed(s, &n, [(1, "a"), (2, "a"), (3, "")]).await;
    let t = now_ms();
    let first = s.claim(per_key(&n, t)).await.expect("claim");
    assert_eq!(
        ids(&first),
        [d[0], d[2]],
        "events without the field share the empty key, a key like any other"
    );
    s.record(result(&n, &first.due[0], DeliveryStatus::Failed, t + 1))
        .await
        .expect("record");
    let next = s.claim(per_key(&n, t + 2)).await.expect("claim");
    assert_eq!(
        ids(&next),
        [d[1]],
        "a failed delivery is finished: the key goes on"
    );
    s.close().await.expect("close");
}
