//! [`TokenStore`]: the token policy over any [`TokenBackend`]. Secrets are
//! made and checked here, and only their hashes go to the backend; the
//! active tokens are copied in memory, so authenticating a request costs no
//! I/O and a revocation takes effect on this instance at once. Then tickets
//! ([`tickets`]), the audit trail ([`audit`]) and the first admin token
//! ([`bootstrap`]).
//!
//! This module must never hold SQL, nor know which backend it runs on
//! beyond `open` picking the embedded default; the backend never sees a
//! secret.

mod audit;
mod bootstrap;
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
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use bootstrap::{ADMIN_TOKEN_FILE, Bootstrap, read_admin_token};

const TOKEN_PREFIX: &str = "cdse_";

/// An active token as held in memory.
#[derive(Debug, Clone)]
struct Record {
    hash: SecretHash,
    info: TokenInfo,
    /// Handed out, shared, on every successful authentication.
    principal: Arc<Principal>,
}

impl Record {
    fn new(token: StoredToken) -> Self {
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
}

/// The token store.
#[derive(Debug)]
pub struct TokenStore {
    backend: Arc<dyn TokenBackend>,
    active: RwLock<HashMap<String, Record>>,
    ticket_ttl: Duration,
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

impl TokenStore {
    /// Opens (creating if needed) the SQLite store in `data_dir`.
    pub async fn open(data_dir: &Path, ticket_ttl: Duration) -> Result<TokenStore, AuthError> {
        let dir = data_dir.to_owned();
        let backend = tokio::task::spawn_blocking(move || SqliteTokens::open(&dir))
            .await
            .map_err(|e| AuthError::Backend(Box::new(e)))??;
        TokenStore::with_backend(Arc::new(backend), ticket_ttl).await
    }

    /// A store over `backend`, with its active tokens loaded.
    pub async fn with_backend(
        backend: Arc<dyn TokenBackend>,
        ticket_ttl: Duration,
    ) -> Result<TokenStore, AuthError> {
        let active = backend
            .active_tokens()
            .await?
            .into_iter()
            .map(|t| (t.info.id.clone(), Record::new(t)))
            .collect();
        Ok(TokenStore {
            backend,
            active: RwLock::new(active),
            ticket_ttl,
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
        self.create_with_actor(name, grants, expires_at, &actor.token_id)
            .await
    }

    async fn create_with_actor(
        &self,
        name: &str,
        grants: Vec<Grant>,
        expires_at: Option<DateTime<Utc>>,
        actor: &str,
    ) -> Result<CreatedToken, AuthError> {
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
            id: id.clone(),
            name: name.to_owned(),
            grants,
            created_at: Utc::now(),
            expires_at,
            created_by: (actor != "system").then(|| actor.to_owned()),
        };
        self.insert(info.clone(), SecretHash::of(&secret_part), actor)
            .await?;
        Ok(CreatedToken { info, secret })
    }

    async fn insert(
        &self,
        info: TokenInfo,
        hash: SecretHash,
        actor: &str,
    ) -> Result<(), AuthError> {
        let audit = NewAuditEntry {
            at: Utc::now(),
            actor: actor.to_owned(),
            action: "token.create".into(),
            target: info.id.clone(),
            detail: serde_json::json!({"name": info.name, "grants": info.grants, "expires_at": info.expires_at}),
        };
        let token = StoredToken { info, hash };
        self.backend.insert_token(&token, &audit).await?;
        self.active
            .write()
            .map_err(|_| AuthError::Poisoned("token cache"))?
            .insert(token.info.id.clone(), Record::new(token));
        Ok(())
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
        if !self.backend.revoke_token(id, &audit).await? {
            return Ok(false);
        }
        // Effective for the very next request.
        self.active
            .write()
            .map_err(|_| AuthError::Poisoned("token cache"))?
            .remove(id);
        Ok(true)
    }

    /// Active tokens, oldest first. Asked of the backend rather than this
    /// instance's copy, so that the list shows what every instance shares.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, AuthError> {
        self.backend.list_tokens().await
    }

    /// The principal of a bearer token, or `None` (unknown, revoked, expired
    /// or malformed: callers answer all of these the same way).
    pub fn authenticate(&self, bearer: &str) -> Option<Arc<Principal>> {
        let (id, secret) = match bearer
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        {
            Some((id, secret)) => (id, secret),
            None => (BOOTSTRAP_ID, bearer),
        };
        let active = self.active.read().ok()?;
        let record = active.get(id)?;
        if !record.hash.matches(secret) {
            return None;
        }
        if record.info.expires_at.is_some_and(|e| e <= Utc::now()) {
            return None;
        }
        Some(Arc::clone(&record.principal))
    }

    /// The principal of an active token by id, whatever its expiry.
    fn principal(&self, id: &str) -> Option<Arc<Principal>> {
        let active = self.active.read().ok()?;
        active.get(id).map(|r| Arc::clone(&r.principal))
    }
}
