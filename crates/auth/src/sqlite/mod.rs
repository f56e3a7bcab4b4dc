//! The SQLite [`TokenBackend`]: tokens and the audit trail in
//! `<data-dir>/auth.db`, tickets in memory ([`tickets`] says why).
//!
//! The connection, its pragmas, the schema version and the `meta` table are
//! the store crate's (`cds_events_store`); SQLite's errors become
//! [`AuthError`]s here and nowhere else. SQLite's calls block (and sync to
//! disk): they run on tokio's blocking threads, never on the async workers.
//! This module keeps records: it never sees a secret and never decides who
//! may do what.

mod schema;
mod tickets;

use crate::{
    AuditEntry, AuthError, Grant, NewAuditEntry, SecretHash, StoredToken, Ticket, TokenBackend,
    TokenInfo,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tickets::Tickets;
use tokio::sync::watch;

/// The file name of the token store inside the data directory.
pub const AUTH_DB: &str = "auth.db";

/// For `?` in this module's SQL; the driver's error is kept, boxed.
impl From<rusqlite::Error> for AuthError {
    fn from(e: rusqlite::Error) -> Self {
        cds_events_store::Error::from(e).into()
    }
}

/// Tokens and the audit trail in `auth.db`, tickets in memory.
///
/// One connection behind a mutex: every call is one short statement or
/// transaction, and authentication never comes here (the token store answers
/// it from memory), so there is nothing for a pool to share.
#[derive(Debug)]
pub struct SqliteTokens {
    conn: Arc<Mutex<Connection>>,
    tickets: Tickets,
}

impl SqliteTokens {
    /// Opens (creating if needed) `<data_dir>/auth.db`, bringing an older
    /// layout up to date and refusing a newer one. Blocks (a file is opened
    /// and perhaps migrated): async callers run it on a blocking thread.
    pub fn open(data_dir: &Path) -> Result<SqliteTokens, AuthError> {
        std::fs::create_dir_all(data_dir).map_err(|source| AuthError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        let conn = cds_events_store::open(&data_dir.join(AUTH_DB), &schema::options())?;
        schema::LAYOUT.apply(&conn)?;
        Ok(SqliteTokens {
            conn: Arc::new(Mutex::new(conn)),
            tickets: Tickets::default(),
        })
    }

    /// Runs `f` on the connection, on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| AuthError::Poisoned("token store"))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| AuthError::Backend(Box::new(e)))?
    }
}

const TOKEN_COLUMNS: &str =
    "id, name, grants, hash, created_at, expires_at, created_by FROM tokens";

/// The columns of [`TOKEN_COLUMNS`], as read.
type TokenRow = (
    String,
    String,
    String,
    Vec<u8>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
);

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn stored_token(row: TokenRow) -> Result<StoredToken, AuthError> {
    let (id, name, grants, hash, created_at, expires_at, created_by) = row;
    let grants: Vec<Grant> = serde_json::from_str(&grants).map_err(|e| AuthError::Unreadable {
        id: id.clone(),
        problem: format!("unreadable grants: {e}"),
    })?;
    let hash = SecretHash::from_bytes(&hash).ok_or_else(|| AuthError::Unreadable {
        id: id.clone(),
        problem: "bad hash length".into(),
    })?;
    let info = TokenInfo {
        id,
        name,
        grants,
        created_at,
        expires_at,
        created_by,
    };
    Ok(StoredToken { info, hash })
}

/// The tokens not revoked, in no order.
fn select_active(conn: &Connection) -> Result<Vec<StoredToken>, AuthError> {
    let mut st = conn.prepare(&format!("SELECT {TOKEN_COLUMNS} WHERE revoked_at IS NULL"))?;
    let rows = st.query_map([], token_row)?;
    rows.map(|row| stored_token(row?)).collect()
}

/// Inserts a token and its audit entry in the caller's transaction.
fn insert_in(
    conn: &Connection,
    token: &StoredToken,
    audit: &NewAuditEntry,
) -> Result<(), AuthError> {
    let info = &token.info;
    let grants = serde_json::to_string(&info.grants).map_err(|source| AuthError::Encode {
        what: "grants",
        source,
    })?;
    conn.execute(
        "INSERT INTO tokens(id, name, grants, hash, created_at, expires_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            info.id,
            info.name,
            grants,
            token.hash.as_bytes().as_slice(),
            info.created_at,
            info.expires_at,
            info.created_by
        ],
    )
    .map_err(|e| match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => AuthError::TokenExists {
            id: info.id.clone(),
        },
        _ => e.into(),
    })?;
    record(conn, audit)
}

/// Writes an audit entry in the caller's transaction.
fn record(conn: &Connection, e: &NewAuditEntry) -> Result<(), AuthError> {
    conn.execute(
        "INSERT INTO audit(at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![e.at, e.actor, e.action, e.target, e.detail.to_string()],
    )?;
    Ok(())
}

#[async_trait]
impl TokenBackend for SqliteTokens {
    async fn insert_token(
        &self,
        token: &StoredToken,
        audit: &NewAuditEntry,
    ) -> Result<(), AuthError> {
        let (token, audit) = (token.clone(), audit.clone());
        self.run(move |conn| {
            let tx = conn.transaction()?;
            insert_in(&tx, &token, &audit)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn insert_first_token(
        &self,
        token: &StoredToken,
        audit: &NewAuditEntry,
    ) -> Result<bool, AuthError> {
        let (token, audit) = (token.clone(), audit.clone());
        self.run(move |conn| {
            // Immediate: the write lock is taken before the check, so that
            // no other connection to the file inserts in between.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let any: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM tokens)", [], |r| r.get(0))?;
            if any {
                return Ok(false);
            }
            insert_in(&tx, &token, &audit)?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn revoke_token(&self, id: &str, audit: &NewAuditEntry) -> Result<bool, AuthError> {
        let (owned_id, audit) = (id.to_owned(), audit.clone());
        let revoked = self
            .run(move |conn| {
                let tx = conn.transaction()?;
                let n = tx.execute(
                    "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    params![owned_id, audit.at],
                )?;
                if n == 0 {
                    return Ok(false);
                }
                record(&tx, &audit)?;
                tx.commit()?;
                Ok(true)
            })
            .await?;
        if revoked {
            self.tickets.drop_token(id)?;
        }
        Ok(revoked)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenInfo>, AuthError> {
        // Sorted here rather than in SQL: `created_at` is text, and rows of
        // older builds may spell a time differently from this one.
        let mut out: Vec<TokenInfo> = self
            .run(|conn| select_active(conn))
            .await?
            .into_iter()
            .map(|t| t.info)
            .collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn active_tokens(&self) -> Result<Vec<StoredToken>, AuthError> {
        self.run(|conn| select_active(conn)).await
    }

    async fn active_token(&self, id: &str) -> Result<Option<StoredToken>, AuthError> {
        let id = id.to_owned();
        self.run(move |conn| {
            let row = conn
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} WHERE id = ?1 AND revoked_at IS NULL"),
                    [id],
                    token_row,
                )
                .optional()?;
            row.map(stored_token).transpose()
        })
        .await
    }

    async fn ever_had_a_token(&self) -> Result<bool, AuthError> {
        self.run(|conn| {
            let any: bool =
                conn.query_row("SELECT EXISTS (SELECT 1 FROM tokens)", [], |r| r.get(0))?;
            Ok(any)
        })
        .await
    }

    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), AuthError> {
        let entry = entry.clone();
        self.run(move |conn| record(conn, &entry)).await
    }

    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, AuthError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let mut st = conn.prepare(
                "SELECT seq, at, actor, action, target, detail FROM audit
                 ORDER BY seq DESC LIMIT ?1",
            )?;
            let rows = st.query_map([limit], |r| {
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
        })
        .await
    }

    async fn store_ticket(&self, ticket: &Ticket) -> Result<(), AuthError> {
        self.tickets.store(ticket)
    }

    async fn take_ticket(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, AuthError> {
        self.tickets.take(hash, now)
    }

    async fn sweep_tickets(&self, now: DateTime<Utc>) -> Result<usize, AuthError> {
        self.tickets.sweep(now)
    }

    /// `auth.db` belongs to this process: every change comes through its
    /// token store, which updates its copy itself.
    fn changes(&self) -> Option<watch::Receiver<i64>> {
        None
    }
}
