//! The PostgreSQL [`TokenBackend`]: tokens, the audit trail and tickets in
//! one database that several cds-events instances share.
//!
//! The pool, the migrations and `LISTEN` are the store crate's
//! ([`cds_events_store::pg`]); PostgreSQL's errors become [`AuthError`]s
//! here and nowhere else, a database that is away as
//! [`AuthError::Unavailable`]. Tickets are rows, taken by one
//! `DELETE … RETURNING`, so that a ticket issued by one instance is accepted
//! once by any. Every change to the tokens raises a version and announces it
//! ([`changes`]): [`PgTokens::changes`] is how the token store of each
//! instance learns of the others' creations and revocations. This module
//! keeps records: it never sees a secret and never decides who may do what.

mod changes;
mod schema;

use crate::{
    AuditEntry, AuthError, Grant, NewAuditEntry, SecretHash, StoredToken, Ticket, TokenBackend,
    TokenInfo,
};
use async_trait::async_trait;
use cds_events_store::pg::deadpool_postgres::{GenericClient, Transaction};
use cds_events_store::pg::tokio_postgres::error::SqlState;
use cds_events_store::pg::tokio_postgres::{self, Row};
use cds_events_store::pg::{PgOptions, PgPool};
use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// For `?` on the driver's answers; the error is kept, boxed.
impl From<tokio_postgres::Error> for AuthError {
    fn from(e: tokio_postgres::Error) -> Self {
        cds_events_store::Error::from(e).into()
    }
}

/// Tokens, the audit trail and tickets in PostgreSQL.
#[derive(Debug)]
pub struct PgTokens {
    pool: PgPool,
    /// The version of the tokens this instance last heard of.
    version: watch::Receiver<i64>,
    /// The task that listens and polls ([`changes::follow`]); stopped on drop.
    follower: tokio::task::AbortHandle,
}

impl Drop for PgTokens {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

impl PgTokens {
    /// Connects, creates or migrates the tables (once, however many
    /// instances start together) and starts following the changes.
    pub async fn open(options: &PgOptions) -> Result<PgTokens, AuthError> {
        let pool = PgPool::connect(options).await?;
        schema::LAYOUT.apply(&pool).await?;
        let (tx, version) = watch::channel(changes::read_version(&pool).await?);
        let follower = tokio::spawn(changes::follow(options.clone(), pool.clone(), tx));
        Ok(PgTokens {
            pool,
            version,
            follower: follower.abort_handle(),
        })
    }

    /// Inserts a token and its audit entry in `tx` (which has already
    /// raised the version).
    async fn insert_in(
        tx: &Transaction<'_>,
        token: &StoredToken,
        audit: &NewAuditEntry,
    ) -> Result<(), AuthError> {
        let info = &token.info;
        let grants = serde_json::to_string(&info.grants).map_err(|source| AuthError::Encode {
            what: "grants",
            source,
        })?;
        tx.execute(
            "INSERT INTO auth_tokens (id, name, grants, hash, created_at, expires_at, created_by)
             VALUES ($1, $2, ($3::TEXT)::JSONB, $4, $5, $6, $7)",
            &[
                &info.id,
                &info.name,
                &grants,
                &token.hash.as_bytes().as_slice(),
                &info.created_at,
                &info.expires_at,
                &info.created_by,
            ],
        )
        .await
        .map_err(|e| match e.code() {
            Some(&SqlState::UNIQUE_VIOLATION) => AuthError::TokenExists {
                id: info.id.clone(),
            },
            _ => e.into(),
        })?;
        record(tx, audit).await
    }
}

/// Raises the version of the tokens and announces it at commit. Every
/// transaction that changes the tokens calls it first, so that they take
/// the version row's lock in one order and commit one after another.
async fn raise_version(tx: &Transaction<'_>) -> Result<i64, AuthError> {
    let v: i64 = tx
        .query_one(
            "UPDATE auth_version SET version = version + 1 RETURNING version",
            &[],
        )
        .await?
        .try_get(0)?;
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&changes::CHANNEL, &v.to_string()],
    )
    .await?;
    Ok(v)
}

/// Writes an audit entry (in the caller's transaction, if any).
async fn record(client: &impl GenericClient, e: &NewAuditEntry) -> Result<(), AuthError> {
    client
        .execute(
            "INSERT INTO auth_audit (at, actor, action, target, detail)
             VALUES ($1, $2, $3, $4, ($5::TEXT)::JSONB)",
            &[&e.at, &e.actor, &e.action, &e.target, &e.detail.to_string()],
        )
        .await?;
    Ok(())
}

const TOKEN_COLUMNS: &str =
    "id, name, grants::TEXT, hash, created_at, expires_at, created_by FROM auth_tokens";

/// A row of [`TOKEN_COLUMNS`].
fn stored_token(r: &Row) -> Result<StoredToken, AuthError> {
    let id: String = r.try_get(0)?;
    let grants: Vec<Grant> =
        serde_json::from_str(r.try_get(2)?).map_err(|e| AuthError::Unreadable {
            id: id.clone(),
            problem: format!("unreadable grants: {e}"),
        })?;
    let hash = SecretHash::from_bytes(r.try_get(3)?).ok_or_else(|| AuthError::Unreadable {
        id: id.clone(),
        problem: "bad hash length".into(),
    })?;
    let info = TokenInfo {
        id,
        name: r.try_get(1)?,
        grants,
        created_at: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        created_by: r.try_get(6)?,
    };
    Ok(StoredToken { info, hash })
}

#[async_trait]
impl TokenBackend for PgTokens {
    async fn insert_token(
        &self,
        token: &StoredToken,
        audit: &NewAuditEntry,
    ) -> Result<(), AuthError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        raise_version(&tx).await?;
        PgTokens::insert_in(&tx, token, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_first_token(
        &self,
        token: &StoredToken,
        audit: &NewAuditEntry,
    ) -> Result<bool, AuthError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        // Holding the version row's lock, this statement sees every token
        // committed by the writers before (read committed: a snapshot per
        // statement), and the writers after wait for this commit.
        raise_version(&tx).await?;
        let any: bool = tx
            .query_one("SELECT EXISTS (SELECT 1 FROM auth_tokens)", &[])
            .await?
            .try_get(0)?;
        if any {
            tx.rollback().await?;
            return Ok(false);
        }
        PgTokens::insert_in(&tx, token, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn revoke_token(&self, id: &str, audit: &NewAuditEntry) -> Result<bool, AuthError> {
        let mut conn = self.pool.get().await?;
        let tx = conn.transaction().await?;
        raise_version(&tx).await?;
        let n = tx
            .execute(
                "UPDATE auth_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &audit.at],
            )
            .await?;
        if n == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.execute("DELETE FROM auth_tickets WHERE token_id = $1", &[&id])
            .await?;
        record(&tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenInfo>, AuthError> {
        let conn = self.pool.get().await?;
        // Ids compare as bytes, as everywhere else, whatever the database's
        // collation.
        let rows = conn
            .query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} WHERE revoked_at IS NULL
                     ORDER BY created_at, id COLLATE \"C\""
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| stored_token(r).map(|t| t.info))
            .collect()
    }

    async fn active_tokens(&self) -> Result<Vec<StoredToken>, AuthError> {
        let conn = self.pool.get().await?;
        let rows = conn
            .query(
                &format!("SELECT {TOKEN_COLUMNS} WHERE revoked_at IS NULL"),
                &[],
            )
            .await?;
        rows.iter().map(stored_token).collect()
    }

    async fn active_token(&self, id: &str) -> Result<Option<StoredToken>, AuthError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_opt(
                &format!("SELECT {TOKEN_COLUMNS} WHERE id = $1 AND revoked_at IS NULL"),
                &[&id],
            )
            .await?;
        row.as_ref().map(stored_token).transpose()
    }

    async fn ever_had_a_token(&self) -> Result<bool, AuthError> {
        let conn = self.pool.get().await?;
        let row = conn
            .query_one("SELECT EXISTS (SELECT 1 FROM auth_tokens)", &[])
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<(), AuthError> {
        let conn = self.pool.get().await?;
        record(&conn, entry).await
    }

    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, AuthError> {
        let conn = self.pool.get().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = conn
            .query(
                "SELECT seq, at, actor, action, target, detail::TEXT FROM auth_audit
                 ORDER BY seq DESC LIMIT $1",
                &[&limit],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    seq: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    detail: serde_json::from_str(r.try_get(5)?).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    async fn store_ticket(&self, ticket: &Ticket) -> Result<(), AuthError> {
        let conn = self.pool.get().await?;
        conn.execute(
            "INSERT INTO auth_tickets (hash, token_id, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (hash) DO UPDATE
             SET token_id = excluded.token_id, expires_at = excluded.expires_at",
            &[
                &ticket.hash.as_bytes().as_slice(),
                &ticket.token_id,
                &ticket.expires_at,
            ],
        )
        .await?;
        Ok(())
    }

    async fn take_ticket(
        &self,
        hash: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, AuthError> {
        let conn = self.pool.get().await?;
        // One statement: of several instances taking it at once, one gets
        // the row, the others nothing.
        let row = conn
            .query_opt(
                "DELETE FROM auth_tickets WHERE hash = $1
                 RETURNING token_id, expires_at > $2",
                &[&hash.as_bytes().as_slice(), &now],
            )
            .await?;
        match row {
            Some(r) if r.try_get::<_, bool>(1)? => Ok(Some(r.try_get(0)?)),
            _ => Ok(None),
        }
    }

    async fn sweep_tickets(&self, now: DateTime<Utc>) -> Result<usize, AuthError> {
        let conn = self.pool.get().await?;
        let n = conn
            .execute("DELETE FROM auth_tickets WHERE expires_at <= $1", &[&now])
            .await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn changes(&self) -> Option<watch::Receiver<i64>> {
        Some(self.version.clone())
    }
}
