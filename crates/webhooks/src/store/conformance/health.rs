//! A notification's health: its attempts since a time and its deliveries
//! pending and failed now.

use super::{Harness, create, deliver, due_one, open_with_one, result};
use crate::model::DeliveryStatus;
use crate::store::{DeliveryId, Health, NotificationRecord, NotificationStore};
use crate::time::now_ms;

const HOUR: i64 = 3_600_000;

/// Records the next attempt of `id`, made at `at` and lasting `latency_ms`.
async fn timed(
    s: &dyn NotificationStore,
    n: &NotificationRecord,
    id: DeliveryId,
    status: DeliveryStatus,
    at: i64,
    latency_ms: i64,
) {
    let d = due_one(s, n, id).await;
    let mut r = result(n, &d, status, at);
    r.latency_ms = latency_ms;
    s.record(r).await.expect("record");
}

pub async fn health_counts_the_attempts_since_a_time_and_the_deliveries_pending_and_failed(
    h: &dyn Harness,
) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let now = now_ms();
    let since = now - 24 * HOUR;
    let old = now - 25 * HOUR;
    assert_eq!(
        s.health(n.id, since).await.expect("health"),
        Health::default(),
        "nothing yet"
    );
    let ids = deliver(s, &n, 1..=6).await;
    use DeliveryStatus::{Failed, Pending, Succeeded};
    // A failure before the window, then a success in it.
    timed(s, &n, ids[0], Pending, old, 999).await;
    timed(s, &n, ids[0], Succeeded, now, 10).await;
    timed(s, &n, ids[1], Succeeded, now, 20).await;
    // A failure to be retried (still pending), one that gave up (failed).
    timed(s, &n, ids[2], Pending, now, 30).await;
    timed(s, &n, ids[3], Failed, now, 40).await;
    // A success before the window.
    timed(s, &n, ids[4], Succeeded, old, 5000).await;
    // A success then a redelivery: the success is still counted.
    timed(s, &n, ids[5], Succeeded, now, 50).await;
    s.redeliver(n.id, ids[5]).await.expect("redeliver");
    let got = s.health(n.id, since).await.expect("health");
    assert_eq!(
        got,
        Health {
            attempts: 5,
            succeeded: 3,
            p95_latency_ms: Some(50),
            pending: 2,
            failed: 1,
        }
    );
    // Another notification's attempts are its own; its percentile is the
    // nearest rank (the 19th of 20), not the slowest.
    let other = create(s, "P", "other").await;
    let theirs = deliver(s, &other, 10..30).await;
    for (i, id) in theirs.iter().enumerate() {
        timed(s, &other, *id, Succeeded, now, i as i64 + 1).await;
    }
    assert_eq!(
        s.health(other.id, since).await.expect("health"),
        Health {
            attempts: 20,
            succeeded: 20,
            p95_latency_ms: Some(19),
            pending: 0,
            failed: 0,
        }
    );
    assert_eq!(s.health(n.id, since).await.expect("health"), got);
    // An earlier start takes the older attempts in too.
    let all = s.health(n.id, old).await.expect("health");
    assert_eq!((all.attempts, all.succeeded), (7, 4));
    s.close().await.expect("close");
}
