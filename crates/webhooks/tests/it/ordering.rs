//! Ordering per key (`ordered_by`) against a real receiver: in order within
//! a key, parallel across keys, a failing key holding back only itself.

use crate::support::*;
use cds_events_log::NewEvent;
use cds_events_model::EventType;
use cds_events_webhooks::{OrderedBy, WebhooksConfig};
use std::sync::Mutex;

/// Appends one event per run named in `runs`, in that order; returns
/// their ids.
async fn publish_runs(w: &World, runs: &[&str]) -> Vec<String> {
    let events: Vec<NewEvent> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let mut e =
                cds_events_log::conformance::event(EventType::RunJobEnded, "PROJ", i as i64 + 1);
            e.workflow_run_id = (*run).to_owned();
            NewEvent::from(e)
        })
        .collect();
    let ids = events.iter().map(|e| e.head.id.clone()).collect();
    w.log.append(events).await.expect("append");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_by_run_keeps_each_run_in_order_and_a_failing_run_holds_back_only_itself() {
    let w = World::start(WebhooksConfig {
        // Run A's first event is retried after 1.5 s: long enough to see
        // that B and C do not wait for it.
        retry_schedule: schedule(&[0, 1500]),
        max_in_flight_per_endpoint: 4,
        ..config()
    })
    .await;
    let first_a: std::sync::Arc<Mutex<Option<String>>> = Default::default();
    let failed = std::sync::Arc::clone(&first_a);
    let rx = Receiver::scripted(move |_, r| {
        let mut failed = failed.lock().expect("lock");
        if r.json()["workflow_run_id"] == "A" && failed.is_none() {
            *failed = Some(r.event_id());
            return Reply::Status(500);
        }
        Reply::Status(200)
    })
    .await;
    let mut n = input("n", &rx.url, &["^RunJobEnded$"]);
    n.ordered_by = Some(OrderedBy::WorkflowRunId);
    w.create_with("PROJ", n).await;
    let runs = ["A", "B", "A", "C", "B", "A", "C", "B", "C"];
    let ids = publish_runs(&w, &runs).await;
    // Nine events, and A's first twice.
    let got = rx.wait_for(10).await;
    let order: Vec<String> = got.iter().map(|r| r.event_id()).collect();
    let of_run = |run: &str| -> Vec<String> {
        runs.iter()
            .zip(&ids)
            .filter(|(r, _)| **r == run)
            .map(|(_, id)| id.clone())
            .collect()
    };
    let received = |run: &str| -> Vec<String> {
        got.iter()
            .filter(|r| r.json()["workflow_run_id"] == run)
            .map(|r| r.event_id())
            .collect()
    };
    let a = of_run("A");
    assert_eq!(
        first_a.lock().expect("lock").as_deref(),
        Some(a[0].as_str()),
        "A's first event failed first"
    );
    let mut a_expected = vec![a[0].clone()];
    a_expected.extend(a.iter().cloned());
    assert_eq!(
        received("A"),
        a_expected,
        "run A in order, its first retried"
    );
    assert_eq!(received("B"), of_run("B"), "run B in order");
    assert_eq!(received("C"), of_run("C"), "run C in order");
    // B and C did not wait for A's retry: all of theirs came before it.
    let retry = order.iter().rposition(|id| *id == a[0]).expect("A's retry");
    let after_retry = &order[retry..];
    assert!(
        of_run("B")
            .iter()
            .chain(&of_run("C"))
            .all(|id| !after_retry.contains(id)),
        "B and C were held back by A: {order:?}"
    );
    assert!(
        after_retry.len() == a.len(),
        "after A's retry, only A's later events: {order:?}"
    );
    w.stop().await;
}
