//! The SQLite backend's tickets: held in memory, not in `auth.db`.
//!
//! A SQLite store belongs to one process, so every redemption comes to the
//! process that issued the ticket and memory is enough to be correct; a
//! ticket lives seconds, so a restart that forgets it costs a client one new
//! ticket. Writing it would cost a synced transaction per browser connection
//! and leave hashes on disk for nothing. (A backend shared by several
//! instances keeps them in its database instead; the conformance suite holds
//! for both.) This module must never keep a ticket past its expiry or its
//! token's revocation once asked to drop it.

use crate::{AuthError, SecretHash, Ticket};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Outstanding tickets by hash: the token each stands for, until when.
type ByHash = HashMap<SecretHash, (String, DateTime<Utc>)>;

#[derive(Debug, Default)]
pub(super) struct Tickets(Mutex<ByHash>);

impl Tickets {
    fn map(&self) -> Result<MutexGuard<'_, ByHash>, AuthError> {
        self.0.lock().map_err(|_| AuthError::Poisoned("ticket"))
    }

    pub(super) fn store(&self, t: &Ticket) -> Result<(), AuthError> {
        self.map()?
            .insert(t.hash, (t.token_id.clone(), t.expires_at));
        Ok(())
    }

    pub(super) fn take(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, AuthError> {
        Ok(self
            .map()?
            .remove(hash)
            .and_then(|(token_id, expires_at)| (expires_at > now).then_some(token_id)))
    }

    pub(super) fn sweep(&self, now: DateTime<Utc>) -> Result<usize, AuthError> {
        let mut map = self.map()?;
        let before = map.len();
        map.retain(|_, (_, expires_at)| *expires_at > now);
        Ok(before - map.len())
    }

    pub(super) fn drop_token(&self, id: &str) -> Result<(), AuthError> {
        self.map()?.retain(|_, (token_id, _)| token_id != id);
        Ok(())
    }
}
