//! This instance's copy of the active tokens: what authenticates a request
//! without I/O.
//!
//! Local changes update it at once (a revocation is refused by the very
//! next request here). Over a backend that other instances share
//! ([`TokenBackend::changes`]), a task follows the backend's change signal
//! and reloads the whole copy on each move. Reloads and local changes take
//! turns ([`ActiveCopy::turn`]), so that a reload which read the backend
//! before a local change never puts back what that change removed.
//!
//! It must never answer from anything but what the backend last said plus
//! this instance's own changes since.

use crate::{AuthError, Principal, SecretHash, StoredToken, TokenBackend, TokenInfo};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard, watch};

/// How long a failed reload waits before the next attempt.
const RETRY: Duration = Duration::from_millis(250);

/// An active token as held in memory.
#[derive(Debug, Clone)]
pub(super) struct Record {
    hash: SecretHash,
    info: TokenInfo,
    /// Handed out, shared, on every successful authentication.
    principal: Arc<Principal>,
}

impl Record {
    pub(super) fn new(token: StoredToken) -> Self {
        let principal = Arc::new(Principal {
            token_id: token.info.id.clone(),
            name: token.info.name.clone(),
            grants: token.info.grants.clone(),
        });
        Record {
            hash: token.hash,
            info: token.info,
            principal,
        }
    }

    /// The principal, if `secret` is this token's and it has not expired.
    pub(super) fn admit(&self, secret: &str) -> Option<Arc<Principal>> {
        if !self.hash.matches(secret) {
            return None;
        }
        if self.info.expires_at.is_some_and(|e| e <= Utc::now()) {
            return None;
        }
        Some(Arc::clone(&self.principal))
    }

    pub(super) fn principal(&self) -> &Arc<Principal> {
        &self.principal
    }

    /// When the token stops being valid (`None`: never).
    pub(super) fn expires_at(&self) -> Option<chrono::DateTime<Utc>> {
        self.info.expires_at
    }

    /// An HMAC-SHA256 of `msg` keyed by this token's stored hash: what a
    /// console session is sealed with. Only this server (and whoever holds
    /// the token itself) knows the hash; it dies with the token.
    pub(super) fn seal(&self, msg: &[u8]) -> [u8; 32] {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.hash.as_bytes())
            .expect("hmac takes any key length");
        mac.update(msg);
        mac.finalize().into_bytes().into()
    }
}

/// The active tokens by id.
#[derive(Debug, Default)]
pub(super) struct ActiveCopy {
    tokens: RwLock<HashMap<String, Record>>,
    turn: Mutex<()>,
}

impl ActiveCopy {
    /// Reads `f` of the record of `id`, if this copy holds it.
    pub(super) fn read<T>(&self, id: &str, f: impl FnOnce(&Record) -> Option<T>) -> Option<T> {
        self.tokens.read().ok()?.get(id).and_then(f)
    }

    /// Held by whoever changes the backend and then this copy, or reloads
    /// it, for the whole of it.
    pub(super) async fn turn(&self) -> MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    pub(super) fn insert(&self, token: StoredToken) -> Result<(), AuthError> {
        self.write()?
            .insert(token.info.id.clone(), Record::new(token));
        Ok(())
    }

    pub(super) fn remove(&self, id: &str) -> Result<(), AuthError> {
        self.write()?.remove(id);
        Ok(())
    }

    /// Replaces the copy with the backend's active tokens.
    pub(super) async fn reload(&self, backend: &dyn TokenBackend) -> Result<(), AuthError> {
        let _turn = self.turn().await;
        let fresh = backend
            .active_tokens()
            .await?
            .into_iter()
            .map(|t| (t.info.id.clone(), Record::new(t)))
            .collect();
        *self.write()? = fresh;
        Ok(())
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, HashMap<String, Record>>, AuthError> {
        self.tokens
            .write()
            .map_err(|_| AuthError::Poisoned("token cache"))
    }

    /// Reloads the copy each time `changes` moves, until the sender is
    /// gone; a failed reload is retried until one succeeds (the backend may
    /// be away a while: meanwhile the copy answers as it last knew).
    pub(super) async fn follow(
        self: Arc<Self>,
        backend: Arc<dyn TokenBackend>,
        mut changes: watch::Receiver<i64>,
    ) {
        while changes.changed().await.is_ok() {
            while let Err(error) = self.reload(&*backend).await {
                tracing::warn!(%error, "cannot reload the active tokens; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
