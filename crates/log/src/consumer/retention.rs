//! What durable consumers still need from the log: each says from which
//! sequence number on ([`RetentionHold`]), and retention keeps everything
//! from the lowest of them ([`DurableConsumers::low_water_mark`]).
//!
//! It never decides what to purge: it only answers the hold that
//! [`Retention::hold_from`](crate::Retention::hold_from) carries to
//! [`EventLog::purge`](crate::EventLog::purge).

use super::ConsumerError;
use crate::Seq;
use async_trait::async_trait;
use std::fmt;
use std::sync::{Arc, RwLock};

/// A durable consumer as retention sees it.
#[async_trait]
pub trait RetentionHold: Send + Sync + fmt::Debug {
    /// Names the consumer in logs.
    fn name(&self) -> &str;

    /// The oldest event this consumer still needs: retention keeps it and
    /// every later one. `None` when it needs nothing.
    async fn needs_from(&self) -> Result<Option<Seq>, ConsumerError>;
}

/// A consumer could not say what it holds: retention must purge nothing.
#[derive(Debug, thiserror::Error)]
#[error("consumer {consumer} cannot say what it holds: {error}")]
pub struct HoldError {
    pub consumer: String,
    pub error: ConsumerError,
}

/// Every durable consumer of this process; cheap to clone (clones share
/// the list).
#[derive(Debug, Clone, Default)]
pub struct DurableConsumers {
    holds: Arc<RwLock<Vec<Arc<dyn RetentionHold>>>>,
}

impl DurableConsumers {
    pub fn register(&self, consumer: Arc<dyn RetentionHold>) {
        self.holds
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(consumer);
    }

    /// The low-water mark: the lowest sequence number any registered
    /// consumer still needs (`None` when none needs anything). An error from
    /// any of them is the answer: not knowing what one needs, nothing may go.
    pub async fn low_water_mark(&self) -> Result<Option<Seq>, HoldError> {
        let holds = self.holds.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut low: Option<Seq> = None;
        for h in holds {
            let needs = h.needs_from().await.map_err(|error| HoldError {
                consumer: h.name().to_owned(),
                error,
            })?;
            low = match (low, needs) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(low)
    }
}
