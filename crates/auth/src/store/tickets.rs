//! Tickets: single-use, short-lived stand-ins for a token, for clients that
//! cannot set headers. The ticket's text is made here and only its hash goes
//! to the backend, which takes it once (whichever instance issued it, when
//! instances share the backend); the principal comes from the active tokens
//! (this instance's copy, or the backend for a token the copy does not hold
//! yet), and a revocation drops the token's tickets, so a revoked token's
//! tickets redeem nothing.

use super::{TokenStore, random_text};
use crate::{AuthError, Principal, SecretHash, Ticket};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;

const TICKET_PREFIX: &str = "cdst_";

impl TokenStore {
    /// A single-use ticket standing for `principal` for a short while, for
    /// clients that cannot set headers (a browser's WebSocket or EventSource).
    pub async fn issue_ticket(
        &self,
        principal: &Arc<Principal>,
    ) -> Result<(String, Duration), AuthError> {
        let ticket = format!("{TICKET_PREFIX}{}", random_text(32));
        let now = Utc::now();
        self.backend.sweep_tickets(now).await?;
        self.backend
            .store_ticket(&Ticket {
                hash: SecretHash::of(&ticket),
                token_id: principal.token_id.clone(),
                expires_at: expiry(now, self.ticket_ttl),
            })
            .await?;
        Ok((ticket, self.ticket_ttl))
    }

    /// Redeems a ticket once. [`AuthError::Unavailable`] when the backend
    /// is away (the ticket is then still unused); any other failure is
    /// answered as for an unknown ticket (said in the log).
    pub async fn redeem_ticket(&self, ticket: &str) -> Result<Option<Arc<Principal>>, AuthError> {
        let token_id = match self
            .backend
            .take_ticket(&SecretHash::of(ticket), Utc::now())
            .await
        {
            Ok(Some(id)) => id,
            Ok(None) => return Ok(None),
            Err(e @ (AuthError::Unavailable(_) | AuthError::Full(_))) => return Err(e),
            Err(error) => {
                // The caller answers as for an unknown ticket; the cause is
                // for the operator.
                tracing::error!(%error, "ticket store failure");
                return Ok(None);
            }
        };
        self.principal(&token_id).await
    }
}

/// `now + ttl`, saturating: a lifetime too long for the calendar never ends.
fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(ttl)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
