//! Consumers of the log: what reads forward from a position and acts on
//! every committed event (live streams, webhooks, broker sinks).
//!
//! A consumer implements [`Consumer`] (what to do with a batch) and is driven
//! by the one loop, [`follow`]: it reads forward from the consumer's position,
//! wakes on [`EventLog::head`], stores the position after each handled batch,
//! retries a failing step after a pause, and stops cleanly at a
//! cancellation. Where the position lives is the consumer's choice, said by
//! its [`Checkpoint`]: nowhere (the hub starts at the head), in the log's own
//! `consumers` table ([`LogPositions`]), or in the consumer's own store,
//! written with what a batch produced in one transaction (webhooks).
//!
//! Durable consumers also tell retention what they still need: each
//! registered in [`DurableConsumers`] says from which sequence number it
//! needs the log, and retention keeps everything from the lowest of them.
//!
//! This module never calls into the ingest path and never waits for anything
//! a consumer does outside its own `handle`: a slow consumer holds back only
//! itself.

mod follow;
mod lead;
mod position;
mod retention;

#[cfg(test)]
mod tests;

pub use follow::follow;
pub use lead::{ConsumerLeads, Lead, LedPositions};
pub use position::{LogPositions, PositionStore};
pub use retention::{DurableConsumers, HoldError, RetentionHold};

use crate::{EventLog, LogError, Seq, StoredEvent};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

/// An error of a consumer's own (its store, its handling), boxed so that any
/// consumer's error type fits.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a step of a consumer failed. [`follow`] logs it and tries the step
/// again after [`FollowOptions::retry`]; retention purges nothing while a
/// consumer cannot say what it holds.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// Reading the log, or its `consumers` table, failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The consumer's position could not be read or stored.
    #[error("position store: {0}")]
    Position(#[source] BoxError),
    /// The consumer failed to handle a batch.
    #[error("handling a batch: {0}")]
    Handle(#[source] BoxError),
    /// The consumer cannot tell what it still needs from the log.
    #[error("reading what it holds: {0}")]
    Hold(#[source] BoxError),
}

/// Where a consumer's position is kept, and who writes it.
#[derive(Clone)]
pub enum Checkpoint {
    /// Nowhere: the consumer starts at the log's head at every start (the
    /// hub; a subscriber that missed events catches up from the log itself).
    Volatile,
    /// In `store`, written by the loop after each handled batch: the batch's
    /// effects first, then the position, so a crash in between handles the
    /// batch again (at least once). A broker sink's position in the log's
    /// `consumers` table ([`LogPositions`]).
    AfterBatch(Arc<dyn PositionStore>),
    /// In `store`, but written by the consumer's [`Consumer::handle`] itself,
    /// in the same transaction as what the batch produced, so that its
    /// effects happen exactly once (the webhooks dispatcher: delivery rows and
    /// position together). The loop writes `store` only for a position it
    /// reached without a batch: at the first start, while following the head
    /// with nothing to match, and at the stop.
    WithBatch(Arc<dyn PositionStore>),
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Checkpoint::Volatile => "Volatile",
            Checkpoint::AfterBatch(_) => "AfterBatch",
            Checkpoint::WithBatch(_) => "WithBatch",
        })
    }
}

/// Something that follows the log. Driven by [`follow`]; every method is
/// called from that one task, never concurrently.
pub trait Consumer: Send {
    /// Names the consumer in logs.
    fn name(&self) -> &str;

    /// Where the position is kept (asked once, when [`follow`] starts).
    fn checkpoint(&self) -> Checkpoint;

    /// Whether an event could match anything now. While it is `false`
    /// nothing is read: the position follows the head. Asked after the head
    /// was read, so an event appended after that head is read if something
    /// that starts listening meanwhile may need it.
    fn is_listening(&self) -> bool {
        true
    }

    /// Waits for the turn to read, and answers how many events (at most
    /// `max`, at least 1) to read: pacing hooks in here. The wait ends early
    /// at the stop.
    fn admit(&mut self, max: usize) -> impl Future<Output = usize> + Send {
        std::future::ready(max)
    }

    /// Reads the next batch. A consumer that bounds its reads of the log
    /// (webhooks: one read in flight from the whole engine) wraps this.
    fn read<'a>(
        &'a self,
        log: &'a dyn EventLog,
        after: Seq,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredEvent>, LogError>> + Send + 'a {
        log.read_after(after, limit)
    }

    /// Acts on one batch (never empty, in sequence order). On an error the
    /// same batch is read and handled again after a pause. With
    /// [`Checkpoint::WithBatch`] this must store the position of the batch's
    /// last event with its effects.
    fn handle(
        &mut self,
        batch: &[StoredEvent],
    ) -> impl Future<Output = Result<(), ConsumerError>> + Send;

    /// The consumer's own inputs, awaited while the loop waits for the head
    /// (the hub's subscribe and unsubscribe commands). Given the position
    /// reached: every event after it is still to be handled. Must be
    /// cancel-safe (dropped when the head moves first); `Break` stops the
    /// loop. By default there are none.
    fn input(&mut self, position: Seq) -> impl Future<Output = ControlFlow<()>> + Send {
        let _ = position;
        std::future::pending()
    }

    /// Told each position reached, after a batch or by following the head
    /// (for figures).
    fn reached(&mut self, position: Seq) {
        let _ = position;
    }
}

/// How [`follow`] paces its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowOptions {
    /// Most events read per batch.
    pub batch: usize,
    /// Pause before trying a failed step again.
    pub retry: Duration,
    /// While nothing is read (nobody listening), how often the position
    /// that follows the head is stored.
    pub idle_persist: Duration,
}

impl Default for FollowOptions {
    fn default() -> FollowOptions {
        FollowOptions {
            batch: 512,
            retry: Duration::from_millis(500),
            idle_persist: Duration::from_secs(1),
        }
    }
}
