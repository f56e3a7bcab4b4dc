//! The lead: which one of the instances sharing a store runs a consumer
//! that must run once between them (the webhooks dispatcher, a broker
//! sink).
//!
//! A backend hands out a [`Lead`] to one holder at a time (the log's
//! [`ConsumerLeads`] for a named consumer of the log, the webhooks store for
//! its dispatcher). Each lead has a term, higher than every earlier one of
//! the same consumer; the holder's position writes carry it, and the
//! backend refuses a write whose term is not the latest
//! ([`LogError::LostLead`]), so a holder that lost the lead without knowing
//! it yet (its connection cut, its process paused) can neither move the
//! position back nor forward after its successor started.

use super::{ConsumerError, PositionStore};
use crate::{EventLog, LogError, Seq};
use async_trait::async_trait;
use std::any::Any;
use std::fmt;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A lead, held until dropped (or lost).
pub struct Lead {
    term: i64,
    lost: CancellationToken,
    /// Whatever keeps the lead for the backend (a lock's connection, a
    /// permit); dropping it gives the lead up.
    _hold: Box<dyn Any + Send + Sync>,
}

impl Lead {
    /// A lead of term `term`, which the backend marks as lost through
    /// `lost` (or [`Lead::lose`]) and releases when `hold` is dropped.
    pub fn new(term: i64, lost: CancellationToken, hold: impl Any + Send + Sync) -> Lead {
        Lead {
            term,
            lost,
            _hold: Box::new(hold),
        }
    }

    /// Higher than the term of every earlier lead of the same consumer.
    pub fn term(&self) -> i64 {
        self.term
    }

    /// Whether the lead is known to be lost: its holder must stop leading.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// Resolves once the lead is lost.
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }

    /// Marks the lead lost (a backend found that another holder has a
    /// later term).
    pub fn lose(&self) {
        self.lost.cancel();
    }
}

impl fmt::Debug for Lead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lead")
            .field("term", &self.term)
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

/// Leads over the log's named consumers, for a backend that several
/// instances share ([`EventLog::leads`]; PostgreSQL). A consumer that runs
/// once between the instances (a broker sink) takes its lead before it
/// reads, and writes its position only through
/// [`save_position`](ConsumerLeads::save_position).
#[async_trait]
pub trait ConsumerLeads: Send + Sync {
    /// Waits until `instance` holds the lead of `consumer` (one holder at a
    /// time among every instance sharing the log), and returns it. The lead
    /// is kept until dropped, or until it is lost (its holder's connection
    /// gone), which [`Lead::lost`] tells. Dropping the future stops the
    /// wait.
    async fn lead(&self, consumer: &str, instance: &str) -> Result<Lead, LogError>;

    /// Stores `consumer`'s position under `lead`. Refused
    /// ([`LogError::LostLead`], nothing written, `lead` marked lost) unless
    /// `lead` is the latest lead of `consumer`.
    async fn save_position(&self, lead: &Lead, consumer: &str, seq: Seq) -> Result<(), LogError>;

    /// The instance that took the latest lead of `consumer`, if any (for an
    /// operator: it may be gone, its successor still waiting).
    async fn holder(&self, consumer: &str) -> Result<Option<String>, LogError>;
}

/// A named consumer's position in the log's `consumers` table, written only
/// under a lead: the [`PositionStore`] of a consumer while it leads.
#[derive(Clone)]
pub struct LedPositions {
    log: Arc<dyn EventLog>,
    name: String,
    lead: Arc<Lead>,
}

impl LedPositions {
    /// `log` must have leads ([`EventLog::leads`]); saves are refused
    /// otherwise.
    pub fn new(log: Arc<dyn EventLog>, name: impl Into<String>, lead: Arc<Lead>) -> LedPositions {
        LedPositions {
            log,
            name: name.into(),
            lead,
        }
    }

    /// Stores `position` under the lead, or answers why not.
    pub async fn save_led(&self, position: Seq) -> Result<(), LogError> {
        match self.log.leads() {
            Some(leads) => leads.save_position(&self.lead, &self.name, position).await,
            None => Err(LogError::Backend("this log has no leads".into())),
        }
    }
}

impl fmt::Debug for LedPositions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedPositions")
            .field("name", &self.name)
            .field("lead", &self.lead)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl PositionStore for LedPositions {
    async fn load(&self) -> Result<Option<Seq>, ConsumerError> {
        Ok(self.log.consumer_position(&self.name).await?)
    }

    async fn save(&self, position: Seq) -> Result<(), ConsumerError> {
        Ok(self.save_led(position).await?)
    }
}
