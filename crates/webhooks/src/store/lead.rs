//! The lead: which one of the instances sharing a store runs the
//! dispatcher (and the purge), so that each committed event becomes its
//! deliveries once.
//!
//! A backend hands out a [`Lead`] from
//! [`NotificationStore::lead`](super::NotificationStore::lead) to one
//! holder at a time. Each lead has a term, higher than every earlier one;
//! the dispatcher's writes carry it, and the store refuses a write whose
//! term is not the latest ([`WebhooksError::LostLead`](crate::WebhooksError::LostLead)),
//! so a holder that lost the lead without knowing it yet (its connection
//! cut, its process paused) cannot write after its successor started.

use std::any::Any;
use std::fmt;
use tokio_util::sync::CancellationToken;

/// The lead of a store, held until dropped (or lost).
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

    /// Higher than the term of every earlier lead of the same store.
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
