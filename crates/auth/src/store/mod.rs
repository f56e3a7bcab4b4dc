//! Tokens: stored as SHA-256 hashes in `<data-dir>/auth.db`, checked from an
//! in-memory copy (so revocation takes effect at once and a request costs no
//! I/O), with an audit trail of every change ([`audit`]), single-use tickets
//! ([`tickets`]) and the first admin token ([`bootstrap`]).
//!
//! The connection, its pragmas, the schema version and the `meta` table are
//! the store crate's (`cds_events_store`); SQLite's errors become
//! [`AuthError`]s here and nowhere else.

mod audit;
mod bootstrap;
mod schema;
mod tickets;

use crate::{AuthError, Grant, Principal};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bootstrap::BOOTSTRAP_ID;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tickets::Tickets;

pub use audit::AuditEntry;
pub use bootstrap::{ADMIN_TOKEN_FILE, Bootstrap, read_admin_token};

/// The file name of the token store inside the data directory.
pub const AUTH_DB: &str = "auth.db";
const TOKEN_PREFIX: &str = "cdse_";

impl From<cds_events_store::Error> for AuthError {
    fn from(e: cds_events_store::Error) -> Self {
        use cds_events_store::Error;
        match e {
            Error::SchemaTooNew { path, found, known } => {
                AuthError::SchemaTooNew { path, found, known }
            }
            other => AuthError::Backend(Box::new(other)),
        }
    }
}

/// For `?` in this module's SQL; the driver's error is kept, boxed.
impl From<rusqlite::Error> for AuthError {
    fn from(e: rusqlite::Error) -> Self {
        cds_events_store::Error::from(e).into()
    }
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub grants: Vec<Grant>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The token id that created it (`None` for the bootstrap token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// A token just created: the only time its secret is known.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub info: TokenInfo,
    pub secret: String,
}

#[derive(Debug, Clone)]
struct Record {
    hash: [u8; 32],
    info: TokenInfo,
    /// Handed out, shared, on every successful authentication.
    principal: Arc<Principal>,
}

impl Record {
    fn new(hash: [u8; 32], info: TokenInfo) -> Self {
        let principal = Arc::new(Principal {
            token_id: info.id.clone(),
            name: info.name.clone(),
            grants: info.grants.clone(),
        });
        Record {
            hash,
            info,
            principal,
        }
    }
}

/// The token store.
#[derive(Debug)]
pub struct TokenStore {
    conn: Mutex<Connection>,
    active: RwLock<HashMap<String, Record>>,
    tickets: Mutex<Tickets>,
    ticket_ttl: Duration,
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
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
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path, ticket_ttl: Duration) -> Result<TokenStore, AuthError> {
        std::fs::create_dir_all(data_dir).map_err(|source| AuthError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        let conn = cds_events_store::open(&data_dir.join(AUTH_DB), &schema::options())?;
        schema::LAYOUT.apply(&conn)?;
        let mut active = HashMap::new();
        {
            let mut st = conn.prepare(
                "SELECT id, name, grants, hash, created_at, expires_at, created_by FROM tokens WHERE revoked_at IS NULL",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, DateTime<Utc>>(4)?,
                    r.get::<_, Option<DateTime<Utc>>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })?;
            for row in rows {
                let (id, name, grants, hash, created_at, expires_at, created_by) = row?;
                let grants: Vec<Grant> =
                    serde_json::from_str(&grants).map_err(|e| AuthError::Unreadable {
                        id: id.clone(),
                        problem: format!("unreadable grants: {e}"),
                    })?;
                let hash: [u8; 32] = hash.try_into().map_err(|_| AuthError::Unreadable {
                    id: id.clone(),
                    problem: "bad hash length".into(),
                })?;
                let info = TokenInfo {
                    id: id.clone(),
                    name,
                    grants,
                    created_at,
                    expires_at,
                    created_by,
                };
                active.insert(id, Record::new(hash, info));
            }
        }
        Ok(TokenStore {
            conn: Mutex::new(conn),
            active: RwLock::new(active),
            tickets: Mutex::new(HashMap::new()),
            ticket_ttl,
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, AuthError> {
        self.conn
            .lock()
            .map_err(|_| AuthError::Poisoned("token store"))
    }

    /// Creates a token for `actor` (a principal's token id).
    pub fn create(
        &self,
        name: &str,
        grants: Vec<Grant>,
        expires_at: Option<DateTime<Utc>>,
        actor: &Principal,
    ) -> Result<CreatedToken, AuthError> {
        self.create_with_actor(name, grants, expires_at, &actor.token_id)
    }

    fn create_with_actor(
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
        self.insert(&info, sha256(&secret_part), actor)?;
        Ok(CreatedToken { info, secret })
    }

    fn insert(&self, info: &TokenInfo, hash: [u8; 32], actor: &str) -> Result<(), AuthError> {
        let grants = serde_json::to_string(&info.grants).map_err(|source| AuthError::Encode {
            what: "grants",
            source,
        })?;
        {
            let mut conn = self.conn()?;
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO tokens(id, name, grants, hash, created_at, expires_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![info.id, info.name, grants, hash.to_vec(), info.created_at, info.expires_at, info.created_by],
            )?;
            audit::record(
                &tx,
                actor,
                "token.create",
                &info.id,
                serde_json::json!({"name": info.name, "grants": info.grants, "expires_at": info.expires_at}),
            )?;
            tx.commit()?;
        }
        self.active
            .write()
            .map_err(|_| AuthError::Poisoned("token cache"))?
            .insert(info.id.clone(), Record::new(hash, info.clone()));
        Ok(())
    }

    /// Revokes a token; `false` if there is no such active token.
    pub fn revoke(&self, id: &str, actor: &Principal) -> Result<bool, AuthError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, Utc::now()],
        )?;
        if n == 0 {
            return Ok(false);
        }
        audit::record(
            &tx,
            &actor.token_id,
            "token.revoke",
            id,
            serde_json::Value::Null,
        )?;
        tx.commit()?;
        // Effective for the very next request.
        self.active
            .write()
            .map_err(|_| AuthError::Poisoned("token cache"))?
            .remove(id);
        self.tickets
            .lock()
            .map_err(|_| AuthError::Poisoned("ticket"))?
            .retain(|_, (p, _)| p.token_id != id);
        Ok(true)
    }

    /// Active tokens, oldest first.
    pub fn list(&self) -> Result<Vec<TokenInfo>, AuthError> {
        let active = self
            .active
            .read()
            .map_err(|_| AuthError::Poisoned("token cache"))?;
        let mut out: Vec<TokenInfo> = active.values().map(|r| r.info.clone()).collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
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
        let given = sha256(secret);
        if !bool::from(given.ct_eq(&record.hash)) {
            return None;
        }
        if record.info.expires_at.is_some_and(|e| e <= Utc::now()) {
            return None;
        }
        Some(Arc::clone(&record.principal))
    }
}
