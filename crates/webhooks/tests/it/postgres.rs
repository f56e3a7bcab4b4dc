//! The whole engine over the PostgreSQL store: a webhook delivered end to
//! end, the configured key that PostgreSQL requires, and a restart of
//! PostgreSQL (on a private server) while an attempt is answered.

use crate::support::*;
use cds_events_log::EventLog;
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_store::pg::PgOptions;
use cds_events_store::pg::testing::{TempCluster, TempDatabase};
use cds_events_webhooks::signing::verify;
use cds_events_webhooks::{DeliveryStatus, Webhooks, WebhooksConfig, WebhooksError};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_delivered_and_recorded_over_postgres() {
    let w = World::start_postgres(config()).await;
    let rx = Receiver::ok().await;
    let secret = w.create("PROJ", "n", &rx.url).await;
    let ids = w.publish("PROJ", 1).await;
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].event_id(), ids[0]);
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        verify(
            &secret,
            got[0].webhook_id(),
            got[0].header("webhook-timestamp"),
            got[0].header("webhook-signature"),
            got[0].body.as_bytes(),
            now,
            300
        ),
        Ok(()),
        "signed with the secret sealed in PostgreSQL"
    );
    let delivered = eventually("the delivery recorded as succeeded", || async {
        let page = w
            .hooks
            .deliveries(&key("PROJ"), "n", Some(DeliveryStatus::Succeeded), None, 10)
            .await
            .ok()?;
        page.deliveries.into_iter().next()
    })
    .await;
    assert_eq!(delivered.id, got[0].webhook_id());
    w.settled().await;
    assert_eq!(w.hooks.pending().await.expect("pending"), 0);
    // The notification's creation went through the outbox to the log.
    let logged = w
        .log
        .read_after(cds_events_log::Seq(0), 1000)
        .await
        .expect("read");
    assert!(
        logged
            .iter()
            .any(|e| e.json.contains(r#""type":"NotificationCreated""#)),
        "NotificationCreated in the log"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_a_configured_key_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> =
        Arc::new(SqliteLog::open(dir.path(), SqliteOptions::default()).expect("log"));
    let db = TempDatabase::create().await.expect("test database");
    let opened = Webhooks::open_postgres(&db.options(), "it", log, config()).await;
    match opened {
        Err(WebhooksError::Key(why)) => assert!(why.contains("webhooks.key"), "{why}"),
        other => panic!("a missing key must be refused, got {other:?}"),
    }
}

/// An answered attempt whose result cannot be recorded because PostgreSQL
/// is restarting is recorded once it is back, within the delivery's lease:
/// the endpoint is not called twice for one restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_arrives_while_postgres_restarts_is_recorded_once_it_is_back() {
    let cluster = tokio::task::spawn_blocking(TempCluster::start)
        .await
        .expect("blocking")
        .expect("a test cluster");
    let cluster = Arc::new(cluster);
    let options = PgOptions {
        pool_size: 4,
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::new(cluster.url())
    };
    let config = WebhooksConfig {
        timeout: Duration::from_secs(20),
        lease: Duration::from_secs(20),
        ..config()
    };
    let w = World::start_postgres_at(&options, config).await;
    let (rx, answer) = Receiver::held_until_released().await;
    w.create("PROJ", "n", &rx.url).await;
    let ids = w.publish("PROJ", 1).await;
    rx.wait_for(1).await;
    // The endpoint answers while the database is down.
    let c = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || c.stop())
        .await
        .expect("blocking")
        .expect("stop");
    answer.heal();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c = Arc::clone(&cluster);
    tokio::task::spawn_blocking(move || c.start_again())
        .await
        .expect("blocking")
        .expect("start");
    let delivered = eventually("the delivery recorded as succeeded", || async {
        let page = w
            .hooks
            .deliveries(&key("PROJ"), "n", Some(DeliveryStatus::Succeeded), None, 10)
            .await
            .ok()?;
        page.deliveries.into_iter().next()
    })
    .await;
    let got = rx.requests();
    assert_eq!(got.len(), 1, "sent once: {got:?}");
    assert_eq!(got[0].event_id(), ids[0]);
    assert_eq!(delivered.id, got[0].webhook_id());
    w.stop().await;
}
