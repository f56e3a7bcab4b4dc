//! [`TokenStore`]: the token policy over any [`TokenBackend`]. Secrets are
//! made and checked here, and only their hashes go to the backend; the
//! active tokens are copied in memory ([`copy`]), so authenticating a
//! request costs no I/O and a revocation takes effect on this instance at
//! once. Then tickets ([`tickets`]), the audit trail ([`audit`]) and the
//! first admin token ([`bootstrap`]).
//!
//! Over a backend other instances share, the copy follows their changes (a
//! revocation anywhere is refused here within a second), and
//! [`TokenStore::authenticate_or_look_up`] asks the backend about a token
//! the copy does not hold yet (created elsewhere a moment ago).
//!
//! This module must never hold SQL, nor know which backend it runs on
//! beyond `open` picking the embedded default; the backend never sees a
//! secret.

mod audit;
mod bootstrap;
mod copy;
mod sessions;
mod tickets;

use crate::sqlite::SqliteTokens;
use crate::{
    AuthError, CreatedToken, Grant, NewAuditEntry, Principal, SecretHash, StoredToken,
    TokenBackend, TokenInfo,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bootstrap::BOOTSTRAP_ID;
use chrono::{DateTime, Utc};
use copy::{ActiveCopy, Record};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub use bootstrap::{ADMIN_TOKEN_FILE, Bootstrap, read_admin_token};
pub use sessions::{SESSION_PREFIX, Session};

const TOKEN_PREFIX: &str = "cdse_";

/// Most look-ups of unknown tokens in the backend at once: bearers the copy
/// does not know cost the database this much at most, whoever sends them.
const LOOKUPS: usize = 4;

/// The token store.
#[derive(Debug)]
pub struct TokenStore {
    backend: Arc<dyn TokenBackend>,
    copy: Arc<ActiveCopy>,
    ticket_ttl: Duration,
    /// Over a shared backend: permits to look up a token the copy lacks.
    lookups: Option<Semaphore>,
    /// The task that follows the other instances' changes; stopped on drop.
    follower: Option<tokio::task::AbortHandle>,
}

impl Drop for TokenStore {
    fn drop(&mut self) {
        if let Some(f) = &self.follower {
            f.abort();
        }
    }
}

fn random_text(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(buf)
}

fn random_id() -> String {
    (0..8)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// A token about to be stored, and its secret (its `cdse_…` text).
struct NewToken {
    token: StoredToken,
    secret: String,
}

impl TokenStore {
    /// Opens (creating if needed) the SQLite store in `data_dir`.
    pub async fn open(data_dir: &Path, ticket_ttl: Duration) -> Result<TokenStore, AuthError> {
        let dir = data_dir.to_owned();
        let backend = tokio::task::spawn_blocking(move || SqliteTokens::open(&dir))
            .await
            .map_err(|e| AuthError::Backend(Box::new(e)))??;
        TokenStore::with_backend(Arc::new(backend), ticket_ttl).await
    }

    /// A store over `backend`, with its active tokens loaded and, if other
    /// instances share the backend, followed.
    pub async fn with_backend(
        backend: Arc<dyn TokenBackend>,
        ticket_ttl: Duration,
    ) -> Result<TokenStore, AuthError> {
        // Subscribed before loading: a change after the load moves it.
        let changes = backend.changes().map(|mut c| {
            c.mark_unchanged();
            c
        });
        let copy = Arc::new(ActiveCopy::default());
        copy.reload(&*backend).await?;
        let follower = changes.as_ref().map(|c| {
            let task = Arc::clone(&copy).follow(Arc::clone(&backend), c.clone());
            tokio::spawn(task).abort_handle()
        });
        Ok(TokenStore {
            lookups: changes.map(|_| Semaphore::new(LOOKUPS)),
            backend,
            copy,
            ticket_ttl,
            follower,
        })
    }

    /// Creates a token for `actor` (a principal's token id).
    pub async fn create(
        &self,
        name: &str,
        grants: Vec<Grant>,
        expires_at: Option<DateTime<Utc>>,
        actor: &Principal,
    ) -> Result<CreatedToken, AuthError> {
        let new = new_token(name, grants, expires_at, &actor.token_id)?;
        self.insert(&new.token, &actor.token_id, false).await?;
        Ok(CreatedToken {
            info: new.token.info,
            secret: new.secret,
        })
    }

    /// Stores `token` (only into a store that never had one if `first`) and
    /// copies it; whether it was stored.
    async fn insert(
        &self,
        token: &StoredToken,
        actor: &str,
        first: bool,
    ) -> Result<bool, AuthError> {
        let info = &token.info;
        let audit = NewAuditEntry {
            at: Utc::now(),
            actor: actor.to_owned(),
            action: "token.create".into(),
            target: info.id.clone(),
            detail: serde_json::json!({"name": info.name, "grants": info.grants, "expires_at": info.expires_at}),
        };
        let _turn = self.copy.turn().await;
        if first {
            if !self.backend.insert_first_token(token, &audit).await? {
                return Ok(false);
            }
        } else {
            self.backend.insert_token(token, &audit).await?;
        }
        self.copy.insert(token.clone())?;
        Ok(true)
    }

    /// Revokes a token; `false` if there is no such active token. Its
    /// tickets die with it.
    pub async fn revoke(&self, id: &str, actor: &Principal) -> Result<bool, AuthError> {
        let audit = NewAuditEntry {
            at: Utc::now(),
            actor: actor.token_id.clone(),
            action: "token.revoke".into(),
            target: id.to_owned(),
            detail: serde_json::Value::Null,
        };
        let _turn = self.copy.turn().await;
        if !self.backend.revoke_token(id, &audit).await? {
            return Ok(false);
        }
        // Effective for the very next request.
        self.copy.remove(id)?;
        Ok(true)
    }

    /// Active tokens, oldest first. Asked of the backend rather than this
    /// instance's copy, so that the list shows what every instance shares.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, AuthError> {
        self.backend.list_tokens().await
    }

    /// The principal of a bearer token, or `None` (unknown, revoked, expired
    /// or malformed: callers answer all of these the same way). Answered
    /// from this instance's copy alone.
    pub fn authenticate(&self, bearer: &str) -> Option<Arc<Principal>> {
        let (id, secret) = split_bearer(bearer);
        self.copy.read(id, |r| r.admit(secret))
    }

    /// As [`TokenStore::authenticate`]; and over a backend other instances
    /// share, a `cdse_` token this copy does not hold is looked up in the
    /// backend before it is refused (another instance may have created it
    /// a moment ago, and the copy has not heard yet). At most a few
    /// look-ups run at once; beyond, an unknown token is refused as by
    /// `authenticate`. A token found so is not added to the copy: the
    /// copy learns only from the backend's change signal, so that a
    /// look-up racing a revocation cannot bring a revoked token back.
    ///
    /// [`AuthError::Unavailable`] when the look-up could not be made (the
    /// database is away): the token may well be valid, so the caller must
    /// not answer as for an unknown one.
    pub async fn authenticate_or_look_up(
        &self,
        bearer: &str,
    ) -> Result<Option<Arc<Principal>>, AuthError> {
        if let Some(p) = self.authenticate(bearer) {
            return Ok(Some(p));
        }
        let (id, secret) = split_bearer(bearer);
        if id == BOOTSTRAP_ID {
            // Not one of ours: any text would do, nothing to look up.
            return Ok(None);
        }
        let Some(Ok(_permit)) = self.lookups.as_ref().map(Semaphore::try_acquire) else {
            return Ok(None);
        };
        Ok(self
            .look_up(id)
            .await?
            .and_then(|found| Record::new(found).admit(secret)))
    }

    /// The active token `id`, asked of the backend. A failure other than
    /// the backend being away is answered as for an unknown token (said in
    /// the log); the backend away is [`AuthError::Unavailable`].
    async fn look_up(&self, id: &str) -> Result<Option<StoredToken>, AuthError> {
        match self.backend.active_token(id).await {
            Ok(found) => Ok(found),
            Err(e @ AuthError::Unavailable(_)) => Err(e),
            Err(error) => {
                tracing::error!(%error, "token store failure");
                Ok(None)
            }
        }
    }

    /// The principal of an active token by id, whatever its expiry: from
    /// the copy, or over a shared backend from the backend.
    async fn principal(&self, id: &str) -> Result<Option<Arc<Principal>>, AuthError> {
        if let Some(p) = self.copy.read(id, |r| Some(Arc::clone(r.principal()))) {
            return Ok(Some(p));
        }
        // Only a shared backend holds what this copy lacks.
        if self.lookups.is_none() {
            return Ok(None);
        }
        Ok(self
            .look_up(id)
            .await?
            .map(|found| Arc::clone(Record::new(found).principal())))
    }

    /// Replaces the copy with what the backend holds now.
    async fn reload(&self) -> Result<(), AuthError> {
        self.copy.reload(&*self.backend).await
    }
}

/// A bearer's token id and secret: `cdse_<id>_<secret>`, or any other text
/// as the secret of the token given by `CDS_EVENTS_ADMIN_TOKEN`.
fn split_bearer(bearer: &str) -> (&str, &str) {
    bearer
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|rest| rest.split_once('_'))
        .unwrap_or((BOOTSTRAP_ID, bearer))
}

/// A new token for `actor`, checked: its id, its secret and what is stored.
fn new_token(
    name: &str,
    grants: Vec<Grant>,
    expires_at: Option<DateTime<Utc>>,
    actor: &str,
) -> Result<NewToken, AuthError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(AuthError::Invalid(
            "name must be 1 to 200 characters".into(),
        ));
    }
    if grants.is_empty() {
        return Err(AuthError::Invalid(
            "a token needs at least one grant".into(),
        ));
    }
    if expires_at.is_some_and(|e| e <= Utc::now()) {
        return Err(AuthError::Invalid("expires_at is in the past".into()));
    }
    let id = random_id();
    let secret_part = random_text(32);
    let secret = format!("{TOKEN_PREFIX}{id}_{secret_part}");
    let info = TokenInfo {
        id,
        name: name.to_owned(),
        grants,
        created_at: Utc::now(),
        expires_at,
        created_by: (actor != "system").then(|| actor.to_owned()),
    };
    Ok(NewToken {
        token: StoredToken {
            info,
            hash: SecretHash::of(&secret_part),
        },
        secret,
    })
}
