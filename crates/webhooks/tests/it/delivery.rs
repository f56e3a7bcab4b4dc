use crate::support::*;
use cds_events_model::EventType;
use cds_events_webhooks::signing::verify;
use cds_events_webhooks::{DeliveryStatus, WebhooksConfig};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The one delivery of notification `n`, once it has `status`.
async fn delivery_with_status(
    w: &World,
    n: &str,
    status: DeliveryStatus,
) -> cds_events_webhooks::DeliveryOut {
    eventually(&format!("a {status} delivery"), || async {
        let page = w
            .hooks
            .deliveries(&key("PROJ"), n, Some(status), None, 10)
            .await
            .ok()?;
        page.deliveries.into_iter().next()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_is_the_stored_event_and_the_signature_verifies() {
    let w = World::start(config()).await;
    let rx = Receiver::ok().await;
    let secret = w.create("PROJ", "n", &rx.url).await;
    let ids = w.publish("PROJ", 3).await;
    let got = rx.wait_for(3).await;
    for r in &got {
        let stored = w
            .log
            .get(&r.event_id())
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(
            r.body, &*stored.json,
            "the body is the log's JSON, byte for byte"
        );
        assert_eq!(r.header("content-type"), "application/json");
        assert!(r.webhook_id().starts_with("msg_"));
        assert_eq!(
            verify(
                &secret,
                r.webhook_id(),
                r.header("webhook-timestamp"),
                r.header("webhook-signature"),
                r.body.as_bytes(),
                now_secs(),
                300
            ),
            Ok(())
        );
    }
    let mut got_ids: Vec<String> = got.iter().map(|r| r.event_id()).collect();
    got_ids.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(got_ids, ids);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_filter_matches_every_event_of_the_project_and_no_other() {
    let w = World::start(config()).await;
    let rx = Receiver::ok().await;
    w.create_with("PROJ", input("all", &rx.url, &[])).await;
    w.publish_types(
        "OTHER",
        &[EventType::RunJobEnded, EventType::ProjectCreated],
    )
    .await;
    w.publish_types("PROJ", &[EventType::RunCrafted, EventType::AnalysisDone])
        .await;
    // Its own NotificationCreated event is an event of the project too.
    let got = rx.wait_for(3).await;
    w.settled().await;
    let mut types: Vec<String> = rx.requests().iter().map(|r| r.event_type()).collect();
    types.sort();
    assert_eq!(types, ["AnalysisDone", "NotificationCreated", "RunCrafted"]);
    assert!(got.iter().all(|r| r.json()["project_key"] == "PROJ"));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_match_event_types_unanchored() {
    let w = World::start(config()).await;
    let rx = Receiver::ok().await;
    let mut n = input("n", &rx.url, &["^RunJob"]);
    n.filters.insert(
        "second".into(),
        cds_events_webhooks::NotificationFilter {
            event: vec!["Ended".into()],
        },
    );
    w.create_with("PROJ", n).await;
    w.publish_types(
        "PROJ",
        &[
            EventType::RunJobEnqueued,
            EventType::RunCrafted,
            EventType::RunEnded,
            EventType::AnalysisStart,
            EventType::RunJobEnded,
        ],
    )
    .await;
    rx.wait_for(3).await;
    w.settled().await;
    let mut types: Vec<String> = rx.requests().iter().map(|r| r.event_type()).collect();
    types.sort();
    assert_eq!(types, ["RunEnded", "RunJobEnded", "RunJobEnqueued"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_failures_then_success_is_four_requests_with_one_webhook_id() {
    let w = World::start(WebhooksConfig {
        retry_schedule: schedule(&[0, 20, 40, 60, 80]),
        ..config()
    })
    .await;
    let rx = Receiver::scripted(|n, _| Reply::Status(if n < 3 { 500 } else { 200 })).await;
    w.create("PROJ", "n", &rx.url).await;
    w.publish("PROJ", 1).await;
    let got = rx.wait_for(4).await;
    let d = delivery_with_status(&w, "n", DeliveryStatus::Succeeded).await;
    w.settled().await;
    assert_eq!(rx.requests().len(), 4);
    assert!(got.iter().all(|r| r.webhook_id() == d.id));
    assert_eq!(d.attempts, 4);
    let detail = w
        .hooks
        .delivery(&key("PROJ"), "n", &d.id)
        .await
        .expect("detail");
    let codes: Vec<Option<u16>> = detail.attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(500), Some(500), Some(200)]);
    assert_eq!(
        detail.attempts[0].error.as_deref(),
        Some("HTTP 500 Internal Server Error")
    );
    assert_eq!(
        detail.attempts[3].response.as_deref(),
        Some("receiver says hi")
    );
    // Success clears the failure state.
    assert_eq!(
        w.hooks
            .get(&key("PROJ"), "n")
            .await
            .expect("get")
            .failing_since,
        None
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_attempts_is_a_listable_dead_letter() {
    let w = World::start(config()).await;
    let rx = Receiver::scripted(|_, _| Reply::Status(502)).await;
    w.create("PROJ", "n", &rx.url).await;
    w.publish("PROJ", 1).await;
    let d = delivery_with_status(&w, "n", DeliveryStatus::Failed).await;
    assert_eq!(d.attempts, 3);
    assert_eq!(rx.requests().len(), 3);
    assert!(
        w.hooks
            .get(&key("PROJ"), "n")
            .await
            .expect("get")
            .failing_since
            .is_some()
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_stops_at_once() {
    let w = World::start(config()).await;
    let rx = Receiver::scripted(|_, _| Reply::Status(410)).await;
    w.create("PROJ", "n", &rx.url).await;
    w.publish("PROJ", 1).await;
    let d = delivery_with_status(&w, "n", DeliveryStatus::Failed).await;
    w.settled().await;
    assert_eq!(d.attempts, 1);
    assert_eq!(rx.requests().len(), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_replaces_the_schedule_delay() {
    let w = World::start(config()).await;
    let rx = Receiver::scripted(|n, _| {
        if n == 0 {
            Reply::WithHeader(503, "retry-after", "1".into())
        } else {
            Reply::Status(200)
        }
    })
    .await;
    w.create("PROJ", "n", &rx.url).await;
    w.publish("PROJ", 1).await;
    let got = rx.wait_for(2).await;
    let gap = got[1].at - got[0].at;
    // The schedule says 50 ms; the receiver asked for 1 s.
    assert!(gap >= Duration::from_millis(950), "gap {gap:?}");
    assert!(gap < Duration::from_secs(3), "gap {gap:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_failure_disables_and_enabling_resumes() {
    let w = World::start(WebhooksConfig {
        disable_after: Duration::from_millis(1),
        retry_schedule: schedule(&[0, 50, 50, 50]),
        ..config()
    })
    .await;
    let (rx, healthy) = Receiver::failing_until_healed(500).await;
    w.create("PROJ", "n", &rx.url).await;
    w.publish("PROJ", 1).await;
    let off = eventually("the notification disabled", || async {
        let n = w.hooks.get(&key("PROJ"), "n").await.ok()?;
        (!n.enabled).then_some(n)
    })
    .await;
    assert!(
        off.disabled_reason
            .as_deref()
            .unwrap_or("")
            .contains("failing")
    );
    assert!(off.failing_since.is_some());
    // The service reported on itself.
    let updated = eventually("a NotificationUpdated event", || async {
        let page = w
            .log
            .query(cds_events_log::Query {
                filter: cds_events_model::EventFilter {
                    types: Some([EventType::NotificationUpdated].into()),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await
            .ok()?;
        page.events.into_iter().next()
    })
    .await;
    let e: serde_json::Value = serde_json::from_str(&updated.json).expect("json");
    assert_eq!(e["payload"]["enabled"], false);
    assert_eq!(e["username"], "cds-events");

    // While disabled the delivery waits. No signal says its worker has
    // parked: give a retry (due 50 ms on) the time to go out wrongly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rx.requests().len();
    assert_eq!(before, 2);
    let d = delivery_with_status(&w, "n", DeliveryStatus::Pending).await;
    healthy.heal();
    let on = w
        .hooks
        .set_enabled(&key("PROJ"), "n", true, &actor())
        .await
        .expect("enable");
    assert!(on.enabled && on.disabled_reason.is_none() && on.failing_since.is_none());
    let done = delivery_with_status(&w, "n", DeliveryStatus::Succeeded).await;
    assert_eq!(done.id, d.id);
    assert_eq!(rx.requests().len(), 3);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_made_while_an_attempt_is_in_flight_is_not_undone_by_its_result() {
    let w = World::start(WebhooksConfig {
        // Two attempts: the second is the last, and hangs until the timeout.
        retry_schedule: schedule(&[0, 0]),
        timeout: Duration::from_millis(800),
        ..config()
    })
    .await;
    let rx = Receiver::scripted(|n, _| match n {
        0 => Reply::Status(500),
        1 => Reply::Hang,
        _ => Reply::Status(200),
    })
    .await;
    w.create("PROJ", "n", &rx.url).await;
    w.publish_types("PROJ", &[EventType::RunJobEnded]).await;
    // The last attempt is in flight: redeliver now.
    let got = rx.wait_for(2).await;
    let page = w
        .hooks
        .deliveries(&key("PROJ"), "n", None, None, 10)
        .await
        .expect("deliveries");
    let d = page
        .deliveries
        .iter()
        .find(|d| d.id == got[1].webhook_id())
        .expect("the delivery in flight");
    w.hooks
        .redeliver(&key("PROJ"), "n", &d.id)
        .await
        .expect("redeliver");
    // Its timeout must not turn the delivery into a dead letter: it is sent
    // again and succeeds.
    let ok = delivery_with_status(&w, "n", DeliveryStatus::Succeeded).await;
    assert_eq!(ok.id, d.id);
    let got = rx.wait_for(3).await;
    assert_eq!(got[2].webhook_id(), d.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_sends_again_with_the_same_id_and_keeps_history() {
    let w = World::start(WebhooksConfig {
        retry_schedule: schedule(&[0]),
        ..config()
    })
    .await;
    let rx = Receiver::scripted(|n, _| Reply::Status(if n == 0 { 500 } else { 200 })).await;
    w.create("PROJ", "n", &rx.url).await;
    w.publish("PROJ", 1).await;
    let failed = delivery_with_status(&w, "n", DeliveryStatus::Failed).await;
    let again = w
        .hooks
        .redeliver(&key("PROJ"), "n", &failed.id)
        .await
        .expect("redeliver");
    assert_eq!(again.status, DeliveryStatus::Pending);
    let ok = delivery_with_status(&w, "n", DeliveryStatus::Succeeded).await;
    assert_eq!(ok.id, failed.id);
    let got = rx.wait_for(2).await;
    assert_eq!(got[0].webhook_id(), got[1].webhook_id());
    let detail = w
        .hooks
        .delivery(&key("PROJ"), "n", &ok.id)
        .await
        .expect("detail");
    assert_eq!(detail.attempts.len(), 2);
    assert_eq!(detail.delivery.attempts, 2);

    // A succeeded delivery sent again keeps its earlier success in history
    // (a success is kept in the delivery's row until then).
    let first_ok_at = detail.attempts[1].at;
    w.hooks
        .redeliver(&key("PROJ"), "n", &ok.id)
        .await
        .expect("redeliver a success");
    rx.wait_for(3).await;
    let detail = eventually("three attempts", || async {
        let d = w.hooks.delivery(&key("PROJ"), "n", &ok.id).await.ok()?;
        (d.delivery.status == DeliveryStatus::Succeeded && d.attempts.len() == 3).then_some(d)
    })
    .await;
    let codes: Vec<Option<u16>> = detail.attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [Some(500), Some(200), Some(200)]);
    assert_eq!(detail.attempts[1].at, first_ok_at);
    assert_eq!(
        detail.attempts.iter().map(|a| a.n).collect::<Vec<_>>(),
        [1, 2, 3]
    );

    // Bulk: every failed delivery since a time.
    let since = chrono::Utc::now();
    let rx2 = Receiver::scripted(|n, _| Reply::Status(if n < 2 { 500 } else { 200 })).await;
    w.create("PROJ", "m", &rx2.url).await;
    w.publish("PROJ", 2).await;
    eventually("two failed deliveries", || async {
        let p = w
            .hooks
            .deliveries(&key("PROJ"), "m", Some(DeliveryStatus::Failed), None, 10)
            .await
            .ok()?;
        (p.deliveries.len() == 2).then_some(())
    })
    .await;
    let n = w
        .hooks
        .redeliver_failed_since(&key("PROJ"), "m", since)
        .await
        .expect("bulk");
    assert_eq!(n, 2);
    eventually("two succeeded deliveries", || async {
        let p = w
            .hooks
            .deliveries(&key("PROJ"), "m", Some(DeliveryStatus::Succeeded), None, 10)
            .await
            .ok()?;
        (p.deliveries.len() == 2).then_some(())
    })
    .await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_page_newest_first() {
    let w = World::start(config()).await;
    let rx = Receiver::ok().await;
    w.create("PROJ", "n", &rx.url).await;
    w.publish("PROJ", 5).await;
    rx.wait_for(5).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = w
            .hooks
            .deliveries(&key("PROJ"), "n", None, cursor.as_deref(), 2)
            .await
            .expect("page");
        assert!(page.deliveries.len() <= 2);
        seen.extend(page.deliveries.iter().map(|d| d.event_seq));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|p| p[0] > p[1]), "{seen:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_rotation_signs_with_both_secrets_during_the_overlap() {
    let w = World::start(config()).await;
    let rx = Receiver::ok().await;
    let old = w.create("PROJ", "n", &rx.url).await;
    let rotated = w
        .hooks
        .rotate_secret(&key("PROJ"), "n", &actor())
        .await
        .expect("rotate");
    assert_ne!(rotated.secret, old);
    let prev = rotated.previous.as_ref().expect("previous");
    assert_eq!(prev.secret, old);
    let shown = w.hooks.secret(&key("PROJ"), "n").await.expect("secret");
    assert_eq!(shown.secret, rotated.secret);
    w.publish("PROJ", 1).await;
    let r = &rx.wait_for(1).await[0];
    let sig = r.header("webhook-signature");
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
    for secret in [&old, &rotated.secret] {
        assert_eq!(
            verify(
                secret,
                r.webhook_id(),
                r.header("webhook-timestamp"),
                sig,
                r.body.as_bytes(),
                now_secs(),
                300
            ),
            Ok(())
        );
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_overlap_only_the_new_secret_signs() {
    let w = World::start(WebhooksConfig {
        secret_overlap: Duration::ZERO,
        ..config()
    })
    .await;
    let rx = Receiver::ok().await;
    let old = w.create("PROJ", "n", &rx.url).await;
    let rotated = w
        .hooks
        .rotate_secret(&key("PROJ"), "n", &actor())
        .await
        .expect("rotate");
    assert!(rotated.previous.is_none());
    w.publish("PROJ", 1).await;
    let r = &rx.wait_for(1).await[0];
    let sig = r.header("webhook-signature");
    assert_eq!(sig.split(' ').count(), 1);
    let check = |s: &str| {
        verify(
            s,
            r.webhook_id(),
            r.header("webhook-timestamp"),
            sig,
            r.body.as_bytes(),
            now_secs(),
            300,
        )
    };
    assert!(check(&rotated.secret).is_ok());
    assert!(check(&old).is_err());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_mode_keeps_sequence_order_through_failures() {
    let w = World::start(WebhooksConfig {
        retry_schedule: schedule(&[0, 20, 20, 20]),
        ..config()
    })
    .await;
    // Every event fails twice before it is accepted.
    let tries: std::sync::Arc<Mutex<HashMap<String, usize>>> = Default::default();
    let t = std::sync::Arc::clone(&tries);
    let rx = Receiver::scripted(move |_, r| {
        let mut t = t.lock().expect("lock");
        let n = t.entry(r.event_id()).or_default();
        *n += 1;
        Reply::Status(if *n <= 2 { 500 } else { 200 })
    })
    .await;
    let mut n = input("n", &rx.url, &["^RunJobEnded$"]);
    n.ordered = Some(true);
    w.create_with("PROJ", n).await;
    let ids = w.publish("PROJ", 5).await;
    let got = rx.wait_for(15).await;
    let order: Vec<String> = got.iter().map(|r| r.event_id()).collect();
    let expected: Vec<String> = ids
        .iter()
        .flat_map(|id| std::iter::repeat_n(id.clone(), 3))
        .collect();
    assert_eq!(order, expected);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_delay_another() {
    let w = World::start(WebhooksConfig {
        timeout: Duration::from_secs(30),
        max_in_flight_per_endpoint: 4,
        ..config()
    })
    .await;
    let slow = Receiver::scripted(|_, _| Reply::Hang).await;
    let fast = Receiver::ok().await;
    w.create("PROJ", "slow", &slow.url).await;
    w.create("PROJ", "fast", &fast.url).await;
    let started = std::time::Instant::now();
    w.publish("PROJ", 50).await;
    fast.wait_for(50).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The hanging one has exactly its in-flight bound outstanding.
    slow.wait_for(4).await;
    // No signal says the worker is waiting for a slot: give a fifth request
    // the time to go out wrongly.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(slow.requests().len(), 4);
    // Shutdown does not wait for the hanging requests.
    let stopping = std::time::Instant::now();
    w.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sends_a_signed_ping_now() {
    let w = World::start(config()).await;
    let rx = Receiver::ok().await;
    let secret = w.create("PROJ", "n", &rx.url).await;
    let outcome = w.hooks.test(&key("PROJ"), "n").await.expect("test");
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(outcome.status_code, Some(204));
    let r = &rx.wait_for(1).await[0];
    assert_eq!(r.event_type(), "Ping");
    assert!(
        verify(
            &secret,
            r.webhook_id(),
            r.header("webhook-timestamp"),
            r.header("webhook-signature"),
            r.body.as_bytes(),
            now_secs(),
            300
        )
        .is_ok()
    );
    w.stop().await;
}
