//! The SQLite schema of `events.db`.

use cds_events_store::{MetaKey, Schema};

/// Sequence numbers are grouped in blocks of `1 << BLOCK_SHIFT` events. The
/// secondary indexes lead with the block number, so every insert lands in the
/// small, hot region of the newest block instead of at a random place in a
/// large index: appends stay cheap however many projects, types and runs
/// there are. Queries walk the blocks in order (see `query.rs`).
pub(crate) const BLOCK_SHIFT: u32 = 14;

/// The layout, at version 1 (the first).
pub(crate) const LAYOUT: Schema = Schema {
    create: SCHEMA,
    version: 1,
    unversioned: 1,
    migrations: &[],
};

/// The last sequence number ever assigned, written when a purge may have
/// deleted it (see `writer.rs`).
pub(crate) const LAST_SEQ: MetaKey<i64> = MetaKey::new("last_seq");

/// Why each index exists:
/// - `events_id`: idempotent append and get-by-id;
/// - `events_block_stream`: a stream is one (project, type) pair, interned in
///   `streams`; serves project and type filters in sequence order;
/// - `events_block_run`: everything about one workflow run (by a 63-bit hash
///   of its id; the id itself is checked on the row);
/// - `zones`: per block, the min and max event time, so a `since`/`until`
///   bound becomes a sequence range instead of a scan.
///
/// Other context fields are read from the stored JSON when a query filters
/// on them; they always come with, or after, an indexed condition or a
/// bounded scan.
///
/// `meta` (`schema_version`, `last_seq`) keeps the layout version 1 gave it;
/// the store crate reads and writes it (`MetaKey`).
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY,
    project_key TEXT NOT NULL,
    type TEXT NOT NULL,
    UNIQUE (project_key, type)
);
CREATE INDEX IF NOT EXISTS streams_type ON streams(type);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    stream INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    run INTEGER,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events(id);
CREATE INDEX IF NOT EXISTS events_block_stream ON events(seq >> 14, stream);
CREATE INDEX IF NOT EXISTS events_block_run ON events(seq >> 14, run) WHERE run IS NOT NULL;
CREATE TABLE IF NOT EXISTS zones (
    block INTEGER PRIMARY KEY,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS consumers (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// A stable 63-bit hash (FNV-1a) of a workflow run id, for the run index.
pub(crate) fn run_hash(run: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h >> 1) as i64
}
