//! The SQLite schema of `events.db`.

use cds_events_store::{Error, MetaKey, Migration, Schema, Step};
use rusqlite::Transaction;

/// Sequence numbers are grouped in blocks of `1 << BLOCK_SHIFT` events. The
/// secondary indexes lead with the block number, so every insert lands in the
/// small, hot region of the newest block instead of at a random place in a
/// large index: appends stay cheap however many projects, types and runs
/// there are. Queries walk the blocks in order (see `query.rs`).
pub(crate) const BLOCK_SHIFT: u32 = 14;

/// The layout, at version 2: ids found through `events_block_idh` and the
/// in-memory filter of `ids.rs` (version 1 had a unique index on the id).
pub(crate) const LAYOUT: Schema = Schema {
    create: SCHEMA,
    version: 2,
    unversioned: 1,
    migrations: &[Migration {
        from: 1,
        step: Step::Run(hash_ids),
    }],
};

/// Created once the layout is current (after [`LAYOUT`] is applied): the
/// column it indexes is new in version 2, so a version-1 database has it
/// only after its migration.
pub(crate) const ID_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS events_block_idh ON events(seq >> 14, idh);";

/// Version 1 → 2: every stored id gets its hash, and the unique index on
/// random ids goes (`events_block_idh` replaces it, see [`ID_INDEX`]).
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

/// The last sequence number ever assigned, written when a purge may have
/// deleted it (see `writer.rs`).
pub(crate) const LAST_SEQ: MetaKey<i64> = MetaKey::new("last_seq");

/// Why each index exists:
/// - `events_block_idh`: idempotent append and get-by-id, by a hash of the
///   id within each block, with the filter of `ids.rs` saying which blocks
///   to look in (created by [`ID_INDEX`]);
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
    body TEXT NOT NULL,
    idh INTEGER NOT NULL DEFAULT 0
);
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
