//! Which rows of a sequence block hold a stream, a workflow run or an id.
//!
//! Queries and idempotent appends need three lookups: the events of a
//! stream (one project × type pair), of a workflow run (by a hash of its
//! id) and of an id (by its hash). SQLite indexes on those columns, even led
//! by the block number, made every commit dirty one page per index per
//! place it touched: 100 events with random projects, runs and ids dirtied
//! most of the newest block's leaf pages of each index, about 55 WAL pages
//! a commit (BENCHMARKS.md). So the log keeps these entries itself:
//!
//! - a block that is still filling has its entries in memory ([`Entries`]),
//!   added as the writer inserts each event (its own transaction sees them,
//!   so a batch that repeats an id finds it) and rebuilt from the block's
//!   rows at open;
//! - when the writer inserts the first event of a later block, the full
//!   block is *sealed*, in that same transaction: its entries are written
//!   as postings (one row per stream, per run and per bucket of id hashes,
//!   each a sorted list of offsets in the block) and `sealed_below` in
//!   `meta` says which blocks have them. A commit then writes its events'
//!   pages and little else; one commit in 16,384 events also writes the
//!   block's few thousand posting rows, already sorted.
//!
//! A reader sees one snapshot of the database. [`Blocks::view`] reads
//! `sealed_below` in that snapshot, then takes the blocks memory holds: a
//! block sealed in the snapshot is read from its postings, a later one from
//! memory, where the writer keeps the last [`KEPT_SEALED`] sealed blocks for
//! the readers whose snapshot began before their seal. Memory may also hold
//! entries newer than the snapshot: readers bound what they find by their
//! snapshot's sequence range.

use super::schema::{BLOCK_SHIFT, SEALED_BELOW};
use super::{read, write};
use cds_events_store::Error;
use rusqlite::{Connection, params};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Sealed blocks still answered from memory, for the readers whose snapshot
/// began before the seal.
const KEPT_SEALED: u64 = 4;

/// Id hashes are 63 bits; their top 8 pick one of 256 posting rows per block.
const ID_BUCKET_SHIFT: u32 = 55;

// Offsets in a block are stored as u16.
const _: () = assert!(BLOCK_SHIFT <= 16);

/// The offset of `seq` in its block.
fn offset(seq: u64) -> u16 {
    (seq & ((1 << BLOCK_SHIFT) - 1)) as u16
}

fn seq_at(block: u64, offset: u16) -> i64 {
    ((block << BLOCK_SHIFT) | u64::from(offset)) as i64
}

fn bucket(idh: i64) -> i64 {
    idh >> ID_BUCKET_SHIFT
}

/// One block's entries, each list in ascending offsets.
#[derive(Debug, Default)]
pub(crate) struct Entries {
    streams: HashMap<i64, Vec<u16>>,
    runs: HashMap<i64, Vec<u16>>,
    ids: HashMap<i64, u16>,
    /// Ids whose hash an earlier id of the block has (a 63-bit collision).
    collided: Vec<(i64, u16)>,
}

/// What a lookup asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'a> {
    /// The events of any of these streams.
    Streams(&'a [i64]),
    /// The events of a workflow run, by its hash (the id itself is checked
    /// on the row).
    Run(i64),
    /// The events whose id has this hash.
    Id(i64),
}

impl Entries {
    fn add(&mut self, offset: u16, stream: i64, run: Option<i64>, idh: i64) {
        self.streams.entry(stream).or_default().push(offset);
        if let Some(run) = run {
            self.runs.entry(run).or_default().push(offset);
        }
        match self.ids.entry(idh) {
            Entry::Vacant(v) => {
                v.insert(offset);
            }
            Entry::Occupied(_) => self.collided.push((idh, offset)),
        }
    }

    /// Forgets the entries from `from` on (their events were rolled back).
    fn truncate(&mut self, from: u16) {
        for list in self.streams.values_mut().chain(self.runs.values_mut()) {
            list.truncate(list.partition_point(|o| *o < from));
        }
        self.streams.retain(|_, list| !list.is_empty());
        self.runs.retain(|_, list| !list.is_empty());
        self.ids.retain(|_, o| *o < from);
        self.collided.retain(|(_, o)| *o < from);
    }

    /// Appends the offsets `key` finds to `out` (unsorted across streams).
    fn find(&self, key: Key<'_>, out: &mut Vec<u16>) {
        match key {
            Key::Streams(streams) => {
                for s in streams {
                    out.extend(self.streams.get(s).into_iter().flatten());
                }
            }
            Key::Run(run) => out.extend(self.runs.get(&run).into_iter().flatten()),
            Key::Id(idh) => {
                out.extend(self.ids.get(&idh));
                out.extend(
                    self.collided
                        .iter()
                        .filter(|(h, _)| *h == idh)
                        .map(|(_, o)| *o),
                );
            }
        }
    }

    /// The entries of `block`'s stored rows.
    fn read(conn: &Connection, block: u64) -> Result<Entries, Error> {
        let mut entries = Entries::default();
        let mut st = conn.prepare_cached(
            "SELECT seq, stream, run, idh FROM events WHERE seq >= ?1 AND seq <= ?2",
        )?;
        let lo = (block << BLOCK_SHIFT) as i64;
        let mut rows = st.query([lo, lo + (1 << BLOCK_SHIFT) - 1])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            entries.add(offset(seq as u64), r.get(1)?, r.get(2)?, r.get(3)?);
        }
        Ok(entries)
    }

    /// Writes the entries as `block`'s postings.
    fn seal(&self, conn: &Connection, block: u64) -> Result<(), Error> {
        let block = block as i64;
        let mut st = conn.prepare_cached(
            "INSERT INTO block_streams(block, stream, offsets) VALUES (?1, ?2, ?3)",
        )?;
        for (stream, offsets) in &self.streams {
            st.execute(params![block, stream, offsets_blob(offsets)])?;
        }
        let mut st =
            conn.prepare_cached("INSERT INTO block_runs(block, run, offsets) VALUES (?1, ?2, ?3)")?;
        for (run, offsets) in &self.runs {
            st.execute(params![block, run, offsets_blob(offsets)])?;
        }
        let mut ids: Vec<(i64, u16)> = self.ids.iter().map(|(h, o)| (*h, *o)).collect();
        ids.extend(&self.collided);
        ids.sort_unstable();
        let mut st = conn
            .prepare_cached("INSERT INTO block_ids(block, bucket, entries) VALUES (?1, ?2, ?3)")?;
        for chunk in ids.chunk_by(|a, b| bucket(a.0) == bucket(b.0)) {
            let mut blob = Vec::with_capacity(chunk.len() * 10);
            for (h, o) in chunk {
                blob.extend_from_slice(&h.to_le_bytes());
                blob.extend_from_slice(&o.to_le_bytes());
            }
            st.execute(params![block, bucket(chunk[0].0), blob])?;
        }
        Ok(())
    }
}

fn offsets_blob(offsets: &[u16]) -> Vec<u8> {
    offsets.iter().flat_map(|o| o.to_le_bytes()).collect()
}

fn blob_offsets(blob: &[u8], out: &mut Vec<u16>) {
    out.extend(
        blob.chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]])),
    );
}

/// An id posting: (hash, offset) records of 10 bytes, sorted by hash.
fn blob_ids(blob: &[u8]) -> impl Iterator<Item = (i64, u16)> + '_ {
    blob.chunks_exact(10).map(|r| {
        let h = i64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
        (h, u16::from_le_bytes([r[8], r[9]]))
    })
}

type Memory = BTreeMap<u64, Arc<RwLock<Entries>>>;

/// The blocks' entries: those in memory, and where the postings begin.
/// Shared by the writer (the only one to change it) and the readers.
#[derive(Debug, Default)]
pub(crate) struct Blocks {
    memory: RwLock<Memory>,
    /// Blocks below this one have postings (as the writer last committed).
    sealed_below: AtomicU64,
}

impl Blocks {
    /// Seals every full block not sealed yet (a log of schema 2 has none),
    /// then loads the newest block's entries.
    pub(crate) fn open(conn: &Connection) -> Result<Blocks, Error> {
        let blocks = Blocks::default();
        let mut below = SEALED_BELOW.get(conn)?.unwrap_or(0) as u64;
        let Some((min, max)) = super::seq_range(conn)? else {
            blocks.sealed_below.store(below, Ordering::Release);
            return Ok(blocks);
        };
        let (first, newest) = (min as u64 >> BLOCK_SHIFT, max as u64 >> BLOCK_SHIFT);
        below = below.max(first);
        if below < newest {
            tracing::info!(
                blocks = newest - below,
                "writing the postings of the log's full blocks (once)"
            );
        }
        while below < newest {
            let tx = conn.unchecked_transaction()?;
            Entries::read(&tx, below)?.seal(&tx, below)?;
            below += 1;
            SEALED_BELOW.set(&tx, &(below as i64))?;
            tx.commit()?;
        }
        blocks.sealed_below.store(below, Ordering::Release);
        let entries = Entries::read(conn, newest)?;
        write(&blocks.memory).insert(newest, Arc::new(RwLock::new(entries)));
        Ok(blocks)
    }

    /// Adds the entries of an event the writer is inserting at `seq`.
    pub(crate) fn add(&self, seq: u64, stream: i64, run: Option<i64>, idh: i64) {
        let block = seq >> BLOCK_SHIFT;
        let entries = read(&self.memory).get(&block).cloned();
        let entries =
            entries.unwrap_or_else(|| write(&self.memory).entry(block).or_default().clone());
        write(&entries).add(offset(seq), stream, run, idh);
    }

    /// Seals, on the writer's transaction `tx`, the blocks in memory below
    /// `block` (the block of the newest event inserted) that have no
    /// postings yet. Returns the new bound, for [`sealed`](Self::sealed)
    /// once `tx` commits.
    pub(crate) fn seal_below(&self, tx: &Connection, block: u64) -> Result<Option<u64>, Error> {
        let below = self.sealed_below.load(Ordering::Acquire);
        if block <= below {
            return Ok(None);
        }
        let full: Vec<(u64, Arc<RwLock<Entries>>)> = read(&self.memory)
            .range(below..block)
            .map(|(b, e)| (*b, e.clone()))
            .collect();
        for (b, entries) in full {
            read(&entries).seal(tx, b)?;
        }
        SEALED_BELOW.set(tx, &(block as i64))?;
        Ok(Some(block))
    }

    /// The seal of [`seal_below`](Self::seal_below) committed.
    pub(crate) fn sealed(&self, below: u64) {
        self.sealed_below.store(below, Ordering::Release);
        let keep = below.saturating_sub(KEPT_SEALED);
        write(&self.memory).retain(|b, _| *b >= keep);
    }

    /// The writer's transaction, which inserted from `first_seq` on, rolled
    /// back: its entries go (the next events take their offsets).
    pub(crate) fn rolled_back(&self, first_seq: u64) {
        let block = first_seq >> BLOCK_SHIFT;
        let mut memory = write(&self.memory);
        memory.retain(|b, _| *b <= block);
        if let Some(entries) = memory.get(&block) {
            write(entries).truncate(offset(first_seq));
        }
    }

    /// Blocks below `block` were purged (their postings with them).
    pub(crate) fn purged_below(&self, block: u64) {
        write(&self.memory).retain(|b, _| *b >= block);
    }

    /// What a read transaction on `conn` may look up: call it after the
    /// transaction's first read, so that `sealed_below` is the snapshot's.
    pub(crate) fn view(&self, conn: &Connection) -> Result<View, Error> {
        let sealed_below = SEALED_BELOW.get(conn)?.unwrap_or(0) as u64;
        Ok(View {
            sealed_below,
            memory: read(&self.memory).clone(),
        })
    }

    /// What the writer's own transaction may look up.
    pub(crate) fn writer_view(&self) -> View {
        View {
            sealed_below: self.sealed_below.load(Ordering::Acquire),
            memory: read(&self.memory).clone(),
        }
    }

    /// Every stored (id hash, block) pair, sealed blocks first.
    pub(crate) fn for_each_id(
        &self,
        conn: &Connection,
        mut each: impl FnMut(i64, u64),
    ) -> Result<(), Error> {
        let below = self.sealed_below.load(Ordering::Acquire) as i64;
        let mut st =
            conn.prepare("SELECT block, entries FROM block_ids WHERE block < ?1 ORDER BY block")?;
        let mut rows = st.query([below])?;
        while let Some(r) = rows.next()? {
            let block = r.get::<_, i64>(0)? as u64;
            for (h, _) in blob_ids(&r.get::<_, Vec<u8>>(1)?) {
                each(h, block);
            }
        }
        for (block, entries) in read(&self.memory).range(below as u64..) {
            let entries = read(entries);
            for h in entries
                .ids
                .keys()
                .chain(entries.collided.iter().map(|(h, _)| h))
            {
                each(*h, *block);
            }
        }
        Ok(())
    }
}

/// The blocks one transaction may look up: postings below `sealed_below`,
/// memory from there on.
#[derive(Debug)]
pub(crate) struct View {
    sealed_below: u64,
    memory: Memory,
}

impl View {
    /// Blocks below this one are read from their postings.
    pub(crate) fn sealed_below(&self) -> u64 {
        self.sealed_below
    }

    /// The sequence numbers in `block` that `key` finds, ascending. Memory
    /// may hold events the caller's snapshot does not: bound them by it.
    pub(crate) fn seqs(
        &self,
        conn: &Connection,
        block: u64,
        key: Key<'_>,
    ) -> Result<Vec<i64>, Error> {
        let mut offsets = Vec::new();
        if block >= self.sealed_below {
            match self.memory.get(&block) {
                Some(entries) => read(entries).find(key, &mut offsets),
                // Sealed and dropped since this read's snapshot began
                // (the writer sealed KEPT_SEALED blocks meanwhile).
                None if self
                    .memory
                    .keys()
                    .next()
                    .is_some_and(|first| block < *first) =>
                {
                    return Err(Error::Busy(format!(
                        "block {block} left memory during this read; retry"
                    )));
                }
                // Not begun: nothing there.
                None => {}
            }
        } else {
            postings(conn, block as i64, key, &mut offsets)?;
        }
        offsets.sort_unstable();
        Ok(offsets.into_iter().map(|o| seq_at(block, o)).collect())
    }
}

/// The SQL that reads one posting of a sealed block: (block, key) → blob.
pub(crate) fn postings_sql(key: Key<'_>) -> &'static str {
    match key {
        Key::Streams(_) => "SELECT offsets FROM block_streams WHERE block = ?1 AND stream = ?2",
        Key::Run(_) => "SELECT offsets FROM block_runs WHERE block = ?1 AND run = ?2",
        Key::Id(_) => "SELECT entries FROM block_ids WHERE block = ?1 AND bucket = ?2",
    }
}

/// Reads `key`'s postings of the sealed `block` into `out`.
fn postings(conn: &Connection, block: i64, key: Key<'_>, out: &mut Vec<u16>) -> Result<(), Error> {
    let mut st = conn.prepare_cached(postings_sql(key))?;
    let mut one = |k: i64, out: &mut Vec<u16>| -> Result<(), Error> {
        let mut rows = st.query(params![block, k])?;
        if let Some(r) = rows.next()? {
            let blob = &r.get::<_, Vec<u8>>(0)?;
            match key {
                Key::Id(idh) => {
                    out.extend(blob_ids(blob).filter(|(h, _)| *h == idh).map(|(_, o)| o))
                }
                _ => blob_offsets(blob, out),
            }
        }
        Ok(())
    };
    match key {
        Key::Streams(streams) => {
            for s in streams {
                one(*s, out)?;
            }
        }
        Key::Run(run) => one(run, out)?,
        Key::Id(idh) => one(bucket(idh), out)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: u64 = 1 << BLOCK_SHIFT;

    fn found(view: &View, conn: &Connection, block: u64, key: Key<'_>) -> Vec<i64> {
        view.seqs(conn, block, key).expect("seqs")
    }

    #[test]
    fn a_rolled_back_commit_leaves_no_entry_behind() {
        let conn = Connection::open_in_memory().expect("open");
        let blocks = Blocks::default();
        // Committed: 1..=10 in block 0. Then a commit from 11 that spans
        // into block 1 fails.
        for seq in 1..=10 {
            blocks.add(seq, seq as i64 % 2, Some(7), seq as i64);
        }
        for seq in 11..BLOCK + 5 {
            blocks.add(seq, seq as i64 % 2, Some(7), seq as i64);
        }
        blocks.rolled_back(11);
        let view = blocks.writer_view();
        assert_eq!(
            found(&view, &conn, 0, Key::Run(7)),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(
            found(&view, &conn, 0, Key::Streams(&[1])),
            vec![1, 3, 5, 7, 9]
        );
        assert_eq!(found(&view, &conn, 0, Key::Id(12)), Vec::<i64>::new());
        assert_eq!(found(&view, &conn, 1, Key::Run(7)), Vec::<i64>::new());
        // The next events take the freed offsets, under other keys.
        blocks.add(11, 5, None, 99);
        let view = blocks.writer_view();
        assert_eq!(found(&view, &conn, 0, Key::Streams(&[5])), vec![11]);
        assert_eq!(
            found(&view, &conn, 0, Key::Streams(&[1])),
            vec![1, 3, 5, 7, 9]
        );
    }

    #[test]
    fn sealed_postings_answer_as_memory_did() {
        let conn = Connection::open_in_memory().expect("open");
        super::super::schema::LAYOUT.apply(&conn).expect("schema");
        let blocks = Blocks::default();
        // Two ids of block 0 share a hash (a collision), one bucket apart
        // from a third.
        let ids = [(1u64, 42i64), (2, 42), (3, 42 + (1 << ID_BUCKET_SHIFT))];
        for (seq, idh) in ids {
            blocks.add(seq, 1, Some(5), idh);
        }
        for seq in 4..=BLOCK {
            blocks.add(seq, (seq % 3) as i64, None, seq as i64 * 1_000_003);
        }
        let keys = [
            Key::Streams(&[1]),
            Key::Streams(&[0, 2]),
            Key::Run(5),
            Key::Id(42),
            Key::Id(42 + (1 << ID_BUCKET_SHIFT)),
            Key::Id(4_000_012),
        ];
        let view = blocks.writer_view();
        let before: Vec<Vec<i64>> = keys.iter().map(|k| found(&view, &conn, 0, *k)).collect();
        assert_eq!(before[3], vec![1, 2]);
        assert_eq!(before[5], vec![4]);
        let below = blocks.seal_below(&conn, 1).expect("seal").expect("sealed");
        blocks.sealed(below);
        let view = blocks.view(&conn).expect("view");
        assert_eq!(view.sealed_below(), 1);
        let after: Vec<Vec<i64>> = keys.iter().map(|k| found(&view, &conn, 0, *k)).collect();
        assert_eq!(after, before);
    }
}
