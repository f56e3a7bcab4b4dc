//! The writer: messages from the buffer to the log, in batches.
//!
//! It takes one message, then whatever else is already buffered (up to
//! `max_batch`), decodes each, and appends the valid ones in one call, so a
//! burst costs a few commits rather than one per event. An append that
//! fails is retried with a capped backoff and never dropped while the
//! server runs: the log is idempotent by id, so a retry of a batch that did
//! commit stores nothing twice. While it retries, the buffer fills and the
//! subscriber drops its subscription (a reported gap) rather than grow.

use crate::message::{IngestLimits, Undecodable, decode, excerpt};
use crate::status::Shared;
use cds_events_log::{EventLog, LogError, NewEvent};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Bytes of an undecodable message quoted in the log.
const EXCERPT_BYTES: usize = 200;

/// Drains `rx` into `log` until `done` fires (the subscriber has stopped)
/// and the buffer is empty.
pub(crate) async fn write_loop(
    mut rx: mpsc::Receiver<Vec<u8>>,
    log: Arc<dyn EventLog>,
    limits: IngestLimits,
    max_batch: usize,
    shared: Arc<Shared>,
    done: CancellationToken,
) {
    let mut complaints = Complaints::default();
    loop {
        let first = tokio::select! {
            biased;
            m = rx.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = done.cancelled() => match rx.try_recv() {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        let mut messages = vec![first];
        while messages.len() < max_batch {
            match rx.try_recv() {
                Ok(m) => messages.push(m),
                Err(_) => break,
            }
        }
        let mut batch = Vec::with_capacity(messages.len());
        for m in &messages {
            match decode(m, &limits) {
                Ok(ev) => batch.push(ev),
                Err(e) => {
                    shared.undecodable.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("cds_events_bridge_undecodable_total", "reason" => e.reason())
                        .increment(1);
                    complaints.undecodable(m, &e);
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        if !append(&*log, batch, &shared, &done).await {
            break;
        }
    }
}

/// Appends one batch, retrying failures; false when the log is gone (or the
/// bridge is stopping and the log still refuses), and what was not stored
/// is said in an error line.
async fn append(
    log: &dyn EventLog,
    batch: Vec<NewEvent>,
    shared: &Shared,
    done: &CancellationToken,
) -> bool {
    const FIRST: Duration = Duration::from_millis(50);
    const CAP: Duration = Duration::from_secs(5);
    let mut delay = FIRST;
    let n = batch.len();
    metrics::histogram!("cds_events_bridge_batch_events").record(n as f64);
    loop {
        match log.append(batch.clone()).await {
            Ok(out) => {
                let dups = out.iter().filter(|a| a.duplicate).count() as u64;
                let fresh = out.len() as u64 - dups;
                shared.ingested.fetch_add(fresh, Ordering::Relaxed);
                shared.duplicates.fetch_add(dups, Ordering::Relaxed);
                metrics::counter!("cds_events_bridge_ingested_total").increment(fresh);
                if dups > 0 {
                    metrics::counter!("cds_events_bridge_duplicates_total").increment(dups);
                }
                return true;
            }
            Err(LogError::Closed) => {
                tracing::error!(
                    events = n,
                    "bridge: the log is closed; events from CDS not stored"
                );
                return false;
            }
            Err(e) if done.is_cancelled() => {
                tracing::error!(events = n, error = %e, "bridge: stopping while the log refuses appends; events from CDS not stored");
                return false;
            }
            Err(e) => {
                metrics::counter!("cds_events_bridge_append_errors_total").increment(1);
                tracing::warn!(events = n, error = %e, retry_in_ms = delay.as_millis() as u64, "bridge: append failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = done.cancelled() => {}
                }
                delay = (delay * 2).min(CAP);
            }
        }
    }
}

/// Undecodable messages are logged at most once a second, with how many
/// were not logged since: a producer sending garbage must not flood the log.
#[derive(Debug, Default)]
struct Complaints {
    last: Option<Instant>,
    suppressed: u64,
}

impl Complaints {
    fn undecodable(&mut self, message: &[u8], e: &Undecodable) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            reason = e.reason(),
            error = %e,
            bytes = message.len(),
            excerpt = %excerpt(message, EXCERPT_BYTES),
            suppressed = self.suppressed,
            "bridge: undecodable message on the CDS channel, skipped"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests;
