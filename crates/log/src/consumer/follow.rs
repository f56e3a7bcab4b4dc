//! The one loop that drives a [`Consumer`]: read forward from its position,
//! hand it each batch, store the position, wait for the head.

use super::{Checkpoint, Consumer, ConsumerError, FollowOptions, PositionStore};
use crate::{EventLog, Seq};
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Follows `log` with `consumer` until `shutdown` (or until the consumer's
/// [`Consumer::input`] says to stop, or the log closes); answers the
/// consumer.
///
/// At the first start of a durable consumer (no stored position) it starts
/// at the head, not at the oldest event: history is not replayed, and the
/// head is stored at once so that events appended from then on are handled
/// even if the process stops before the first batch. While the consumer is
/// not listening nothing is read: the position follows the head and is
/// stored at most once per [`FollowOptions::idle_persist`]. At the stop,
/// what a batch produced is stored already; a position reached without a
/// batch is stored then.
pub async fn follow<C: Consumer>(
    log: Arc<dyn EventLog>,
    mut consumer: C,
    options: FollowOptions,
    shutdown: CancellationToken,
) -> C {
    let name = consumer.name().to_owned();
    let mut head = log.head();
    let start_head = *head.borrow_and_update();
    let (store, after_batch) = match consumer.checkpoint() {
        Checkpoint::Volatile => (None, false),
        Checkpoint::AfterBatch(s) => (Some(s), true),
        Checkpoint::WithBatch(s) => (Some(s), false),
    };
    let mut position = match &store {
        None => start_head,
        Some(store) => loop {
            match start_position(&name, store.as_ref(), start_head).await {
                Ok(p) => break p,
                Err(e) => {
                    tracing::error!(consumer = %name, error = %e, "consumer cannot read its position");
                    if pause(&shutdown, options.retry).await {
                        return consumer;
                    }
                }
            }
        },
    };
    let mut saved = Saved {
        name: &name,
        store,
        position,
        at: Instant::now(),
    };
    consumer.reached(position);
    'follow: loop {
        // The head as it was when woken: the batches go up to it, then the
        // consumer's inputs get their turn before the next head. Re-reading
        // the head between batches would starve them (the hub's
        // subscriptions) for as long as ingest keeps the head moving.
        let target = *head.borrow_and_update();
        loop {
            if position >= target || shutdown.is_cancelled() {
                break;
            }
            // The head is read before asking whether anyone listens: an event
            // after `target` may be one that a new listener must get.
            if !consumer.is_listening() {
                position = target;
                consumer.reached(position);
                if saved.at.elapsed() >= options.idle_persist {
                    saved.persist(position).await;
                }
                break;
            }
            let limit = tokio::select! {
                n = consumer.admit(options.batch) => n.clamp(1, options.batch.max(1)),
                _ = shutdown.cancelled() => break,
            };
            match step(log.as_ref(), &mut consumer, position, limit).await {
                Ok(Some(last)) => {
                    position = last;
                    if after_batch {
                        saved.persist(position).await;
                    } else {
                        // Stored with the batch (or not stored at all).
                        (saved.position, saved.at) = (position, Instant::now());
                    }
                    consumer.reached(position);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(consumer = %name, error = %e, position = position.0, "consumer failed a batch; retrying");
                    if pause(&shutdown, options.retry).await {
                        break 'follow;
                    }
                }
            }
        }
        let idle = (saved.store.is_some() && position > saved.position)
            .then(|| saved.at + options.idle_persist);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            flow = consumer.input(position) => if flow.is_break() { break },
            changed = head.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(idle.unwrap_or_else(Instant::now)), if idle.is_some() => {
                saved.persist(position).await;
            }
        }
    }
    // Stopping while nobody listens: the events appended until now need
    // nothing, even those whose head change lost the race with the stop
    // (the head first, then the listeners, as above).
    let target = *head.borrow();
    if target > position && !consumer.is_listening() {
        position = target;
        consumer.reached(position);
    }
    if position > saved.position {
        saved.persist(position).await;
    }
    consumer
}

/// Reads (at most `limit` events) and handles one batch; answers its last
/// sequence number, or `None` when the log had nothing after `position`.
async fn step<C: Consumer>(
    log: &dyn EventLog,
    consumer: &mut C,
    position: Seq,
    limit: usize,
) -> Result<Option<Seq>, ConsumerError> {
    let batch = consumer.read(log, position, limit).await?;
    let Some(last) = batch.last().map(|e| e.seq) else {
        return Ok(None);
    };
    consumer.handle(&batch).await?;
    Ok(Some(last))
}

/// The stored position; at the very first start, the log's head, stored at
/// once.
async fn start_position(
    name: &str,
    store: &dyn PositionStore,
    head: Seq,
) -> Result<Seq, ConsumerError> {
    match store.load().await? {
        Some(p) if p <= head => return Ok(p),
        Some(p) => tracing::warn!(
            consumer = %name,
            position = p.0,
            head = head.0,
            "consumer position is beyond the log's head (a new log?); starting at the head"
        ),
        None => {}
    }
    store.save(head).await?;
    Ok(head)
}

/// The last position stored, and when it was tried.
struct Saved<'a> {
    name: &'a str,
    store: Option<Arc<dyn PositionStore>>,
    position: Seq,
    at: Instant,
}

impl Saved<'_> {
    /// Stores `position`; a failure is tried again by the idle timer.
    async fn persist(&mut self, position: Seq) {
        match &self.store {
            Some(store) => match store.save(position).await {
                Ok(()) => self.position = position,
                Err(e) => {
                    tracing::warn!(consumer = %self.name, error = %e, "cannot store the consumer position")
                }
            },
            None => self.position = position,
        }
        self.at = Instant::now();
    }
}

/// Sleeps, or returns `true` at shutdown.
async fn pause(shutdown: &CancellationToken, d: std::time::Duration) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
