//! Tokens: stored as SHA-256 hashes in `<data-dir>/auth.db`, checked from an
//! in-memory copy (so revocation takes effect at once and a request costs no
//! I/O), with an audit trail of every change.

use crate::{Grant, Principal};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The file name of the token store inside the data directory.
pub const AUTH_DB: &str = "auth.db";
/// Where a generated admin token is written (mode 0600) for the local CLI.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The id of the admin token given by `CDS_EVENTS_ADMIN_TOKEN`, whose text
/// is whatever the operator chose rather than one of ours.
const BOOTSTRAP_ID: &str = "bootstrap";
const TOKEN_PREFIX: &str = "cdse_";
const TICKET_PREFIX: &str = "cdst_";

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

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The token id that acted (`"system"` for bootstrap).
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

/// How the store got its first admin token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The store already had tokens: nothing was done.
    Existing,
    /// `CDS_EVENTS_ADMIN_TOKEN` became the admin token.
    FromEnv,
    /// A token was generated and written to `file`; print it once.
    Generated { token: String, file: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token store error: {0}")]
    Storage(String),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl From<rusqlite::Error> for AuthError {
    fn from(e: rusqlite::Error) -> Self {
        AuthError::Storage(e.to_string())
    }
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

/// Outstanding tickets by the hash of their text: who they stand for, until when.
type Tickets = HashMap<[u8; 32], (Arc<Principal>, Instant)>;

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

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    grants TEXT NOT NULL,
    hash BLOB NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    created_by TEXT,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
";

impl TokenStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path, ticket_ttl: Duration) -> Result<TokenStore, AuthError> {
        std::fs::create_dir_all(data_dir).map_err(|source| AuthError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        let conn = Connection::open(data_dir.join(AUTH_DB))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
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
                let grants: Vec<Grant> = serde_json::from_str(&grants).map_err(|e| {
                    AuthError::Storage(format!("token {id}: unreadable grants: {e}"))
                })?;
                let hash: [u8; 32] = hash
                    .try_into()
                    .map_err(|_| AuthError::Storage(format!("token {id}: bad hash length")))?;
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
            .map_err(|_| AuthError::Storage("token store lock poisoned".into()))
    }

    /// Gives an empty store its admin token: `env_token` if set, else a
    /// generated one written to `<data_dir>/admin.token` (0600). A store
    /// that ever had a token is left alone.
    pub fn bootstrap(
        &self,
        env_token: Option<&str>,
        data_dir: &Path,
    ) -> Result<Bootstrap, AuthError> {
        let any: i64 = self
            .conn()?
            .query_row("SELECT COUNT(*) FROM tokens", [], |r| r.get(0))?;
        if any > 0 {
            return Ok(Bootstrap::Existing);
        }
        let admin = vec![Grant::Admin];
        match env_token.map(str::trim).filter(|t| !t.is_empty()) {
            Some(token) => {
                if token.len() < 16 {
                    return Err(AuthError::Invalid(
                        "CDS_EVENTS_ADMIN_TOKEN must be at least 16 characters".into(),
                    ));
                }
                let info = TokenInfo {
                    id: BOOTSTRAP_ID.into(),
                    name: "admin (CDS_EVENTS_ADMIN_TOKEN)".into(),
                    grants: admin,
                    created_at: Utc::now(),
                    expires_at: None,
                    created_by: None,
                };
                self.insert(&info, sha256(token), "system")?;
                Ok(Bootstrap::FromEnv)
            }
            None => {
                let created = self.create_with_actor("admin (generated)", admin, None, "system")?;
                let file = data_dir.join(ADMIN_TOKEN_FILE);
                write_secret_file(&file, &created.secret)?;
                Ok(Bootstrap::Generated {
                    token: created.secret,
                    file,
                })
            }
        }
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
        let grants =
            serde_json::to_string(&info.grants).map_err(|e| AuthError::Storage(e.to_string()))?;
        {
            let mut conn = self.conn()?;
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO tokens(id, name, grants, hash, created_at, expires_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![info.id, info.name, grants, hash.to_vec(), info.created_at, info.expires_at, info.created_by],
            )?;
            audit(
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
            .map_err(|_| AuthError::Storage("token cache lock poisoned".into()))?
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
        audit(
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
            .map_err(|_| AuthError::Storage("token cache lock poisoned".into()))?
            .remove(id);
        self.tickets
            .lock()
            .map_err(|_| AuthError::Storage("ticket lock poisoned".into()))?
            .retain(|_, (p, _)| p.token_id != id);
        Ok(true)
    }

    /// Active tokens, oldest first.
    pub fn list(&self) -> Result<Vec<TokenInfo>, AuthError> {
        let active = self
            .active
            .read()
            .map_err(|_| AuthError::Storage("token cache lock poisoned".into()))?;
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
            .map_err(|_| AuthError::Storage("ticket lock poisoned".into()))?;
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

    /// The newest audit entries, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, AuthError> {
        let conn = self.conn()?;
        let mut st = conn.prepare(
            "SELECT seq, at, actor, action, target, detail FROM audit ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit as i64], |r| {
            Ok(AuditEntry {
                seq: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                detail: serde_json::from_str(&r.get::<_, String>(5)?)
                    .unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

fn audit(
    conn: &Connection,
    actor: &str,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), AuthError> {
    conn.execute(
        "INSERT INTO audit(at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![Utc::now(), actor, action, target, detail.to_string()],
    )?;
    Ok(())
}

/// Writes a secret readable by its owner only.
fn write_secret_file(path: &Path, secret: &str) -> Result<(), AuthError> {
    use std::io::Write;
    let io = |source| AuthError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    f.write_all(secret.as_bytes()).map_err(io)?;
    f.write_all(b"\n").map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// Reads the admin token file of a data directory, if there is one.
pub fn read_admin_token(data_dir: &Path) -> Option<String> {
    std::fs::read_to_string(data_dir.join(ADMIN_TOKEN_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
