//! The SQLite schema of `events.db`.

use cds_events_store::{Error, MetaKey, Migration, Schema, Step};
use rusqlite::Transaction;

/// Sequence numbers are grouped in blocks of `1 << BLOCK_SHIFT` events. The
/// entries that find a stream's, a run's or an id's events are kept per
/// block (`blocks.rs`): in memory while the block fills, as postings once it
/// is full. Queries walk the blocks in order (see `query.rs`).
pub(crate) const BLOCK_SHIFT: u32 = 14;

/// The layout, at version 3: streams, runs and ids found through the
/// blocks' postings (`blocks.rs`) and the id filter (`ids.rs`). Version 2
/// had SQLite indexes led by the block number; version 1 a unique index on
/// the id.
pub(crate) const LAYOUT: Schema = Schema {
    create: SCHEMA,
    version: 3,
    unversioned: 1,
    migrations: &[
        Migration {
            from: 1,
            step: Step::Run(hash_ids),
        },
        Migration {
            from: 2,
            step: Step::Sql(DROP_BLOCK_INDEXES),
        },
    ],
};

/// Version 2 → 3: the indexes go; the log writes the postings of its full
/// blocks when it opens (`Blocks::open`), in a transaction per block.
const DROP_BLOCK_INDEXES: &str = "
DROP INDEX IF EXISTS events_block_stream;
DROP INDEX IF EXISTS events_block_run;
DROP INDEX IF EXISTS events_block_idh;
";

/// Version 1 → 2: every stored id gets its hash, and the unique index on
/// random ids goes.
fn hash_ids(tx: &Transaction<'_>) -> Result<(), Error> {
    tx.execute_batch("ALTER TABLE events ADD COLUMN idh INTEGER NOT NULL DEFAULT 0")?;
    let total: i64 = tx.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
    tracing::info!(
        events = total,
        "hashing the stored event ids (once, for schema version 2)"
    );
    // In chunks, read then written: the table is not changed under a scan.
    let mut read =
        tx.prepare("SELECT seq, id FROM events WHERE seq > ?1 ORDER BY seq LIMIT 10000")?;
    let mut write = tx.prepare("UPDATE events SET idh = ?2 WHERE seq = ?1")?;
    let mut after = 0i64;
    loop {
        let chunk = read
            .query_map([after], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let Some((last, _)) = chunk.last() else { break };
        after = *last;
        for (seq, id) in &chunk {
            write.execute(rusqlite::params![seq, super::ids::id_hash(id)])?;
        }
    }
    tx.execute_batch("DROP INDEX IF EXISTS events_id;")?;
    Ok(())
}

/// Blocks below this one have their postings (see `blocks.rs`).
pub(crate) const SEALED_BELOW: MetaKey<i64> = MetaKey::new("sealed_below");

/// The last sequence number ever assigned, written when a purge may have
/// deleted it (see `writer.rs`).
pub(crate) const LAST_SEQ: MetaKey<i64> = MetaKey::new("last_seq");

/// `events` has no index but its sequence number: what finds rows is kept
/// per block of sequence numbers, each full block's as postings, a sorted
/// list of offsets in the block (little-endian u16s) per key:
/// - `block_streams`: a stream is one (project, type) pair, interned in
///   `streams`; serves project and type filters in sequence order;
/// - `block_runs`: everything about one workflow run (by a 63-bit hash of
///   its id; the id itself is checked on the row);
/// - `block_ids`: idempotent append and get-by-id, the (hash, offset) pairs
///   of a block's ids (8 + 2 bytes, sorted by hash) in 256 rows by the
///   hash's top bits, with the filter of `ids.rs` saying which blocks to
///   look in;
/// - `zones`: per block, the min and max event time, so a `since`/`until`
///   bound becomes a sequence range instead of a scan.
///
/// Other context fields are read from the stored JSON when a query filters
/// on them; they always come with, or after, an indexed condition or a
/// bounded scan.
///
/// `meta` (`schema_version`, `last_seq`, `sealed_below`) keeps the layout
/// version 1 gave it; the store crate reads and writes it (`MetaKey`).
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
    body TEXT NOT NULL,
    idh INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS block_streams (
    block INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    offsets BLOB NOT NULL,
    PRIMARY KEY (block, stream)
);
CREATE TABLE IF NOT EXISTS block_runs (
    block INTEGER NOT NULL,
    run INTEGER NOT NULL,
    offsets BLOB NOT NULL,
    PRIMARY KEY (block, run)
);
CREATE TABLE IF NOT EXISTS block_ids (
    block INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    entries BLOB NOT NULL,
    PRIMARY KEY (block, bucket)
);
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
CREATE TABLE IF NOT EXISTS consumer_pauses (
    name TEXT PRIMARY KEY,
    paused_at INTEGER NOT NULL
);
";

/// A stable 63-bit hash (FNV-1a) of a workflow run id, for the run index.
pub(crate) fn run_hash(run: &str) -> i64 {
    (fnv1a(run.as_bytes()) >> 1) as i64
}

/// FNV-1a, 64 bits. Its values are stored (run and id hashes): never change it.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
