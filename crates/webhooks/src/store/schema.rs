//! The SQLite schema of `webhooks.db` and its connection settings.

use rusqlite::{Connection, OptionalExtension};

pub(crate) const SCHEMA_VERSION: i64 = 2;

/// Why each index exists:
/// - `deliveries_due` (partial, pending rows only): a worker's page of due
///   deliveries, in due order, without sorting its whole backlog; rows leave
///   it when they are done, so it stays the size of the backlog;
/// - `deliveries_by_status`: listing a notification's deliveries of one
///   status newest first, and an ordered notification's oldest pending one.
///
/// A successful attempt is kept in its delivery's row (`ok_*`, its time is
/// `updated_at`, its number `attempts`) rather than as an `attempts` row:
/// one row written per delivered event instead of two. Failed attempts have
/// their rows. A redelivery moves a kept success into `attempts` first.
///
/// `purge_queue` lists deleted notifications whose deliveries are still to
/// be deleted (in chunks). `outbox` holds the Notification events of changes, written in the
/// change's transaction, until they are in the log.
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
    updated_at INTEGER NOT NULL,
    ok_status_code INTEGER,
    ok_latency_ms INTEGER,
    ok_response TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_due
    ON deliveries(notification_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_status
    ON deliveries(notification_id, status, id);
CREATE TABLE IF NOT EXISTS purge_queue (
    notification_id INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    event TEXT NOT NULL
);
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

/// Brings a database written by an earlier version to [`SCHEMA_VERSION`]
/// (after [`SCHEMA`] has created what was missing). Returns the version it
/// found.
pub(crate) fn migrate(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let found = meta_get::<i64>(conn, "schema_version")?;
    if found == Some(1) {
        // 1 → 2: successful attempts kept in the delivery's row.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE deliveries ADD COLUMN ok_status_code INTEGER;
             ALTER TABLE deliveries ADD COLUMN ok_latency_ms INTEGER;
             ALTER TABLE deliveries ADD COLUMN ok_response TEXT;
             COMMIT;",
        )?;
        meta_set(conn, "schema_version", 2)?;
    } else if found.is_none() {
        meta_set(conn, "schema_version", SCHEMA_VERSION)?;
    }
    Ok(found)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_1_database_gains_the_success_columns() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(SCHEMA).expect("schema");
        // What version 1 had: no ok_* columns, one delivery with a row.
        conn.execute_batch(
            "ALTER TABLE deliveries DROP COLUMN ok_status_code;
             ALTER TABLE deliveries DROP COLUMN ok_latency_ms;
             ALTER TABLE deliveries DROP COLUMN ok_response;
             INSERT INTO deliveries(notification_id, event_seq, event_id, status, attempts, tries,
                                    next_attempt_at, created_at, updated_at)
             VALUES (1, 7, 'e', 'succeeded', 1, 1, NULL, 0, 0);",
        )
        .expect("v1");
        meta_set(&conn, "schema_version", 1).expect("version");
        assert_eq!(migrate(&conn).expect("migrate"), Some(1));
        assert_eq!(
            meta_get::<i64>(&conn, "schema_version").expect("get"),
            Some(SCHEMA_VERSION)
        );
        let kept: (i64, Option<i64>) = conn
            .query_row("SELECT event_seq, ok_latency_ms FROM deliveries", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("row");
        assert_eq!(kept, (7, None));
        // Already current: nothing to do.
        assert_eq!(migrate(&conn).expect("again"), Some(SCHEMA_VERSION));
    }
}
