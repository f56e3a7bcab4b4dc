//! One worker per notification, on every instance: claims the
//! notification's due deliveries from the store, sends them, and records
//! each result.
//!
//! A claim leases each delivery to this instance (renewed while its attempt
//! runs, see `leases`): no other instance sends it meanwhile, and if this
//! one dies, another claims it once the lease has ended and sends it again
//! with the same `webhook-id`. A worker claims only what it can send at once
//! (its free slots of `max_in_flight_per_endpoint`, which the store counts
//! over every instance's leases), so it keeps no backlog in memory and the
//! endpoint's concurrency holds for the whole cluster. With `ordered`, the
//! store hands out the oldest pending delivery only, once it is due and no
//! one holds it: one at a time in sequence order, and a delivery waiting
//! for a retry holds back the later ones of that notification only. With
//! `ordered_by`, the same holds per key: the store hands out a delivery
//! only while no earlier one of its key is pending, so keys go in parallel
//! (up to the endpoint's concurrency) and a failing key holds back only
//! its own later deliveries.
//!
//! Workers share nothing but the HTTP client's connection pool (per host)
//! and the store: a hanging or failing endpoint fills only its own slots.
//! A worker claims again when one of its attempts ends, when the store says
//! deliveries are due (new ones, on any instance), and when the claim said
//! more would be due (a retry's time, a lease's end).

use crate::bodies::Job;
use crate::config::WebhooksConfig;
use crate::engine::Inner;
use crate::error::WebhooksError;
use crate::model::DeliveryStatus;
use crate::outgoing::Outgoing;
use crate::registry::{Notification, WorkerHandle};
use crate::send::{AttemptOutcome, OutcomeKind};
use crate::store::{AttemptResult, Claim, DeliveryId, Due};
use crate::time::{millis, now_ms};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How soon a worker claims again after the store failed it.
const RETRY_MS: i64 = 1000;

/// The first pause before recording an attempt again while the store is
/// away, doubled after each failure up to [`MAX_RECORD_RETRY`].
const RECORD_RETRY: Duration = Duration::from_millis(100);
const MAX_RECORD_RETRY: Duration = Duration::from_secs(2);

/// A finished attempt: which delivery, and when it is due again (if it was
/// rescheduled).
struct Done {
    id: DeliveryId,
    next_due: Option<i64>,
    /// Stopped by the shutdown before an answer: its lease is released.
    abandoned: bool,
}

impl Done {
    fn new(id: DeliveryId, next_due: Option<i64>) -> Done {
        Done {
            id,
            next_due,
            abandoned: false,
        }
    }
}

pub(crate) async fn run(inner: Arc<Inner>, mut handle: WorkerHandle, shutdown: CancellationToken) {
    let mut inflight: JoinSet<Done> = JoinSet::new();
    let mut next_wake: Option<i64> = None;
    let mut current = Arc::clone(&handle.current.borrow_and_update());
    // Claims at the start, then after each of the events below.
    loop {
        if current.enabled {
            claim(&inner, &current, &mut inflight, &mut next_wake, &shutdown).await;
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
                // The order, the state or the endpoint may have changed.
                current = Arc::clone(&handle.current.borrow_and_update());
            }
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                finished(done, &mut next_wake);
                // Those that ended meanwhile too: one claim for them all.
                while let Some(done) = inflight.try_join_next() {
                    finished(done, &mut next_wake);
                }
            }
            _ = handle.wake.notified() => {}
            _ = tokio::time::sleep_until(sleep.unwrap_or_else(Instant::now)), if sleep.is_some() => {
                next_wake = None;
            }
        }
    }
    // In-flight attempts stop at shutdown themselves; those whose answer
    // came are recorded before this returns, the others' leases released so
    // that another instance sends them at once.
    let mut abandoned = Vec::new();
    while let Some(done) = inflight.join_next().await {
        if let Ok(done) = done
            && done.abandoned
        {
            abandoned.push(done.id);
        }
    }
    if !abandoned.is_empty()
        && let Err(e) = inner.store.release(&inner.instance, abandoned).await
    {
        tracing::debug!(error = %e, "cannot release abandoned webhook claims; they end with their lease");
    }
}

fn finished(done: Result<Done, tokio::task::JoinError>, next_wake: &mut Option<i64>) {
    if let Ok(Done {
        next_due: Some(at), ..
    }) = done
    {
        *next_wake = earliest(*next_wake, at);
    }
}

fn earliest(a: Option<i64>, b: i64) -> Option<i64> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Claims what `n`'s free slots allow and starts those attempts.
async fn claim(
    inner: &Arc<Inner>,
    n: &Arc<Notification>,
    inflight: &mut JoinSet<Done>,
    next_wake: &mut Option<i64>,
    shutdown: &CancellationToken,
) {
    let concurrency = if n.ordered {
        1
    } else {
        inner.config.max_in_flight_per_endpoint.max(1)
    };
    let want = concurrency.saturating_sub(inflight.len());
    if want == 0 {
        return;
    }
    let now = now_ms();
    let claim = Claim {
        notification: n.id,
        claimant: inner.instance.clone(),
        ordered: n.ordered,
        per_key: n.ordered_by.is_some(),
        want,
        max_leased: concurrency,
        now,
        until: now + millis(inner.config.lease),
    };
    let claimed = match inner.store.claim(claim).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, notification = %n.name, "cannot claim due deliveries");
            *next_wake = earliest(*next_wake, now_ms() + RETRY_MS);
            return;
        }
    };
    if let Some(at) = claimed.next_at {
        *next_wake = earliest(*next_wake, at);
    }
    // One already in flight here (its lease ended before its result, and
    // this instance claimed it again) is left to that attempt.
    let mut jobs: Vec<Job> = claimed
        .due
        .into_iter()
        .filter(|d| inner.held.take(d.id))
        .map(Job::from)
        .collect();
    inner.fill_bodies(jobs.iter_mut()).await;
    for job in jobs {
        inflight.spawn(attempt(
            Arc::clone(inner),
            Arc::clone(n),
            job,
            shutdown.clone(),
        ));
    }
}

/// Ends `id`'s place in [`Inner::held`] however its attempt ends.
struct Holding {
    inner: Arc<Inner>,
    id: DeliveryId,
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.inner.held.done(self.id);
    }
}

async fn attempt(
    inner: Arc<Inner>,
    n: Arc<Notification>,
    job: Job,
    shutdown: CancellationToken,
) -> Done {
    let Job { due: d, body } = job;
    let _holding = Holding {
        inner: Arc::clone(&inner),
        id: d.id,
    };
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
                return cancel(&inner, &n, &d, "the event is no longer in the log").await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the event to deliver; trying later");
                return give_back(&inner, id).await;
            }
        };
        let (at, outcome) = tokio::select! {
            o = async {
                // Ingest first: paced while the machine is saturated.
                inner.pressure.admit_attempt().await;
                let at = now_ms();
                let source = &inner.config.cloudevents_source;
                match Outgoing::event(n.format, n.content_mode, source, d.seq, &body) {
                    Ok(Some(out)) => Some((at, inner.sender.send(&n, &msg_id, d.attempts + 1, &out).await)),
                    Ok(None) => None,
                    Err(why) => Some((at, AttemptOutcome::unsendable(why))),
                }
            } => match o {
                Some(o) => o,
                // `format: cdevents` and this event has no CDEvents form
                // (a run result that is no artifact): nothing to send.
                None => {
                    metrics::counter!("cds_events_cdevents_unmapped_total", "way" => "webhook").increment(1);
                    return cancel(&inner, &n, &d, "the event has no CDEvents form").await;
                }
            },
            // Not recorded: the delivery stays pending and is sent again,
            // here after a restart or by another instance (receivers
            // de-duplicate by webhook-id).
            _ = shutdown.cancelled() => return Done { id, next_due: None, abandoned: true },
        };
        let (status, next_due) = decide(&inner.config, &d, &outcome, now_ms());
        observe(&outcome, status);
        let rec = AttemptResult {
            delivery: d.id,
            notification: n.id,
            claimant: inner.instance.clone(),
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
            gone: outcome.status_code == Some(410),
        };
        match record(&inner, rec, &shutdown).await {
            // Redelivered meanwhile: due now, look again.
            Ok(ack) if ack.superseded => {
                return Done::new(id, Some(now_ms()));
            }
            Ok(ack) if ack.disabled => inner.after_auto_disable(n.id).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot record an attempt; the delivery will be sent again");
                return give_back(&inner, id).await;
            }
        }
        Done::new(id, next_due)
    }
    .instrument(span)
    .await
}

/// Records an answered attempt. The store away (PostgreSQL restarting) or
/// its disk full, tries again for up to a lease: the delivery stays this
/// instance's meanwhile (its lease renewed while the attempt is held), so a
/// restart of the database does not make the endpoint called twice, and a
/// full disk does not make the worker send the same delivery again and
/// again (each resend failing to record in turn). The store records
/// a result only where the delivery still is as the attempt found it, so a
/// late one never overwrites a newer attempt's.
async fn record(
    inner: &Inner,
    rec: AttemptResult,
    shutdown: &CancellationToken,
) -> Result<crate::store::RecordAck, WebhooksError> {
    let give_up = Instant::now() + inner.config.lease;
    let mut pause = RECORD_RETRY;
    loop {
        match inner.store.record(rec.clone()).await {
            Err(e @ (WebhooksError::Unavailable(_) | WebhooksError::Full(_)))
                if Instant::now() + pause < give_up =>
            {
                tracing::debug!(error = %e, retry_in = ?pause, "the store is away or full; recording the attempt again");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(e),
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_RECORD_RETRY);
            }
            r => return r,
        }
    }
}

/// An attempt that could not be made or recorded: its lease is released
/// (or, the store away, ends by itself), and the worker claims again soon.
/// Records `d` as cancelled without an attempt on the endpoint (it is not
/// the endpoint's failure): the event is gone, or has no form to send in.
async fn cancel(inner: &Inner, n: &Notification, d: &Due, why: &str) -> Done {
    let rec = AttemptResult {
        delivery: d.id,
        notification: n.id,
        claimant: inner.instance.clone(),
        attempts: d.attempts + 1,
        tries: d.tries + 1,
        status: DeliveryStatus::Cancelled,
        next_attempt_at: None,
        at: now_ms(),
        status_code: None,
        latency_ms: 0,
        error: Some(why.to_owned()),
        response: None,
        endpoint_failed: None,
        gone: false,
    };
    if let Err(e) = inner.store.record(rec).await {
        tracing::warn!(error = %e, "cannot record a cancelled delivery");
        return give_back(inner, d.id).await;
    }
    Done::new(d.id, None)
}

async fn give_back(inner: &Inner, id: DeliveryId) -> Done {
    if let Err(e) = inner.store.release(&inner.instance, vec![id]).await {
        tracing::debug!(error = %e, "cannot release a webhook claim; it ends with its lease");
    }
    Done::new(id, Some(now_ms() + RETRY_MS))
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
