//! The SQLite schema of `webhooks.db`, its migrations and its connection
//! settings.

use cds_events_store::{ConnOptions, Error, MetaKey, Migration, Schema, Step, Synchronous};
use rusqlite::Connection;

pub(crate) const SCHEMA_VERSION: i64 = 5;

/// The current layout and how earlier ones reach it.
pub(crate) const LAYOUT: Schema = Schema {
    create: SCHEMA,
    version: SCHEMA_VERSION,
    // The store has always written its version: tables without one were
    // made by `SCHEMA` of this build (interrupted before the version).
    unversioned: SCHEMA_VERSION,
    migrations: &[
        Migration {
            from: 1,
            // 1 → 2: successful attempts kept in the delivery's row.
            step: Step::Sql(
                "ALTER TABLE deliveries ADD COLUMN ok_status_code INTEGER;
                 ALTER TABLE deliveries ADD COLUMN ok_latency_ms INTEGER;
                 ALTER TABLE deliveries ADD COLUMN ok_response TEXT;",
            ),
        },
        Migration {
            from: 2,
            // 2 → 3: each notification's body format (CloudEvents or CDS's).
            step: Step::Sql(
                "ALTER TABLE notifications ADD COLUMN format TEXT NOT NULL DEFAULT 'cds';
                 ALTER TABLE notifications ADD COLUMN content_mode TEXT NOT NULL DEFAULT 'structured';",
            ),
        },
        Migration {
            from: 3,
            // 3 → 4: a notification's deliveries by last change (its health).
            step: Step::Sql(RECENT_INDEX),
        },
        Migration {
            from: 4,
            // 4 → 5: ordering per key (every earlier delivery has the one
            // empty key, every earlier notification none).
            step: Step::Sql(
                "ALTER TABLE notifications ADD COLUMN ordered_by TEXT;
                 ALTER TABLE deliveries ADD COLUMN order_key TEXT NOT NULL DEFAULT '';",
            ),
        },
    ],
};

/// Random, fixed at creation: part of every public delivery id.
pub(crate) const EPOCH: MetaKey<String> = MetaKey::new("epoch");

/// The highest notification id ever given (see `notifications::next_id`).
pub(crate) const NOTIFICATION_ID_HIGH: MetaKey<i64> = MetaKey::new("notification_id_high");

/// The last log position the dispatcher has turned into deliveries.
pub(crate) const POSITION: MetaKey<i64> = MetaKey::new("position");

/// Why each index exists:
/// - `deliveries_due` (partial, pending rows only): a worker's claim of due
///   deliveries, in due order, without sorting its whole backlog; rows leave
///   it when they are done, so it stays the size of the backlog;
/// - `deliveries_by_status`: listing a notification's deliveries of one
///   status newest first, and an ordered notification's oldest pending one;
///   counting its pending and failed deliveries without reading the rows;
/// - `deliveries_recent`: a notification's deliveries changed since a time,
///   whose attempts make its health over the last 24 h (every attempt
///   moves `updated_at` to its time, so an attempt since then belongs to a
///   delivery in that range).
/// - `deliveries_by_key` (partial, pending rows only): whether a pending
///   delivery of a notification ordered per key has an earlier pending one
///   of its key (`order_key`), which holds it back.
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
    format TEXT NOT NULL DEFAULT 'cds',
    content_mode TEXT NOT NULL DEFAULT 'structured',
    ordered_by TEXT,
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
    ok_response TEXT,
    order_key TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS deliveries_due
    ON deliveries(notification_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_status
    ON deliveries(notification_id, status, id);
CREATE INDEX IF NOT EXISTS deliveries_recent
    ON deliveries(notification_id, updated_at);
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

/// Creates what is missing and brings a database written by an earlier
/// version to [`SCHEMA_VERSION`]. Returns the version it found.
pub(crate) fn migrate(conn: &Connection) -> Result<Option<i64>, Error> {
    let found = LAYOUT.apply(conn)?;
    // After the migrations: `SCHEMA` runs first on every database, where
    // one of version 4 has no `order_key` to index yet.
    conn.execute_batch(BY_KEY_INDEX)?;
    Ok(found)
}

/// Version 5's index, made once the column is there (see [`migrate`]).
const BY_KEY_INDEX: &str = "CREATE INDEX IF NOT EXISTS deliveries_by_key
    ON deliveries(notification_id, order_key, id) WHERE status = 'pending';";

/// The index of version 4 (also in [`SCHEMA`]).
const RECENT_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS deliveries_recent ON deliveries(notification_id, updated_at);";

/// The writer's connection. In WAL mode `synchronous=NORMAL` loses nothing on
/// a process crash (kill -9), only on power loss; delivery records are
/// recreated from the log position on the same terms.
pub(crate) fn writer_options() -> ConnOptions {
    ConnOptions {
        synchronous: Synchronous::Normal,
        cache_kib: Some(8192),
        foreign_keys: false,
        temp_store_memory: false,
        ..ConnOptions::default()
    }
}

/// The readers' connections: SQLite's default cache.
pub(crate) fn reader_options() -> ConnOptions {
    ConnOptions {
        synchronous: Synchronous::Normal,
        foreign_keys: false,
        temp_store_memory: false,
        ..ConnOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes version 5's columns out of a database made by [`SCHEMA`], to
    /// stand for an earlier version.
    const WITHOUT_V5: &str = "ALTER TABLE notifications DROP COLUMN ordered_by;
         ALTER TABLE deliveries DROP COLUMN order_key;";

    #[test]
    fn a_version_1_database_gains_the_success_columns() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(SCHEMA).expect("schema");
        conn.execute_batch(WITHOUT_V5).expect("v4");
        // What version 1 had: no ok_* columns, one delivery with a row.
        conn.execute_batch(
            "ALTER TABLE notifications DROP COLUMN format;
             ALTER TABLE notifications DROP COLUMN content_mode;
             ALTER TABLE deliveries DROP COLUMN ok_status_code;
             ALTER TABLE deliveries DROP COLUMN ok_latency_ms;
             ALTER TABLE deliveries DROP COLUMN ok_response;
             INSERT INTO deliveries(notification_id, event_seq, event_id, status, attempts, tries,
                                    next_attempt_at, created_at, updated_at)
             VALUES (1, 7, 'e', 'succeeded', 1, 1, NULL, 0, 0);",
        )
        .expect("v1");
        cds_events_store::meta::SCHEMA_VERSION
            .set(&conn, &1)
            .expect("version");
        assert_eq!(migrate(&conn).expect("migrate"), Some(1));
        assert_eq!(
            cds_events_store::meta::SCHEMA_VERSION
                .get(&conn)
                .expect("get"),
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

    #[test]
    fn a_version_2_database_gains_the_format_columns_its_notifications_keeping_cds() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(SCHEMA).expect("schema");
        conn.execute_batch(WITHOUT_V5).expect("v4");
        conn.execute_batch(
            "ALTER TABLE notifications DROP COLUMN format;
             ALTER TABLE notifications DROP COLUMN content_mode;
             INSERT INTO notifications(uid, project, name, url, filters, headers, secret, enabled,
                                       ordered, last_modified)
             VALUES ('u', 'P', 'n', 'https://x', '{}', x'', x'', 1, 0, 0);",
        )
        .expect("v2");
        cds_events_store::meta::SCHEMA_VERSION
            .set(&conn, &2)
            .expect("version");
        assert_eq!(migrate(&conn).expect("migrate"), Some(2));
        let kept: (String, String) = conn
            .query_row("SELECT format, content_mode FROM notifications", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("row");
        assert_eq!(kept, ("cds".to_owned(), "structured".to_owned()));
    }

    #[test]
    fn a_version_3_database_gains_the_index_of_recent_deliveries() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(SCHEMA).expect("schema");
        conn.execute_batch(WITHOUT_V5).expect("v4");
        conn.execute_batch("DROP INDEX deliveries_recent;")
            .expect("v3");
        cds_events_store::meta::SCHEMA_VERSION
            .set(&conn, &3)
            .expect("version");
        assert_eq!(migrate(&conn).expect("migrate"), Some(3));
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id FROM deliveries
                 WHERE notification_id = 1 AND updated_at >= 0",
                [],
                |r| r.get(3),
            )
            .expect("plan");
        assert!(plan.contains("deliveries_recent"), "{plan}");
    }

    #[test]
    fn a_version_4_database_gains_ordering_per_key_its_rows_in_one_key() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(SCHEMA).expect("schema");
        conn.execute_batch(WITHOUT_V5).expect("v4");
        conn.execute_batch(
            "INSERT INTO notifications(uid, project, name, url, filters, headers, secret, enabled,
                                       ordered, last_modified)
             VALUES ('u', 'P', 'n', 'https://x', '{}', x'', x'', 1, 0, 0);
             INSERT INTO deliveries(notification_id, event_seq, event_id, status, attempts, tries,
                                    next_attempt_at, created_at, updated_at)
             VALUES (1, 7, 'e', 'pending', 0, 0, 0, 0, 0);",
        )
        .expect("v4");
        cds_events_store::meta::SCHEMA_VERSION
            .set(&conn, &4)
            .expect("version");
        assert_eq!(migrate(&conn).expect("migrate"), Some(4));
        let kept: (Option<String>, String) = conn
            .query_row(
                "SELECT n.ordered_by, d.order_key FROM notifications n CROSS JOIN deliveries d",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("row");
        assert_eq!(kept, (None, String::new()));
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id FROM deliveries
                 WHERE notification_id = 1 AND order_key = 'k' AND status = 'pending' AND id < 9",
                [],
                |r| r.get(3),
            )
            .expect("plan");
        assert!(plan.contains("deliveries_by_key"), "{plan}");
    }

    #[test]
    fn a_database_of_a_newer_build_is_refused() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(SCHEMA).expect("schema");
        cds_events_store::meta::SCHEMA_VERSION
            .set(&conn, &(SCHEMA_VERSION + 1))
            .expect("version");
        let e = migrate(&conn).expect_err("refused");
        assert!(
            matches!(e, Error::SchemaTooNew { found, known, .. }
                if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
            "{e}"
        );
    }
}
