//! One worker per notification: pages its due deliveries from the database,
//! sends them with bounded concurrency, and records each result.
//!
//! Workers share nothing but the HTTP client's connection pool (per host)
//! and the writer: a hanging or failing endpoint fills only its own
//! in-flight slots and its own backlog. A worker holds at most one page of
//! deliveries in memory, however long its backlog. With `ordered`, it sends
//! one delivery at a time in sequence order, and a delivery waiting for a
//! retry holds back the later ones of that notification only.

use crate::bodies::Job;
use crate::config::WebhooksConfig;
use crate::engine::Inner;
use crate::model::DeliveryStatus;
use crate::registry::{Notification, WorkerHandle};
use crate::send::{AttemptOutcome, OutcomeKind};
use crate::store::{AttemptResult, DeliveryId, Due};
use crate::time::now_ms;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Deliveries fetched per page, beyond those already claimed.
const PAGE: usize = 64;

/// A finished attempt: which delivery, and when it is due again (if it was
/// rescheduled).
struct Done {
    id: DeliveryId,
    next_due: Option<i64>,
}

pub(crate) async fn run(inner: Arc<Inner>, mut handle: WorkerHandle, shutdown: CancellationToken) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    // Deliveries queued or in flight: a page read while their results are
    // not committed yet must not hand them out twice.
    let mut claimed: HashSet<DeliveryId> = HashSet::new();
    let mut inflight: JoinSet<Done> = JoinSet::new();
    let mut need_fetch = true;
    let mut next_wake: Option<i64> = None;
    let mut current = Arc::clone(&handle.current.borrow_and_update());
    loop {
        if current.enabled {
            let ordered = current.ordered;
            let concurrency = if ordered {
                1
            } else {
                inner.config.max_in_flight_per_endpoint.max(1)
            };
            loop {
                while inflight.len() < concurrency
                    && let Some(d) = queue.pop_front()
                {
                    inflight.spawn(attempt(
                        Arc::clone(&inner),
                        Arc::clone(&current),
                        d,
                        shutdown.clone(),
                    ));
                }
                let may_fetch = need_fetch && queue.is_empty() && (!ordered || inflight.is_empty());
                if !may_fetch {
                    break;
                }
                need_fetch = false;
                let limit = if ordered { 1 } else { claimed.len() + PAGE };
                let id = current.id;
                match inner.store.due(id, ordered, limit).await {
                    Ok(rows) => {
                        // A full page: there may be more behind it.
                        need_fetch = rows.len() == limit && !ordered;
                        let now = now_ms();
                        for d in rows {
                            if claimed.contains(&d.id) {
                                continue;
                            }
                            if d.next_attempt_at > now {
                                next_wake = Some(
                                    next_wake
                                        .map_or(d.next_attempt_at, |w| w.min(d.next_attempt_at)),
                                );
                                need_fetch = false;
                                break;
                            }
                            claimed.insert(d.id);
                            queue.push_back(Job::from(d));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, notification = %current.name, "cannot read due deliveries");
                        next_wake = Some(now_ms() + 1000);
                    }
                }
                if queue.is_empty() {
                    break;
                }
                inner.fill_bodies(queue.iter_mut()).await;
            }
        } else if !queue.is_empty() {
            // Disabled: what was queued stays pending in the database.
            for job in queue.drain(..) {
                claimed.remove(&job.due.id);
            }
        }
        let sleep = next_wake
            .map(|at| Instant::now() + Duration::from_millis((at - now_ms()).max(0) as u64));
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            changed = handle.current.changed() => {
                if changed.is_err() {
                    // Deleted.
                    break;
                }
                current = Arc::clone(&handle.current.borrow_and_update());
                // The filters, order or state may have changed: start over
                // from the database.
                for job in queue.drain(..) {
                    claimed.remove(&job.due.id);
                }
                need_fetch = true;
            }
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                if let Ok(done) = done {
                    claimed.remove(&done.id);
                    if let Some(at) = done.next_due {
                        next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
                    }
                }
                if current.ordered {
                    need_fetch = true;
                }
            }
            _ = handle.wake.notified() => need_fetch = true,
            _ = tokio::time::sleep_until(sleep.unwrap_or_else(Instant::now)), if sleep.is_some() => {
                next_wake = None;
                need_fetch = true;
            }
        }
    }
    // In-flight attempts stop at shutdown themselves; those whose answer
    // came are recorded before this returns.
    while inflight.join_next().await.is_some() {}
}

async fn attempt(
    inner: Arc<Inner>,
    n: Arc<Notification>,
    job: Job,
    shutdown: CancellationToken,
) -> Done {
    let Job { due: d, body } = job;
    let msg_id = inner.delivery_uid(d.id);
    let span = tracing::info_span!(
        "webhook_attempt",
        delivery_id = %msg_id,
        event_id = %d.event_id,
        project_key = %n.project,
        notification = %n.name,
        attempt = d.attempts + 1,
    );
    let id = d.id;
    async move {
        let body = match body {
            Some(b) => Ok(Some(b)),
            None => inner.event_body(d.seq, &d.event_id).await,
        };
        let body = match body {
            Ok(Some(b)) => b,
            Ok(None) => {
                tracing::warn!("the event left the log before delivery; delivery cancelled");
                let rec = AttemptResult {
                    delivery: d.id,
                    notification: n.id,
                    attempts: d.attempts + 1,
                    tries: d.tries + 1,
                    status: DeliveryStatus::Cancelled,
                    next_attempt_at: None,
                    at: now_ms(),
                    status_code: None,
                    latency_ms: 0,
                    error: Some("the event is no longer in the log".into()),
                    response: None,
                    endpoint_failed: None,
                };
                if let Err(e) = inner.store.record(rec).await {
                    tracing::warn!(error = %e, "cannot record a cancelled delivery");
                }
                return Done { id, next_due: None };
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the event to deliver; trying later");
                return Done {
                    id,
                    next_due: Some(now_ms() + 1000),
                };
            }
        };
        let (at, outcome) = tokio::select! {
            o = async {
                // Ingest first: paced while the machine is saturated.
                inner.pressure.admit_attempt().await;
                let at = now_ms();
                (at, inner.sender.send(&n, &msg_id, body.as_bytes()).await)
            } => o,
            // Not recorded: the delivery stays pending and is sent again
            // after a restart (receivers de-duplicate by webhook-id).
            _ = shutdown.cancelled() => return Done { id, next_due: None },
        };
        let (status, next_due) = decide(&inner.config, &d, &outcome, now_ms());
        observe(&outcome, status);
        let rec = AttemptResult {
            delivery: d.id,
            notification: n.id,
            attempts: d.attempts + 1,
            tries: d.tries + 1,
            status,
            next_attempt_at: next_due,
            at,
            status_code: outcome.status_code,
            latency_ms: crate::time::millis(outcome.latency),
            error: outcome.error,
            response: outcome.response,
            endpoint_failed: Some(outcome.outcome != OutcomeKind::Success),
        };
        match inner.store.record(rec).await {
            // Redelivered meanwhile: due now, look again.
            Ok(ack) if ack.superseded => {
                return Done {
                    id,
                    next_due: Some(now_ms()),
                };
            }
            Ok(ack) if ack.disabled => inner.after_auto_disable(n.id).await,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot record an attempt; the delivery will be sent again"),
        }
        Done { id, next_due }
    }
    .instrument(span)
    .await
}

fn observe(o: &AttemptOutcome, status: DeliveryStatus) {
    metrics::counter!("cds_events_webhook_attempts_total", "outcome" => o.outcome.as_str())
        .increment(1);
    metrics::histogram!("cds_events_webhook_attempt_seconds").record(o.latency.as_secs_f64());
    if matches!(status, DeliveryStatus::Succeeded | DeliveryStatus::Failed) {
        metrics::counter!("cds_events_webhook_deliveries_total", "status" => status.as_str())
            .increment(1);
    }
    match o.outcome {
        OutcomeKind::Success => tracing::debug!(status_code = o.status_code, "delivered"),
        _ => tracing::info!(
            outcome = o.outcome.as_str(),
            status_code = o.status_code,
            error = o.error.as_deref().unwrap_or(""),
            next = status.as_str(),
            "webhook attempt failed"
        ),
    }
}

/// The delivery's state after an attempt, and when it is due again.
pub(crate) fn decide(
    config: &WebhooksConfig,
    d: &Due,
    o: &AttemptOutcome,
    now: i64,
) -> (DeliveryStatus, Option<i64>) {
    if o.is_success() {
        return (DeliveryStatus::Succeeded, None);
    }
    // 410 Gone: the receiver says never again.
    if o.status_code == Some(410) {
        return (DeliveryStatus::Failed, None);
    }
    let tries = (d.tries + 1).max(0) as usize;
    let Some(delay) = config.retry_schedule.get(tries) else {
        return (DeliveryStatus::Failed, None);
    };
    // Retry-After may push the next attempt later, never earlier: a
    // `Retry-After: 0` must not burn the whole schedule in seconds.
    let scheduled = jittered(*delay, config.jitter);
    let delay = o.retry_after.map_or(scheduled, |r| r.max(scheduled));
    (
        DeliveryStatus::Pending,
        Some(now + crate::time::millis(delay)),
    )
}

fn jittered(d: Duration, jitter: f64) -> Duration {
    if d.is_zero() || jitter.is_nan() || jitter <= 0.0 {
        return d;
    }
    let j = jitter.min(1.0);
    d.mul_f64((1.0 + rand::random_range(-j..=j)).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: Option<u16>, retry_after: Option<Duration>) -> AttemptOutcome {
        AttemptOutcome {
            outcome: match status {
                Some(s) if (200..300).contains(&s) => OutcomeKind::Success,
                Some(_) => OutcomeKind::HttpError,
                None => OutcomeKind::ConnectError,
            },
            status_code: status,
            latency: Duration::ZERO,
            error: None,
            response: None,
            retry_after,
        }
    }

    fn due(tries: i64) -> Due {
        Due {
            id: DeliveryId(1),
            seq: cds_events_log::Seq(1),
            event_id: "e".into(),
            attempts: tries,
            tries,
            next_attempt_at: 0,
        }
    }

    #[test]
    fn schedule_gives_the_delay_before_the_next_attempt() {
        let c = WebhooksConfig {
            jitter: 0.0,
            ..Default::default()
        };
        // Attempt 1 failed: attempt 2 after 5 s.
        assert_eq!(
            decide(&c, &due(0), &outcome(Some(500), None), 0),
            (DeliveryStatus::Pending, Some(5_000))
        );
        assert_eq!(
            decide(&c, &due(1), &outcome(None, None), 0),
            (DeliveryStatus::Pending, Some(300_000))
        );
        // Attempt 8 (the last) failed: dead letter.
        assert_eq!(
            decide(&c, &due(7), &outcome(Some(500), None), 0),
            (DeliveryStatus::Failed, None)
        );
        assert_eq!(
            decide(&c, &due(0), &outcome(Some(410), None), 0),
            (DeliveryStatus::Failed, None)
        );
        assert_eq!(
            decide(&c, &due(0), &outcome(Some(204), None), 0),
            (DeliveryStatus::Succeeded, None)
        );
        assert_eq!(
            decide(
                &c,
                &due(0),
                &outcome(Some(429), Some(Duration::from_secs(20))),
                0
            ),
            (DeliveryStatus::Pending, Some(20_000))
        );
        // A shorter Retry-After does not shorten the schedule.
        assert_eq!(
            decide(&c, &due(1), &outcome(Some(503), Some(Duration::ZERO)), 0),
            (DeliveryStatus::Pending, Some(300_000))
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(100), 0.1);
            assert!(
                d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
                "{d:?}"
            );
        }
        assert_eq!(jittered(Duration::ZERO, 0.1), Duration::ZERO);
    }
}
