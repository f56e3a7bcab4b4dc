//! Tickets: single-use, short-lived stand-ins for a principal, held in
//! memory only (a restart invalidates them, which their lifetime allows).

use super::{TokenStore, random_text, sha256};
use crate::{AuthError, Principal};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TICKET_PREFIX: &str = "cdst_";

/// Outstanding tickets by the hash of their text: who they stand for, until when.
pub(super) type Tickets = HashMap<[u8; 32], (Arc<Principal>, Instant)>;

impl TokenStore {
    /// A single-use ticket standing for `principal` for a short while, for
    /// clients that cannot set headers (a browser's WebSocket or EventSource).
    pub fn issue_ticket(
        &self,
        principal: &Arc<Principal>,
    ) -> Result<(String, Duration), AuthError> {
        let ticket = format!("{TICKET_PREFIX}{}", random_text(32));
        let mut tickets = self
            .tickets
            .lock()
            .map_err(|_| AuthError::Poisoned("ticket"))?;
        let now = Instant::now();
        tickets.retain(|_, (_, expires)| *expires > now);
        tickets.insert(
            sha256(&ticket),
            (Arc::clone(principal), now + self.ticket_ttl),
        );
        Ok((ticket, self.ticket_ttl))
    }

    /// Redeems a ticket once.
    pub fn redeem_ticket(&self, ticket: &str) -> Option<Arc<Principal>> {
        let mut tickets = self.tickets.lock().ok()?;
        let (principal, expires) = tickets.remove(&sha256(ticket))?;
        (expires > Instant::now()).then_some(principal)
    }
}
