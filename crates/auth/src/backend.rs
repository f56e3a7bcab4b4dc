//! The storage seam of the token store: what every instance must share once
//! several run side by side (tokens, the audit trail, browser tickets), as
//! one trait.
//!
//! [`TokenStore`](crate::TokenStore) keeps the policy (secrets, validation,
//! the in-memory copy of the active tokens that authenticates a request
//! without I/O); a [`TokenBackend`] keeps records and answers for them. A
//! backend never sees a secret (tokens and tickets reach it as their
//! [`SecretHash`]) and never decides who may do what. Every backend passes
//! the [`conformance`](crate::conformance) suite.
//!
//! A backend that several instances share says so by offering
//! [`TokenBackend::changes`]: each instance's token store then follows the
//! others' creations and revocations.

use crate::{AuditEntry, AuthError, NewAuditEntry, SecretHash, StoredToken, Ticket, TokenInfo};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// Where tokens, the audit trail and tickets are kept.
///
/// Calls are async (a backend over a network database awaits its answers;
/// one over a file runs its statements off the async workers). Each call is
/// one short statement or transaction. Timestamps come back to the
/// microsecond at least.
#[async_trait]
pub trait TokenBackend: Send + Sync + std::fmt::Debug {
    /// Stores a new token and its audit entry, both or neither. An id already
    /// stored (even revoked) is refused with [`AuthError::TokenExists`].
    async fn insert_token(
        &self,
        token: &StoredToken,
        audit: &NewAuditEntry,
    ) -> Result<(), AuthError>;

    /// Stores `token` and its audit entry only if this store never held a
    /// token (as [`TokenBackend::ever_had_a_token`]), the check and the
    /// insert as one step: of instances bootstrapping the same store at
    /// once, one gets `true`, the others `false` and nothing written.
    async fn insert_first_token(
        &self,
        token: &StoredToken,
        audit: &NewAuditEntry,
    ) -> Result<bool, AuthError>;

    /// Marks an active token revoked at `audit.at`, writes `audit` in the
    /// same transaction and drops the token's outstanding tickets. `false`
    /// (and nothing written) if there is no such active token.
    async fn revoke_token(&self, id: &str, audit: &NewAuditEntry) -> Result<bool, AuthError>;

    /// The tokens not revoked (expired ones included), oldest first, then by
    /// id.
    async fn list_tokens(&self) -> Result<Vec<TokenInfo>, AuthError>;

    /// The tokens not revoked with their hashes, in no order: what a token
    /// store loads to authenticate.
    async fn active_tokens(&self) -> Result<Vec<StoredToken>, AuthError>;

    /// The token of this id if it is not revoked (expired or not): what an
    /// instance asks about a token created elsewhere a moment ago.
    async fn active_token(&self, id: &str) -> Result<Option<StoredToken>, AuthError>;

    /// Whether this store ever held a token, revoked ones included: a store
    /// that did is never bootstrapped again.
    async fn ever_had_a_token(&self) -> Result<bool, AuthError>;

    /// Appends an entry to the audit trail on its own.
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), AuthError>;

    /// The newest `limit` audit entries, newest first.
    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, AuthError>;

    /// Keeps a ticket until it is taken, expires and is swept, or its token
    /// is revoked.
    async fn store_ticket(&self, ticket: &Ticket) -> Result<(), AuthError>;

    /// Takes the ticket of this hash, once: the token id it stands for if it
    /// is still outstanding and `now` is before its expiry. Whatever the
    /// answer, the ticket is gone afterwards, even when several take it at
    /// the same time.
    async fn take_ticket(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, AuthError>;

    /// Drops the tickets expired at `now`; how many.
    async fn sweep_tickets(&self, now: DateTime<Utc>) -> Result<usize, AuthError>;

    /// For a store other instances share: a value that moves whenever the
    /// tokens may have changed, from any instance (and soon after: within a
    /// second even when the backend's notifications are lost). Each move
    /// asks the token store to reload [`TokenBackend::active_tokens`].
    /// `None` for a store this process alone uses, where every change goes
    /// through this process's token store.
    fn changes(&self) -> Option<watch::Receiver<i64>>;
}
