//! The PostgreSQL layout of the webhooks store: component `webhooks` of
//! `cds_events_schema`, its tables prefixed `webhook_` so that they sit
//! beside the log's and the token store's in one database.

use cds_events_store::pg::PgSchema;

/// The current layout (version 1) and how earlier ones reach it (none yet).
pub(super) const LAYOUT: PgSchema = PgSchema {
    component: "webhooks",
    create: SCHEMA,
    version: 1,
    migrations: &[],
};

/// The channel every change of a notification is announced on (payload: its
/// id), from inside the change's transaction: PostgreSQL delivers it after
/// the commit, to every instance's listener.
pub(super) const CHANNEL: &str = "cds_events_webhooks";

/// The same tables as SQLite's `webhooks.db`, and the same indexes for the
/// same reasons:
/// - `webhook_deliveries_due` (partial, pending rows only): a worker's page
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
const SCHEMA: &str = "
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
";
