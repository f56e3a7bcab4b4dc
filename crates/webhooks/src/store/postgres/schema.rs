//! The PostgreSQL layout of the webhooks store: component `webhooks` of
//! `cds_events_schema`, its tables prefixed `webhook_` so that they sit
//! beside the log's and the token store's in one database.

use cds_events_store::pg::{PgMigration, PgSchema};

/// The current layout (version 5) and how earlier ones reach it: a new
/// database gets version 1's tables and the steps to 5, the very statements
/// an existing one runs.
pub(super) const LAYOUT: PgSchema = PgSchema {
    component: "webhooks",
    create: concat!(v1!(), v2!(), v3!(), v4!(), v5!()),
    version: 5,
    migrations: &[
        PgMigration {
            from: 1,
            sql: v2!(),
        },
        PgMigration {
            from: 2,
            sql: v3!(),
        },
        PgMigration {
            from: 3,
            sql: v4!(),
        },
        PgMigration {
            from: 4,
            sql: v5!(),
        },
    ],
};

/// The channel every change of a notification is announced on (payload: its
/// id), from inside the change's transaction: PostgreSQL delivers it after
/// the commit, to every instance's listener.
pub(super) const CHANNEL: &str = "cds_events_webhooks";

/// The channel on which the dispatcher announces new deliveries (payload:
/// the ids of their notifications, comma-separated, or `*` for all), so
/// that every instance's workers claim them.
pub(super) const DUE_CHANNEL: &str = "cds_events_webhook_due";

/// The same tables as SQLite's `webhooks.db`, and the same indexes for the
/// same reasons:
/// - `webhook_deliveries_due` (partial, pending rows only): a worker's claim
///   of due deliveries, in due order, without sorting its whole backlog;
/// - `webhook_deliveries_by_status`: listing a notification's deliveries of
///   one status newest first, an ordered notification's oldest pending one,
///   and the oldest pending event of each (what retention must keep).
///
/// A successful attempt is kept in its delivery's row (`ok_*`); failed
/// attempts have rows in `webhook_attempts`. `webhook_purge_queue` lists
/// deleted notifications whose deliveries are still to be deleted (in
/// chunks). `webhook_outbox` holds the Notification events of changes,
/// written in the change's transaction, until they are in the log.
/// `webhook_state` is one row: the epoch (random, fixed at creation, part of
/// every public delivery id) and the dispatcher's log position.
///
/// Ids are identity columns: a sequence never hands out a value twice, even
/// after deletions or rolled back transactions, so a delivery id (the
/// `webhook-id` receivers de-duplicate on) is never reused.
macro_rules! v1 {
    () => {
        "
CREATE TABLE webhook_state (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    epoch TEXT NOT NULL,
    position BIGINT
);
CREATE TABLE webhook_notifications (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    filters TEXT NOT NULL,
    headers BYTEA NOT NULL,
    secret BYTEA NOT NULL,
    previous_secret BYTEA,
    previous_valid_until BIGINT,
    enabled BOOLEAN NOT NULL,
    ordered BOOLEAN NOT NULL,
    disabled_reason TEXT,
    failing_since BIGINT,
    last_modified BIGINT NOT NULL,
    UNIQUE (project, name)
);
CREATE TABLE webhook_deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id BIGINT NOT NULL,
    event_seq BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    tries BIGINT NOT NULL,
    next_attempt_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    ok_status_code INTEGER,
    ok_latency_ms BIGINT,
    ok_response TEXT
);
CREATE INDEX webhook_deliveries_due
    ON webhook_deliveries (notification_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_status
    ON webhook_deliveries (notification_id, status, id);
CREATE TABLE webhook_attempts (
    delivery_id BIGINT NOT NULL,
    n BIGINT NOT NULL,
    at BIGINT NOT NULL,
    status_code INTEGER,
    latency_ms BIGINT NOT NULL,
    error TEXT,
    response TEXT,
    PRIMARY KEY (delivery_id, n)
);
CREATE TABLE webhook_purge_queue (
    notification_id BIGINT PRIMARY KEY
);
CREATE TABLE webhook_outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event TEXT NOT NULL
);
"
    };
}
use v1;

/// Version 2: several instances on one database.
/// - `webhook_state.leader_term` counts the leads taken (each new holder
///   of the lead adds one); the dispatcher writes only under the latest
///   term, and `leader` names its holder (for an operator).
/// - `claimed_by` is the instance that claimed a delivery last (kept after
///   the attempt: who sent it), `lease_until` (unix ms) when its claim ends
///   unless renewed; `NULL` once its result is recorded or it is
///   released.
/// - `webhook_deliveries_leased` (partial, leased rows only: about the
///   attempts in flight): counting a notification's leases against its
///   concurrency, and the soonest lease to end.
macro_rules! v2 {
    () => {
        "
ALTER TABLE webhook_state
    ADD COLUMN leader TEXT,
    ADD COLUMN leader_term BIGINT NOT NULL DEFAULT 0;
ALTER TABLE webhook_deliveries
    ADD COLUMN claimed_by TEXT,
    ADD COLUMN lease_until BIGINT;
CREATE INDEX webhook_deliveries_leased
    ON webhook_deliveries (notification_id, lease_until) WHERE lease_until IS NOT NULL;
"
    };
}
use v2;

/// Version 3: each notification's body format, `cds` (CDS's full event,
/// what every earlier notification sent) or `cloudevents`, and the
/// CloudEvents content mode.
macro_rules! v3 {
    () => {
        "
ALTER TABLE webhook_notifications
    ADD COLUMN format TEXT NOT NULL DEFAULT 'cds',
    ADD COLUMN content_mode TEXT NOT NULL DEFAULT 'structured';
"
    };
}
use v3;

/// Version 4: `webhook_deliveries_recent`, a notification's deliveries by
/// last change, whose attempts make its health over the last 24 h (every
/// attempt moves `updated_at` to its time, so an attempt since then
/// belongs to a delivery in that range).
macro_rules! v4 {
    () => {
        "
CREATE INDEX webhook_deliveries_recent
    ON webhook_deliveries (notification_id, updated_at);
"
    };
}
use v4;

/// Version 5: ordering per key. `webhook_notifications.ordered_by` names
/// the envelope field (`NULL`: not ordered per key) and
/// `webhook_deliveries.order_key` holds each delivery's value of it (empty
/// for every earlier delivery: one key). `webhook_deliveries_by_key`
/// (partial, pending rows only) answers whether a pending delivery has an
/// earlier pending one of its key, which holds it back.
macro_rules! v5 {
    () => {
        "
ALTER TABLE webhook_notifications ADD COLUMN ordered_by TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN order_key TEXT NOT NULL DEFAULT '';
CREATE INDEX webhook_deliveries_by_key
    ON webhook_deliveries (notification_id, order_key, id) WHERE status = 'pending';
"
    };
}
use v5;

#[cfg(test)]
mod tests {
    use super::*;
    use cds_events_store::pg::PgPool;
    use cds_events_store::pg::testing::TempDatabase;

    #[tokio::test]
    async fn a_version_1_database_gains_the_lease_format_and_key_columns_and_the_indexes_and_keeps_its_rows()
     {
        let db = TempDatabase::create().await.expect("test database");
        let pool = PgPool::connect(&db.options()).await.expect("pool");
        let v1 = PgSchema {
            component: "webhooks",
            create: v1!(),
            version: 1,
            migrations: &[],
        };
        assert_eq!(v1.apply(&pool).await.expect("version 1"), None);
        let conn = pool.get().await.expect("conn");
        conn.batch_execute(
            "INSERT INTO webhook_state (epoch, position) VALUES ('e', 7);
             INSERT INTO webhook_deliveries (notification_id, event_seq, event_id, status,
                 attempts, tries, next_attempt_at, created_at, updated_at)
             VALUES (1, 7, 'ev', 'pending', 0, 0, 0, 0, 0);
             INSERT INTO webhook_notifications (uid, project, name, url, filters, headers, secret,
                 enabled, ordered, last_modified)
             VALUES ('u', 'P', 'n', 'https://x', '{}', '', '', TRUE, FALSE, 0);",
        )
        .await
        .expect("version 1 rows");
        assert_eq!(LAYOUT.apply(&pool).await.expect("migrate"), Some(1));
        let row = conn
            .query_one(
                "SELECT s.position, s.leader_term, d.claimed_by, d.lease_until
                 FROM webhook_state s CROSS JOIN webhook_deliveries d",
                &[],
            )
            .await
            .expect("read");
        let kept: (Option<i64>, i64, Option<String>, Option<i64>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(kept, (Some(7), 0, None, None));
        let format = conn
            .query_one(
                "SELECT format, content_mode FROM webhook_notifications",
                &[],
            )
            .await
            .expect("read");
        let format: (String, String) = (format.get(0), format.get(1));
        assert_eq!(
            format,
            ("cds".to_owned(), "structured".to_owned()),
            "earlier notifications keep CDS's body"
        );
        let indexed = conn
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'webhook_deliveries_recent'",
                &[],
            )
            .await
            .expect("read");
        assert_eq!(indexed.get::<_, i64>(0), 1, "version 4's index");
        let keyed = conn
            .query_one(
                "SELECT n.ordered_by, d.order_key
                 FROM webhook_notifications n CROSS JOIN webhook_deliveries d",
                &[],
            )
            .await
            .expect("read");
        let keyed: (Option<String>, String) = (keyed.get(0), keyed.get(1));
        assert_eq!(
            keyed,
            (None, String::new()),
            "earlier notifications are not ordered per key, earlier deliveries share one key"
        );
        let indexed = conn
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'webhook_deliveries_by_key'",
                &[],
            )
            .await
            .expect("read");
        assert_eq!(indexed.get::<_, i64>(0), 1, "version 5's index");
        // Already current: nothing to do.
        assert_eq!(LAYOUT.apply(&pool).await.expect("again"), Some(5));
    }
}
