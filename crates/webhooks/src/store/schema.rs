//! The SQLite schema of `webhooks.db` and its connection settings.

use rusqlite::{Connection, OptionalExtension};

pub(crate) const SCHEMA_VERSION: i64 = 1;

/// Why each index exists:
/// - `deliveries_due` (partial, pending rows only): a worker's page of due
///   deliveries, in due order, without sorting its whole backlog; rows leave
///   it when they are done, so it stays the size of the backlog;
/// - `deliveries_by_status`: listing a notification's deliveries of one
///   status newest first, and an ordered notification's oldest pending one.
///
/// Delivery ids use AUTOINCREMENT so that an id (the `webhook-id` receivers
/// de-duplicate on) is never reused, even after deletions.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value
);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    filters TEXT NOT NULL,
    headers BLOB NOT NULL,
    secret BLOB NOT NULL,
    previous_secret BLOB,
    previous_valid_until INTEGER,
    enabled INTEGER NOT NULL,
    ordered INTEGER NOT NULL,
    disabled_reason TEXT,
    failing_since INTEGER,
    last_modified INTEGER NOT NULL,
    UNIQUE (project, name)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id INTEGER NOT NULL,
    event_seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    tries INTEGER NOT NULL,
    next_attempt_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due
    ON deliveries(notification_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_status
    ON deliveries(notification_id, status, id);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id INTEGER NOT NULL,
    n INTEGER NOT NULL,
    at INTEGER NOT NULL,
    status_code INTEGER,
    latency_ms INTEGER NOT NULL,
    error TEXT,
    response TEXT,
    PRIMARY KEY (delivery_id, n)
) WITHOUT ROWID;
";

pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // In WAL mode NORMAL loses nothing on a process crash (kill -9), only on
    // power loss; delivery records are recreated from the log position on
    // the same terms.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

pub(crate) fn meta_get<T: rusqlite::types::FromSql>(
    conn: &Connection,
    key: &str,
) -> rusqlite::Result<Option<T>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub(crate) fn meta_set<T: rusqlite::ToSql>(
    conn: &Connection,
    key: &str,
    value: T,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(rusqlite::params![key, value])?;
    Ok(())
}
