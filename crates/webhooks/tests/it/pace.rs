//! Deliveries beside ingest: how many per second (ignored by default), and
//! "ingest first" — paced while the machine is saturated, not when told not
//! to.

use crate::support::*;
use cds_events_log::NewEvent;
use cds_events_model::EventType;
use cds_events_webhooks::{DeliveryStatus, WebhooksConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Throughput: 50 notifications to one fast loopback receiver, every
/// delivery recorded as succeeded. Run with
/// `cargo test -p cds-events-webhooks --release --test it -- --ignored throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn throughput_50_endpoints() {
    const ENDPOINTS: usize = 50;
    const EVENTS: usize = 400;
    let w = World::start(config()).await;
    let rx = Receiver::ok().await;
    for i in 0..ENDPOINTS {
        w.create("PROJ", &format!("n{i}"), &format!("{}/{i}", rx.url))
            .await;
    }
    let started = std::time::Instant::now();
    for _ in 0..EVENTS / 100 {
        w.publish("PROJ", 100).await;
    }
    let total = ENDPOINTS * EVENTS;
    rx.wait_for(total).await;
    let sent = started.elapsed();
    eventually("every delivery recorded", || async {
        for i in 0..ENDPOINTS {
            let p = w
                .hooks
                .deliveries(
                    &key("PROJ"),
                    &format!("n{i}"),
                    Some(DeliveryStatus::Succeeded),
                    None,
                    1000,
                )
                .await
                .ok()?;
            if p.deliveries.len() < EVENTS {
                return None;
            }
        }
        Some(())
    })
    .await;
    let recorded = started.elapsed();
    println!(
        "{total} deliveries: all received in {sent:?} ({:.0}/s), all recorded in {recorded:?} ({:.0}/s)",
        total as f64 / sent.as_secs_f64(),
        total as f64 / recorded.as_secs_f64()
    );
    w.stop().await;
}

/// Publishes 20 events every 50 ms to a notification whose receiver holds
/// its first calls, releases it after a second, and counts the calls that
/// arrive in the third second after the release (the pace has settled)
/// while publishing goes on; then stops publishing and waits for every
/// delivery. Returns that count.
async fn calls_in_a_second_of_ingest(config: WebhooksConfig) -> usize {
    let w = World::start(WebhooksConfig {
        max_in_flight_per_endpoint: 2,
        ..config
    })
    .await;
    let (rx, release) = Receiver::held_until_released().await;
    w.create("PROJ", "n", &rx.url).await;
    let publishing = CancellationToken::new();
    let publisher = {
        let log = Arc::clone(&w.log);
        let publishing = publishing.clone();
        tokio::spawn(async move {
            let mut published = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !publishing.is_cancelled() {
                tick.tick().await;
                let events = (0..20)
                    .map(|i| {
                        NewEvent::from(cds_events_log::conformance::event(
                            EventType::RunJobEnded,
                            "PROJ",
                            i + 1,
                        ))
                    })
                    .collect();
                log.append(events).await.expect("append");
                published += 20;
            }
            published
        })
    };
    // The times are the scenario: a second of backlog, two to settle, and
    // the one-second window the rate is counted in.
    tokio::time::sleep(Duration::from_secs(1)).await;
    release.heal();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rx.requests().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = rx.requests().len() - before;
    publishing.cancel();
    let published = publisher.await.expect("publisher");
    rx.wait_for(published).await;
    w.stop().await;
    println!("{calls} calls in the third second after the release; {published} delivered");
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_yield_to_ingest_when_the_machine_is_saturated() {
    // `yield_cpu = 0` takes any machine for a saturated one: while events
    // come in, the engine yields to ingest and settles at 20 attempts a
    // second, whatever the backlog; once publishing stops, everything is
    // delivered.
    let calls = calls_in_a_second_of_ingest(WebhooksConfig {
        yield_cpu: 0.0,
        yield_rate: 20,
        ..config()
    })
    .await;
    assert!(calls <= 30, "{calls} calls in one second at 20/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_do_not_yield_when_told_not_to() {
    // The same with yielding off: the 400 events/s coming in are sent as
    // fast as they come.
    let calls = calls_in_a_second_of_ingest(WebhooksConfig {
        yield_to_ingest: false,
        yield_cpu: 0.0,
        yield_rate: 20,
        ..config()
    })
    .await;
    assert!(calls >= 200, "only {calls} calls in one second");
}
