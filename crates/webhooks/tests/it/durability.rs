//! Deliveries across restarts and retention: pending ones resume, history
//! is not delivered, pending deliveries hold the log's retention (a
//! disabled notification holds nothing), and finished rows are purged.

use crate::support::*;
use cds_events_log::EventLog;
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_model::EventType;
use cds_events_webhooks::Webhooks;
use cds_events_webhooks::{DeliveryStatus, WebhooksConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_resume_after_a_restart() {
    let w = World::start(WebhooksConfig {
        retry_schedule: schedule(&[0, 300, 300]),
        ..config()
    })
    .await;
    let (rx, fail) = Receiver::failing_until_healed(500).await;
    w.create("PROJ", "n", &rx.url).await;
    w.publish("PROJ", 1).await;
    rx.wait_for(1).await;
    let (dir, log, config) = w.stop().await;
    // Published while the service is down: delivered after the restart.
    let _ = log
        .append(vec![cds_events_log::NewEvent::from(
            cds_events_log::conformance::event(EventType::RunJobEnded, "PROJ", 9),
        )])
        .await
        .expect("append");
    fail.heal();
    let w = World::open(dir, log, config).await;
    eventually("two succeeded deliveries", || async {
        let p = w
            .hooks
            .deliveries(&key("PROJ"), "n", Some(DeliveryStatus::Succeeded), None, 10)
            .await
            .ok()?;
        (p.deliveries.len() == 2).then_some(())
    })
    .await;
    let got = rx.requests();
    assert_eq!(got.len(), 3, "one failure, then one success each");
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        *per_id.entry(r.webhook_id()).or_default() += 1;
    }
    assert_eq!(
        per_id[got[0].webhook_id()],
        2,
        "the failed one is sent again"
    );
    assert_eq!(per_id.len(), 2);
    w.stop().await;
}

/// The very first open stores where the dispatcher starts (the log's head
/// then): an event appended between the open and the run, as a server
/// accepts ingest before its webhooks task first runs, is delivered, not
/// taken for history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_appended_between_the_first_open_and_the_run_is_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> =
        Arc::new(SqliteLog::open(dir.path(), SqliteOptions::default()).expect("log"));
    // History: before the open, never delivered.
    append(&log, 1).await;
    let hooks = Webhooks::open(dir.path(), Arc::clone(&log), config())
        .await
        .expect("open");
    let rx = Receiver::ok().await;
    hooks
        .create(
            &key("PROJ"),
            input("n", &rx.url, &["^RunJobEnded$"]),
            &actor(),
        )
        .await
        .expect("create");
    let after_open = append(&log, 2).await;
    let w = World::running(dir, None, log, hooks, config()).await;
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].event_id(), after_open);
    w.settled().await;
    assert_eq!(
        rx.requests().len(),
        1,
        "the event from before the open stays history"
    );
    w.stop().await;
}

/// Appends one RunJobEnded of PROJ with number `n`; returns its id.
async fn append(log: &Arc<dyn EventLog>, n: i64) -> String {
    let e = cds_events_log::conformance::event(EventType::RunJobEnded, "PROJ", n);
    let id = e.id.clone();
    log.append(vec![cds_events_log::NewEvent::from(e)])
        .await
        .expect("append");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_before_any_notification_are_not_delivered_after_a_restart() {
    // No notification: the dispatcher follows the head without reading, and
    // its position is still stored (at the latest when it stops).
    let w = World::start(config()).await;
    w.publish("PROJ", 5).await;
    let w = w.restart().await;
    let rx = Receiver::ok().await;
    w.create("PROJ", "n", &rx.url).await;
    let ids = w.publish("PROJ", 1).await;
    let got = rx.wait_for(1).await;
    w.settled().await;
    assert_eq!(rx.requests().len(), 1, "only the event after the creation");
    assert_eq!(got[0].event_id(), ids[0]);
    w.stop().await;
}

/// One attempt at once, the next a minute later: a failed delivery stays
/// pending for the whole test.
fn retry_in_a_minute() -> WebhooksConfig {
    WebhooksConfig {
        retry_schedule: schedule(&[0, 60_000]),
        ..config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_hold_the_log_retention() {
    use cds_events_log::{Retention, Seq};
    let w = World::start(retry_in_a_minute()).await;
    let (rx, fail) = Receiver::failing_until_healed(503).await;
    // Two events of another project first (1, 2), then the notification's
    // own NotificationCreated (3): nobody needs them. Its deliveries are
    // for 4 and 5.
    w.publish("OTHER", 2).await;
    w.create("PROJ", "n", &rx.url).await;
    w.publish("PROJ", 2).await;
    rx.wait_for(2).await;
    let hold = eventually("the dispatcher past every event", || async {
        let h = w.hooks.retention_hold().await.expect("hold")?;
        (h == Seq(4)).then_some(h)
    })
    .await;
    // Keep nothing, except what the hold says.
    let keep_none = Retention {
        max_events: Some(0),
        hold_from: Some(hold),
        ..Retention::default()
    };
    while w.log.purge(keep_none, 10).await.expect("purge") > 0 {}
    assert_eq!(w.log.stats().await.expect("stats").oldest_seq, Seq(4));
    // Redelivered: its event is still there to send.
    fail.heal();
    let failed_or_pending = w
        .hooks
        .deliveries(&key("PROJ"), "n", None, None, 10)
        .await
        .expect("list");
    for d in &failed_or_pending.deliveries {
        w.hooks
            .redeliver(&key("PROJ"), "n", &d.id)
            .await
            .expect("redeliver");
    }
    eventually("both delivered", || async {
        let p = w
            .hooks
            .deliveries(&key("PROJ"), "n", Some(DeliveryStatus::Succeeded), None, 10)
            .await
            .ok()?;
        (p.deliveries.len() == 2).then_some(())
    })
    .await;
    // Nothing pending: the hold is the dispatcher's position, past the head.
    assert_eq!(w.hooks.retention_hold().await.expect("hold"), Some(Seq(6)));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_notification_holds_nothing() {
    use cds_events_log::Seq;
    let w = World::start(retry_in_a_minute()).await;
    let rx = Receiver::scripted(|_, _| Reply::Status(503)).await;
    w.create("PROJ", "n", &rx.url).await;
    w.publish("PROJ", 1).await;
    rx.wait_for(1).await;
    eventually("held by the pending delivery", || async {
        // 1 is NotificationCreated, 2 the event.
        (w.hooks.retention_hold().await.ok()? == Some(Seq(2))).then_some(())
    })
    .await;
    w.hooks
        .set_enabled(&key("PROJ"), "n", false, &actor())
        .await
        .expect("disable");
    // The NotificationUpdated event is appended too: the position moves on.
    eventually("released", || async {
        let h = w.hooks.retention_hold().await.ok()??;
        (h > Seq(2)).then_some(())
    })
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_deletes_finished_and_deleted_notifications_deliveries() {
    let w = World::start(WebhooksConfig {
        keep_deliveries: Duration::ZERO,
        ..retry_in_a_minute()
    })
    .await;
    let ok = Receiver::ok().await;
    let failing = Receiver::scripted(|_, _| Reply::Status(503)).await;
    w.create("PROJ", "ok", &ok.url).await;
    w.create("PROJ", "failing", &failing.url).await;
    w.create("GONE", "gone", &failing.url).await;
    w.publish("PROJ", 2).await;
    w.publish("GONE", 3).await;
    ok.wait_for(2).await;
    failing.wait_for(5).await;
    let db = w.dir.path().join(cds_events_webhooks::DB_FILE);
    let rows = |sql: &'static str| {
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .expect("count")
    };
    eventually(
        "2 succeeded and 5 pending after a first failure",
        || async {
            (rows("SELECT COUNT(*) FROM deliveries WHERE status = 'succeeded'") == 2
                && rows("SELECT COUNT(*) FROM attempts") == 5)
                .then_some(())
        },
    )
    .await;
    // A deleted notification's deliveries wait for the purge, and are no
    // longer pending, even after a restart.
    assert_eq!(w.hooks.pending().await.expect("pending"), 5);
    w.hooks
        .delete(&key("GONE"), "gone", &actor())
        .await
        .expect("delete");
    assert_eq!(w.hooks.pending().await.expect("pending"), 2);
    let w = w.restart().await;
    assert_eq!(w.hooks.pending().await.expect("pending"), 2);
    assert_eq!(rows("SELECT COUNT(*) FROM deliveries"), 7);
    assert_eq!(w.hooks.purge().await.expect("purge"), 2 + 3);
    // Left: the pending ones of the notification that still exists.
    assert_eq!(rows("SELECT COUNT(*) FROM deliveries"), 2);
    assert_eq!(
        rows("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'"),
        2
    );
    assert_eq!(rows("SELECT COUNT(*) FROM attempts"), 2);
    assert_eq!(rows("SELECT COUNT(*) FROM purge_queue"), 0);
    assert_eq!(w.hooks.purge().await.expect("purge again"), 0);
    w.stop().await;
}
