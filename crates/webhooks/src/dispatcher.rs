//! The dispatcher: follows the log and turns every event that matches a
//! notification into a delivery row, durably, before anything is sent.
//!
//! For each batch read after its position it writes the batch's deliveries
//! and the new position in one transaction (see `store::writer`), then wakes
//! the workers concerned. It never sends anything and never waits for a
//! receiver, so a slow endpoint cannot hold the log back.

use crate::Inner;
use crate::store::NewDelivery;
use cds_events_log::Seq;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Events read from the log per transaction.
const READ_BATCH: usize = 512;
/// How often the position is stored while it only follows the head.
const IDLE_PERSIST: Duration = Duration::from_secs(1);

pub(crate) async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut head = inner.log.head();
    let start_head = *head.borrow_and_update();
    let mut position = loop {
        match start_position(&inner, start_head).await {
            Ok(p) => break p,
            Err(e) => {
                tracing::error!(error = %e, "webhooks dispatcher cannot read its position");
                if pause(&shutdown, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    // While there is no notification at all, nothing is read: the position
    // follows the head, and is stored at most once per `IDLE_PERSIST`.
    let mut stored = position;
    let mut stored_at = Instant::now();
    loop {
        loop {
            let target = *head.borrow_and_update();
            if position >= target {
                break;
            }
            if shutdown.is_cancelled() {
                break;
            }
            // The head is read before the registry: an event after `target`
            // may be one a notification created meanwhile must get.
            if inner.registry.is_empty() {
                position = target;
                if stored_at.elapsed() >= IDLE_PERSIST {
                    persist(&inner, &mut stored, &mut stored_at, position).await;
                }
                break;
            }
            let limit = tokio::select! {
                n = inner.pressure.admit_reads(READ_BATCH) => n,
                _ = shutdown.cancelled() => break,
            };
            match dispatch_batch(&inner, position, limit).await {
                Ok(Some(p)) => {
                    position = p;
                    (stored, stored_at) = (p, Instant::now());
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, position = position.0, "webhooks dispatcher failed a batch; retrying");
                    if pause(&shutdown, Duration::from_millis(500)).await {
                        return;
                    }
                }
            }
        }
        let idle = (position > stored).then(|| stored_at + IDLE_PERSIST);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            changed = head.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(idle.unwrap_or_else(Instant::now).into()), if idle.is_some() => {
                persist(&inner, &mut stored, &mut stored_at, position).await;
            }
        }
    }
    // Stopping with no notification: the events appended until now need
    // nothing, even those whose head change lost the race with the stop
    // (the head first, then the registry, as above).
    let target = *head.borrow();
    if target > position && inner.registry.is_empty() {
        position = target;
    }
    if position > stored {
        persist(&inner, &mut stored, &mut stored_at, position).await;
    }
}

/// Stores the position reached without reading (no notification).
async fn persist(inner: &Inner, stored: &mut Seq, stored_at: &mut Instant, position: Seq) {
    match inner.store.set_position(position).await {
        Ok(()) => *stored = position,
        Err(e) => tracing::warn!(error = %e, "cannot store the webhooks position"),
    }
    *stored_at = Instant::now();
}

/// Sleeps, or returns `true` at shutdown.
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// The stored position; at the very first start, the log's head (history is
/// not delivered), recorded at once so that events appended from now on are
/// delivered even if the process stops before the next batch.
async fn start_position(inner: &Inner, head: Seq) -> Result<Seq, crate::WebhooksError> {
    let stored = inner.store.position().await?;
    match stored {
        Some(p) if p >= 0 && (p as u64) <= head.0 => return Ok(Seq(p as u64)),
        Some(p) => tracing::warn!(
            position = p,
            head = head.0,
            "webhooks position is beyond the log's head (a new log?); starting at the head"
        ),
        None => {}
    }
    inner.store.set_position(head).await?;
    Ok(head)
}

/// Reads (at most `limit` events), matches and records one batch; returns
/// the new position, or `None` when the log had nothing after `position`.
async fn dispatch_batch(
    inner: &Inner,
    position: Seq,
    limit: usize,
) -> Result<Option<Seq>, crate::WebhooksError> {
    let batch = {
        let _permit = inner.log_reads.acquire().await;
        inner.log.read_after(position, limit).await?
    };
    let Some(last) = batch.last().map(|e| e.seq) else {
        return Ok(None);
    };
    let index = inner.registry.index();
    let mut rows = Vec::new();
    let mut woken: HashMap<i64, Arc<tokio::sync::Notify>> = HashMap::new();
    if !index.by_project.is_empty() {
        for stored in &batch {
            // Only the type and project route an event: the rest of it is
            // not decoded.
            let event = match cds_events_model::peek_stored(&stored.json) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(seq = stored.seq.0, error = %e, "stored event does not decode; no webhook delivery");
                    continue;
                }
            };
            let Some(targets) = index.by_project.get(event.project_key.as_ref()) else {
                continue;
            };
            let mut matched = false;
            for t in targets.iter().filter(|t| t.matches(event.event_type)) {
                rows.push(NewDelivery {
                    notification: t.id,
                    seq: stored.seq.0 as i64,
                    event_id: event.id.to_string(),
                });
                woken.entry(t.id).or_insert_with(|| Arc::clone(&t.wake));
                matched = true;
            }
            if matched {
                inner
                    .cache
                    .put(stored.seq.0 as i64, Arc::clone(&stored.json));
            }
        }
    }
    let created = rows.len();
    inner.store.insert_deliveries(rows, last.0 as i64).await?;
    if created > 0 {
        metrics::counter!("cds_events_webhook_deliveries_created_total").increment(created as u64);
    }
    for wake in woken.values() {
        wake.notify_one();
    }
    Ok(Some(last))
}
