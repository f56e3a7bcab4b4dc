//! Where a durable consumer's position is read and written: the
//! [`PositionStore`] seam, and its implementation on the log's own
//! `consumers` table.

use super::{ConsumerError, RetentionHold};
use crate::{EventLog, Seq};
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;

/// A consumer's durable position: the last sequence number it handled.
#[async_trait]
pub trait PositionStore: Send + Sync {
    /// The stored position; `None` before the first start.
    async fn load(&self) -> Result<Option<Seq>, ConsumerError>;

    /// Stores `position`.
    async fn save(&self, position: Seq) -> Result<(), ConsumerError>;
}

/// A position kept in the log's `consumers` table under a name
/// ([`EventLog::consumer_position`]): for consumers without a store of their
/// own (broker sinks). Also says what the consumer holds from retention: the
/// event after its position.
#[derive(Clone)]
pub struct LogPositions {
    log: Arc<dyn EventLog>,
    name: String,
}

impl LogPositions {
    pub fn new(log: Arc<dyn EventLog>, name: impl Into<String>) -> LogPositions {
        LogPositions {
            log,
            name: name.into(),
        }
    }
}

impl fmt::Debug for LogPositions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogPositions")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl PositionStore for LogPositions {
    async fn load(&self) -> Result<Option<Seq>, ConsumerError> {
        Ok(self.log.consumer_position(&self.name).await?)
    }

    async fn save(&self, position: Seq) -> Result<(), ConsumerError> {
        Ok(self.log.set_consumer_position(&self.name, position).await?)
    }
}

#[async_trait]
impl RetentionHold for LogPositions {
    fn name(&self) -> &str {
        &self.name
    }

    /// The first event not handled yet. Before the first start nothing:
    /// the consumer will start at the head.
    async fn needs_from(&self) -> Result<Option<Seq>, ConsumerError> {
        Ok(self.load().await?.map(|p| Seq(p.0.saturating_add(1))))
    }
}
