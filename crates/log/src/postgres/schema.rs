//! The log's tables on PostgreSQL (component `log` of `cds_events_schema`).

use cds_events_store::pg::{PgMigration, PgSchema};

/// Sequence numbers are grouped in blocks of `1 << BLOCK_SHIFT` events for
/// the time zone map (`log_zones`), as in the SQLite backend.
pub(super) const BLOCK_SHIFT: u32 = 14;

/// The layout, at version 3 (`log_consumer_pauses` is new in 2,
/// `log_consumer_leads` in 3).
pub(super) const LAYOUT: PgSchema = PgSchema {
    component: "log",
    create: CREATE,
    version: 3,
    migrations: &[
        PgMigration {
            from: 1,
            sql: CONSUMER_PAUSES,
        },
        PgMigration {
            from: 2,
            sql: CONSUMER_LEADS,
        },
    ],
};

/// The leads of consumers that run on one instance at a time (`lead.rs`):
/// `term` counts the leads taken (each new holder adds one) and fences the
/// position writes, `holder` names the latest holder (for an operator),
/// `lock_key` is the second half of the consumer's advisory lock key. The
/// same statement as in [`CREATE`].
const CONSUMER_LEADS: &str = "CREATE TABLE log_consumer_leads (
    name TEXT PRIMARY KEY,
    lock_key INTEGER GENERATED ALWAYS AS IDENTITY UNIQUE,
    term BIGINT NOT NULL DEFAULT 0,
    holder TEXT,
    taken_at TIMESTAMPTZ
);";

/// The consumers an operator paused (a row: paused), beside their
/// positions in `log_consumers`; the same statement as in [`CREATE`].
const CONSUMER_PAUSES: &str = "CREATE TABLE log_consumer_pauses (
    name TEXT PRIMARY KEY,
    paused_at TIMESTAMPTZ NOT NULL DEFAULT now()
);";

/// The channel every append transaction notifies with its last sequence
/// number; each instance listens on it to move its `head()` watch.
pub(super) const HEAD_CHANNEL: &str = "cds_events_head";

/// The tables, each prefixed `log_` since the database is shared with the
/// other components (webhooks, tokens).
///
/// - `log_head`: one row, the last sequence number assigned. Every append
///   transaction locks it first, so appends of every instance are
///   serialized and commit in sequence order (see `writer.rs`); it outlives
///   purges, so sequence numbers are never reused.
/// - `log_events`: the event JSON verbatim in `body` (TEXT, returned byte
///   for byte), beside the columns the indexes need. Identifiers are
///   `COLLATE "C"`: they are only compared for equality, and byte
///   comparison is the cheapest.
///   - `log_events_id`: idempotent append and get-by-id;
///   - `log_events_project_type (project_key, type, seq)`: project filters,
///     with or without types: one ordered walk per (project, type) stream;
///   - `log_events_type (type, seq)`: type filters over every project;
///   - `log_events_run (run, seq)`: everything about one workflow run.
/// - `log_streams`: the (project, type) pairs that occur, so that a project
///   filter walks only the streams that exist.
/// - `log_zones`: per block of sequence numbers, the lowest and highest event
///   time, so that `since`/`until` become a sequence range which composes
///   with every index above (all end in `seq`). A BRIN index on `ts` would
///   give heap ranges instead, to be sorted by `seq` for every page: the
///   zone map keeps every read an ordered index walk.
/// - `log_consumers`: the consumers' durable positions; `log_consumer_pauses`
///   those an operator paused; `log_consumer_leads` the leads of those that
///   run on one instance at a time (see [`CONSUMER_LEADS`]).
///
/// Other context fields are read from the JSON (`body::jsonb ->> 'field'`)
/// on the rows an index walk or a bounded range yields.
const CREATE: &str = r#"
CREATE TABLE log_head (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq BIGINT NOT NULL
);
INSERT INTO log_head (seq) VALUES (0);
CREATE TABLE log_events (
    seq BIGINT PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL,
    project_key TEXT COLLATE "C" NOT NULL,
    type TEXT COLLATE "C" NOT NULL,
    ts BIGINT NOT NULL,
    run TEXT COLLATE "C",
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX log_events_id ON log_events (id);
CREATE INDEX log_events_project_type ON log_events (project_key, type, seq);
CREATE INDEX log_events_type ON log_events (type, seq);
CREATE INDEX log_events_run ON log_events (run, seq) WHERE run IS NOT NULL;
CREATE TABLE log_streams (
    project_key TEXT COLLATE "C" NOT NULL,
    type TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (project_key, type)
);
CREATE TABLE log_zones (
    block BIGINT PRIMARY KEY,
    min_ts BIGINT NOT NULL,
    max_ts BIGINT NOT NULL
);
CREATE TABLE log_consumers (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE log_consumer_pauses (
    name TEXT PRIMARY KEY,
    paused_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE log_consumer_leads (
    name TEXT PRIMARY KEY,
    lock_key INTEGER GENERATED ALWAYS AS IDENTITY UNIQUE,
    term BIGINT NOT NULL DEFAULT 0,
    holder TEXT,
    taken_at TIMESTAMPTZ
);
"#;

/// The log's relations, for `bytes_on_disk` (indexes and TOAST are counted
/// by `pg_total_relation_size`).
pub(super) const TABLES: &[&str] = &[
    "log_head",
    "log_events",
    "log_streams",
    "log_zones",
    "log_consumers",
    "log_consumer_pauses",
    "log_consumer_leads",
];
