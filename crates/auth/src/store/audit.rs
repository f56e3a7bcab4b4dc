//! The audit trail: one row per change of a token, written in the change's
//! transaction.

use super::TokenStore;
use crate::AuthError;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;

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

impl TokenStore {
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

/// Records a change (in the caller's transaction).
pub(super) fn record(
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
