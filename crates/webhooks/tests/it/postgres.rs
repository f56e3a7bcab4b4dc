//! The whole engine over the PostgreSQL store: a webhook delivered end to
//! end, and the configured key that PostgreSQL requires.

use crate::support::*;
use cds_events_log::EventLog;
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_store::pg::testing::TempDatabase;
use cds_events_webhooks::signing::verify;
use cds_events_webhooks::{DeliveryStatus, Webhooks, WebhooksError};
use std::sync::Arc;

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
            .deliveries("PROJ", "n", Some(DeliveryStatus::Succeeded), None, 10)
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
