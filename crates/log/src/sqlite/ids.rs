//! Finding an event by its id without a B-tree keyed by random ids.
//!
//! CDS's producers make UUID v4 ids: random. A unique index on them puts
//! every insert at a random place of a large B-tree, dirtying one page per
//! event once the index outgrows the cache (BENCHMARKS.md: the table fell
//! to a third of its rate). So ids are kept like everything else that finds
//! rows here, per sequence block (`blocks.rs`): a 63-bit hash of the id
//! ([`id_hash`]) and its offset, in memory while the block fills and in the
//! block's postings once it is full.
//!
//! Those entries alone cannot say where an id is, only whether it is in a
//! given block. [`IdFilter`] says which blocks may hold it: a blocked Bloom
//! filter per *generation* of events (a run of sequence numbers; each
//! generation twice the size of the one before, so a 10M-event log has a
//! handful), held in memory and rebuilt from the blocks' entries at open.
//! An id no generation may hold is new, which is what nearly every append
//! asks (one cache line per generation). Otherwise each block of the
//! generations that may hold it asks a smaller filter of its own, and only
//! the blocks that may hold it are probed, newest first, one posting read
//! each (a retried batch finds its events in the newest block, in memory).
//! A generation's false positive (about 1 in 7,000) costs a look at each of
//! its blocks' filters; a block's (about 1 in 150) one posting read.
//!
//! Memory: 36 bits per event (24 for the generations, 12 for the blocks;
//! 45 MB for 10M events), freed only by a restart after a purge (purged ids
//! stay in the filter as false positives).

use super::blocks::{Blocks, Key, View};
use super::schema::BLOCK_SHIFT;
use super::{read, stored_at, write};
use crate::StoredEvent;
use cds_events_store::Error;
use rusqlite::Connection;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The first generation's capacity; each next one doubles.
const FIRST_GENERATION: u64 = 1 << 20;
/// Filter bits per event.
const BITS_PER_EVENT: u64 = 24;
/// Bits set per event, all in one 512-bit (cache-line) block.
const BITS_PER_KEY: u64 = 8;
const WORDS_PER_BLOCK: usize = 8;
/// A sequence block's own filter: bits per event, and bits set per event.
const BLOCK_BITS_PER_EVENT: u64 = 12;
const BLOCK_BITS_PER_KEY: u64 = 4;
/// Cache lines of one sequence block's filter.
const LINES_PER_SEQ_BLOCK: u64 = ((1 << BLOCK_SHIFT) * BLOCK_BITS_PER_EVENT) / 512;

/// The stored hash of an id: FNV-1a 64, mixed (splitmix64's finalizer) so
/// that every bit depends on every byte, then cut to 63 bits (SQLite's
/// integers are signed). Stored on disk: never change it.
pub(crate) fn id_hash(id: &str) -> i64 {
    (mix(super::schema::fnv1a(id.as_bytes())) >> 1) as i64
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Which sequence blocks may hold an id. Shared by the writer (which adds
/// every id before its commit) and the readers.
#[derive(Default)]
pub(crate) struct IdFilter {
    generations: RwLock<Vec<Arc<Generation>>>,
    /// Blocks below this one were purged: never probed.
    oldest_block: AtomicU64,
}

struct Generation {
    first_block: u64,
    last_block: AtomicU64,
    capacity: u64,
    len: AtomicU64,
    words: Box<[AtomicU64]>,
    /// One filter per sequence block from `first_block` on, each
    /// [`LINES_PER_SEQ_BLOCK`] cache lines: which blocks may hold a key.
    block_words: Box<[AtomicU64]>,
}

/// Sizes only: the bits would fill a screen.
impl std::fmt::Debug for IdFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let generations: Vec<(u64, u64)> = read(&self.generations)
            .iter()
            .map(|g| (g.len.load(Ordering::Relaxed), g.capacity))
            .collect();
        f.debug_struct("IdFilter")
            .field("generations (len, capacity)", &generations)
            .finish()
    }
}

impl Generation {
    fn new(first_block: u64, capacity: u64) -> Generation {
        let blocks = (capacity * BITS_PER_EVENT).div_ceil(64 * WORDS_PER_BLOCK as u64);
        // A generation of `capacity` events from anywhere in a block spans
        // at most this many blocks.
        let seq_blocks = (capacity >> BLOCK_SHIFT) + 2;
        Generation {
            first_block,
            last_block: AtomicU64::new(first_block),
            capacity,
            len: AtomicU64::new(0),
            words: zeroed(blocks as usize * WORDS_PER_BLOCK),
            block_words: zeroed((seq_blocks * LINES_PER_SEQ_BLOCK) as usize * WORDS_PER_BLOCK),
        }
    }

    /// The word and bit of each of the key's bits: one cache line chosen by
    /// the top of the hash, positions within it by 9-bit slices of a second
    /// mix (independent slices: an arithmetic progression of positions
    /// doubled the false positives).
    fn bits(&self, key: i64) -> impl Iterator<Item = (usize, u64)> + use<> {
        let h = key as u64;
        let lines = (self.words.len() / WORDS_PER_BLOCK) as u64;
        // The hash has 63 bits: its top 32 pick the line.
        line_bits(h, (h >> 31) & 0xffff_ffff, lines, 0, mix(h), BITS_PER_KEY)
    }

    /// The bits of `key` in the filter of sequence block `block`, if the
    /// generation has one for it: the line picked by the hash's low 32
    /// bits, positions from another mix than the generation's.
    fn block_bits(
        &self,
        key: i64,
        block: u64,
    ) -> Option<impl Iterator<Item = (usize, u64)> + use<>> {
        let h = key as u64;
        let index = block.checked_sub(self.first_block)?;
        let base = (index * LINES_PER_SEQ_BLOCK) as usize * WORDS_PER_BLOCK;
        (base < self.block_words.len()).then(|| {
            let seed = mix(h ^ 0x9e37_79b9_7f4a_7c15);
            line_bits(
                h,
                h & 0xffff_ffff,
                LINES_PER_SEQ_BLOCK,
                base,
                seed,
                BLOCK_BITS_PER_KEY,
            )
        })
    }

    fn insert(&self, key: i64, block: u64) {
        for (word, mask) in self.bits(key) {
            self.words[word].fetch_or(mask, Ordering::Release);
        }
        for (word, mask) in self.block_bits(key, block).into_iter().flatten() {
            self.block_words[word].fetch_or(mask, Ordering::Release);
        }
        self.last_block.fetch_max(block, Ordering::Release);
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    fn may_hold(&self, key: i64) -> bool {
        self.bits(key)
            .all(|(word, mask)| self.words[word].load(Ordering::Acquire) & mask != 0)
    }

    /// Whether sequence block `block` may hold `key` (a block without a
    /// filter here may).
    fn block_may_hold(&self, key: i64, block: u64) -> bool {
        self.block_bits(key, block).is_none_or(|mut bits| {
            bits.all(|(word, mask)| self.block_words[word].load(Ordering::Acquire) & mask != 0)
        })
    }
}

fn zeroed(words: usize) -> Box<[AtomicU64]> {
    (0..words).map(|_| AtomicU64::new(0)).collect()
}

/// The word and bit of each of `k` bits of `h` in a filter of `lines` cache
/// lines from word `base`: the line picked by `pick` (32 bits of the hash),
/// the positions within it by 9-bit slices of `seed`, mixed again with `h`
/// when used up (independent slices: an arithmetic progression of positions
/// doubled the false positives).
fn line_bits(
    h: u64,
    pick: u64,
    lines: u64,
    base: usize,
    seed: u64,
    k: u64,
) -> impl Iterator<Item = (usize, u64)> {
    let line = ((pick * lines) >> 32) as usize;
    let mut x = seed;
    let mut slices = 7;
    (0..k).map(move |_| {
        if slices == 0 {
            x = mix(x.wrapping_add(h));
            slices = 7;
        }
        let bit = x & 511;
        x >>= 9;
        slices -= 1;
        (
            base + line * WORDS_PER_BLOCK + (bit / 64) as usize,
            1u64 << (bit % 64),
        )
    })
}

impl IdFilter {
    /// The filter of the `count` ids stored in `conn`'s log from sequence
    /// number `first` on, read from the blocks' entries (their postings
    /// and memory, not the events).
    pub(crate) fn load(
        conn: &Connection,
        blocks: &Blocks,
        count: u64,
        first: u64,
    ) -> Result<IdFilter, Error> {
        let filter = IdFilter::default();
        let first_block = first >> BLOCK_SHIFT;
        filter.oldest_block.store(first_block, Ordering::Relaxed);
        if count > 0 {
            let capacity = count.next_power_of_two().max(FIRST_GENERATION);
            let generation = Generation::new(first_block, capacity);
            blocks.for_each_id(conn, |key, block| generation.insert(key, block))?;
            write(&filter.generations).push(Arc::new(generation));
        }
        Ok(filter)
    }

    /// Adds an id about to be stored at `seq`.
    pub(crate) fn insert(&self, key: i64, seq: u64) {
        let block = seq >> BLOCK_SHIFT;
        let current = read(&self.generations).last().cloned();
        let generation = match current {
            Some(g) if g.len.load(Ordering::Relaxed) < g.capacity => g,
            full => {
                let capacity = full.map_or(FIRST_GENERATION, |g| g.capacity * 2);
                let g = Arc::new(Generation::new(block, capacity));
                write(&self.generations).push(g.clone());
                g
            }
        };
        generation.insert(key, block);
    }

    /// Blocks below `block` were purged.
    pub(crate) fn purged_below(&self, block: u64) {
        self.oldest_block.fetch_max(block, Ordering::Relaxed);
    }

    /// Brings into the cache the line each generation's filter keeps for
    /// each of `keys`. The filters are far larger than the cache, so each
    /// probe of [`may_hold`](Self::may_hold) misses it; probed one by one
    /// between inserts, the misses wait in turn. Touched here in one tight
    /// loop, they overlap, and the probes that follow find their lines.
    pub(crate) fn warm(&self, keys: &[i64]) {
        let mut touched = 0u64;
        for g in read(&self.generations).iter() {
            for key in keys {
                if let Some((word, _)) = g.bits(*key).next() {
                    touched ^= g.words[word].load(Ordering::Relaxed);
                }
            }
        }
        // Keeps the loads: their values are of no use, only their effect.
        std::hint::black_box(touched);
    }

    /// Whether any block may hold `key` (false for nearly every new id).
    pub(crate) fn may_hold(&self, key: i64) -> bool {
        !self.candidates(key).is_empty()
    }

    /// The blocks that may hold `key`, newest first.
    fn candidates(&self, key: i64) -> Vec<u64> {
        let oldest = self.oldest_block.load(Ordering::Relaxed);
        read(&self.generations)
            .iter()
            .rev()
            .filter(|g| g.last_block.load(Ordering::Acquire) >= oldest && g.may_hold(key))
            .flat_map(|g| {
                let first = g.first_block.max(oldest);
                (first..=g.last_block.load(Ordering::Acquire))
                    .rev()
                    .filter(move |b| g.block_may_hold(key, *b))
            })
            .collect()
    }

    /// The sequence number of the stored event with this id, if any: the
    /// filter first, then the entries of each block that may hold it.
    pub(crate) fn find(
        &self,
        view: &View,
        conn: &Connection,
        id: &str,
    ) -> Result<Option<i64>, Error> {
        self.find_hashed(view, conn, id_hash(id), id)
    }

    /// [`find`](Self::find) with the id's hash already known.
    pub(crate) fn find_hashed(
        &self,
        view: &View,
        conn: &Connection,
        key: i64,
        id: &str,
    ) -> Result<Option<i64>, Error> {
        let blocks = self.candidates(key);
        if blocks.is_empty() {
            return Ok(None);
        }
        metrics::counter!("cds_events_id_probes_total").increment(1);
        let mut st = conn.prepare_cached("SELECT id FROM events WHERE seq = ?1")?;
        for block in blocks {
            for seq in view.seqs(conn, block, Key::Id(key))? {
                // A row the snapshot lacks (newer, or purged) is not it.
                let mut rows = st.query([seq])?;
                if let Some(row) = rows.next()?
                    && row.get_ref(0)? == rusqlite::types::ValueRef::Text(id.as_bytes())
                {
                    return Ok(Some(seq));
                }
            }
        }
        Ok(None)
    }

    /// The stored event with this id.
    pub(crate) fn get(
        &self,
        view: &View,
        conn: &Connection,
        id: &str,
    ) -> Result<Option<StoredEvent>, Error> {
        let Some(seq) = self.find(view, conn, id)? else {
            return Ok(None);
        };
        stored_at(conn, seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inserted_key_is_always_found_and_few_others_are() {
        let g = Generation::new(0, 100_000);
        for i in 0..100_000u32 {
            g.insert(id_hash(&format!("in-{i}")), 0);
        }
        assert!((0..100_000).all(|i| g.may_hold(id_hash(&format!("in-{i}")))));
        let false_positives = (0..1_000_000)
            .filter(|i| g.may_hold(id_hash(&format!("out-{i}"))))
            .count();
        // 24 bits per key, 8 set in a cache line: about 1 in 7,000.
        eprintln!("{false_positives} false positives in 1M");
        assert!(false_positives < 300, "{false_positives} false positives");
    }

    #[test]
    fn a_block_filter_holds_its_keys_and_few_others() {
        let g = Generation::new(0, FIRST_GENERATION);
        let n = 1u64 << BLOCK_SHIFT;
        for i in 0..n {
            g.insert(id_hash(&format!("in-{i}")), 3);
        }
        assert!((0..n).all(|i| g.block_may_hold(id_hash(&format!("in-{i}")), 3)));
        assert!((0..n).all(|i| !g.block_may_hold(id_hash(&format!("in-{i}")), 2)));
        let false_positives = (0..100_000)
            .filter(|i| g.block_may_hold(id_hash(&format!("out-{i}")), 3))
            .count();
        // 12 bits per key, 4 set in a cache line: about 1 in 150.
        eprintln!("{false_positives} false positives in 100k");
        assert!(false_positives < 1_000, "{false_positives} false positives");
    }

    #[test]
    fn generations_double_and_each_keeps_its_blocks() {
        let f = IdFilter::default();
        let n = FIRST_GENERATION + 10;
        for seq in 1..=n {
            f.insert(id_hash(&seq.to_string()), seq);
        }
        let gens = read(&f.generations);
        assert_eq!(gens.len(), 2);
        assert_eq!(gens[1].capacity, 2 * FIRST_GENERATION);
        assert_eq!(gens[1].first_block, (FIRST_GENERATION + 1) >> BLOCK_SHIFT);
        drop(gens);
        // The last id: its own block only (the blocks' filters rule out
        // the others).
        let last = f.candidates(id_hash(&n.to_string()));
        assert_eq!(last, vec![n >> BLOCK_SHIFT]);
        assert_eq!(f.candidates(id_hash("1")), vec![0]);
        let oldest = n >> BLOCK_SHIFT;
        f.purged_below(oldest);
        assert!(
            f.candidates(id_hash("1")).iter().all(|b| *b >= oldest),
            "purged blocks are never probed"
        );
    }

    /// A log of the current layout holding these (seq, id, id hash) rows,
    /// and its blocks' entries: the full blocks sealed, the last in memory.
    fn log_with(rows: &[(i64, &str, i64)]) -> (Connection, Blocks) {
        let conn = Connection::open_in_memory().expect("open");
        super::super::schema::LAYOUT.apply(&conn).expect("schema");
        for (seq, id, idh) in rows {
            conn.execute(
                "INSERT INTO events(seq, id, stream, ts, body, idh) VALUES (?1, ?2, 1, 0, 'body', ?3)",
                rusqlite::params![seq, id, idh],
            )
            .expect("insert");
        }
        let blocks = Blocks::open(&conn).expect("blocks");
        (conn, blocks)
    }

    #[test]
    fn ids_are_found_in_any_block_and_told_apart_from_colliding_hashes() {
        // Two ids made to share a hash, in blocks far apart (the first
        // sealed, the second in memory); a third id whose filter bits are
        // set but which was never stored (a false positive).
        let far = 5u64 << BLOCK_SHIFT;
        let key = id_hash("a");
        let (conn, blocks) = log_with(&[(1, "a", key), (far as i64, "b", key)]);
        let filter = IdFilter::load(&conn, &blocks, 2, 1).expect("load");
        filter.insert(id_hash("ghost"), far);
        let view = blocks.view(&conn).expect("view");
        assert_eq!(view.sealed_below(), 5, "the full blocks were sealed");
        assert_eq!(filter.find(&view, &conn, "a").expect("find"), Some(1));
        assert_eq!(
            filter.find_hashed(&view, &conn, key, "b").expect("find"),
            Some(far as i64)
        );
        assert_eq!(filter.find(&view, &conn, "ghost").expect("find"), None);
        assert_eq!(filter.find(&view, &conn, "never").expect("find"), None);
        let got = filter.get(&view, &conn, "a").expect("get").expect("stored");
        assert_eq!((got.seq, &*got.json), (crate::Seq(1), "body"));
    }

    #[test]
    fn the_stored_hash_never_changes() {
        // On disk in every log: a new build must compute the same values.
        assert_eq!(id_hash(""), 0x7a95_0af4_d4da_f44d);
    }
}
