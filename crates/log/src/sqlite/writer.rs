//! The log's commands to the single writer thread, and what each does.
//!
//! Every append request is queued on the store crate's [`Writer`]
//! (`cds_events_store::Writer`), which takes the first request, then
//! everything else already waiting (up to [`MAX_GROUP_EVENTS`] events), and
//! hands the group to [`LogWriter::commit_group`]: all of it in one
//! transaction, so that a burst of appends costs one commit. Replies go out
//! only after the commit, so an acknowledged event is durable at the
//! configured level. Purges and consumer positions run alone, in queue order.
//!
//! [`Writer`]: cds_events_store::Writer

use super::blocks::Blocks;
use super::ids::{IdFilter, id_hash};
use super::schema::{BLOCK_SHIFT, LAST_SEQ, run_hash};
use crate::recent::Recent;
use crate::{Appended, NewEvent, Retention, Seq, StoredEvent};
use cds_events_store::{Error, Handler};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

pub(crate) type Reply<T> = cds_events_store::Reply<T>;

/// An append request, which joins groups: its events and where its outcome
/// goes.
pub(crate) type Append = (Vec<NewEvent>, Reply<Committed>);

/// A committed request's events, handed back with where each went: the
/// caller's task, not the writer, makes the replies' ids and frees them.
pub(crate) type Committed = (Vec<NewEvent>, Vec<Placed>);

/// Where one appended event is: its sequence number, and whether its id was
/// already stored (then nothing was written and `seq` is the original's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placed {
    pub seq: Seq,
    pub duplicate: bool,
}

impl Placed {
    pub(crate) fn appended(self, event: &NewEvent) -> Appended {
        Appended {
            id: event.head.id.clone(),
            seq: self.seq,
            duplicate: self.duplicate,
        }
    }
}

/// The interned (project key, type) pairs, by project then type, so that a
/// lookup borrows the event's key instead of copying it.
pub(crate) type Streams = HashMap<String, HashMap<&'static str, i64>>;

/// The requests that run alone.
pub(crate) enum Cmd {
    Purge {
        retention: Retention,
        batch: usize,
        reply: Reply<u64>,
    },
    SetConsumer {
        name: String,
        seq: Seq,
        reply: Reply<()>,
    },
    SetPaused {
        name: String,
        paused: bool,
        reply: Reply<()>,
    },
}

/// Most events committed in one transaction: bounds commit latency and the
/// memory held by queued requests.
const MAX_GROUP_EVENTS: usize = 50_000;

/// The writer thread's state.
pub(crate) struct LogWriter {
    pub conn: Connection,
    /// Interned (project_key, type) pairs, mirroring the `streams` table.
    pub streams: Streams,
    pub next_seq: u64,
    pub count: i64,
    /// Which blocks may hold an id (shared with the readers).
    pub ids: Arc<IdFilter>,
    /// Which rows of each block hold a stream, a run or an id (shared with
    /// the readers).
    pub blocks: Arc<Blocks>,
    /// The newest committed events, for the readers that follow the head.
    pub recent: Arc<Recent>,
    pub head: watch::Sender<Seq>,
}

impl Handler for LogWriter {
    type Member = Append;
    type Command = Cmd;
    const MAX_GROUP: usize = MAX_GROUP_EVENTS;

    fn weight(request: &Append) -> usize {
        request.0.len()
    }

    /// Commits a group in one transaction. Requests fail only on storage
    /// errors (duplicates are not errors), so the fast path has no
    /// savepoints; if the group fails, each request is retried in a
    /// transaction of its own so that one bad request cannot fail the others.
    fn commit_group(&mut self, group: Vec<Append>) {
        let started = Instant::now();
        let events: usize = group.iter().map(|(e, _)| e.len()).sum();
        let requests: Vec<&[NewEvent]> = group.iter().map(|(e, _)| e.as_slice()).collect();
        let results = match self.commit(&requests) {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) if group.len() == 1 => vec![Err(e)],
            Err(e) => {
                tracing::warn!(error = %e, requests = group.len(), "group commit failed; retrying requests one by one");
                requests
                    .iter()
                    .map(|r| {
                        self.commit(std::slice::from_ref(r))
                            .map(|mut v| v.remove(0))
                    })
                    .collect::<Vec<_>>()
            }
        };
        metrics::histogram!("cds_events_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("cds_events_commit_group_events").record(events as f64);
        for ((events, reply), r) in group.into_iter().zip(results) {
            let _ = reply.send(r.map(|placed| (events, placed)));
        }
    }

    fn run(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Purge {
                retention,
                batch,
                reply,
            } => {
                let _ = reply.send(self.purge(retention, batch));
            }
            Cmd::SetConsumer { name, seq, reply } => {
                let r = self
                    .conn
                    .prepare_cached(
                        "INSERT INTO consumers(name, seq, updated_at) VALUES (?1, ?2, strftime('%s','now'))
                         ON CONFLICT(name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
                    )
                    .and_then(|mut st| st.execute(params![name, seq.0 as i64]))
                    .map(|_| ())
                    .map_err(Error::from);
                let _ = reply.send(r);
            }
            Cmd::SetPaused {
                name,
                paused,
                reply,
            } => {
                let sql = if paused {
                    "INSERT INTO consumer_pauses(name, paused_at) VALUES (?1, strftime('%s','now'))
                     ON CONFLICT(name) DO NOTHING"
                } else {
                    "DELETE FROM consumer_pauses WHERE name = ?1"
                };
                let r = self
                    .conn
                    .prepare_cached(sql)
                    .and_then(|mut st| st.execute(params![name]))
                    .map(|_| ())
                    .map_err(Error::from);
                let _ = reply.send(r);
            }
        }
    }

    /// Appends queued behind a close are still committed; anything else is
    /// answered "closed".
    fn after_close(&mut self, cmd: Cmd) -> Option<Cmd> {
        match cmd {
            Cmd::Purge { reply, .. } => {
                let _ = reply.send(Err(Error::Closed));
                None
            }
            Cmd::SetConsumer { reply, .. } | Cmd::SetPaused { reply, .. } => {
                let _ = reply.send(Err(Error::Closed));
                None
            }
        }
    }

    fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl LogWriter {
    /// One transaction over `requests`; on error nothing is kept and the
    /// in-memory counters are restored.
    fn commit(&mut self, requests: &[&[NewEvent]]) -> Result<Vec<Vec<Placed>>, Error> {
        let first_seq = self.next_seq;
        let mut zone_rows: Vec<(u64, i64)> = Vec::new();
        let mut new_streams: Vec<(String, &'static str)> = Vec::new();
        let mut fresh: Vec<StoredEvent> = Vec::new();
        let r = (|| -> Result<(Vec<Vec<Placed>>, Option<u64>), Error> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut out = Vec::with_capacity(requests.len());
            let mut ctx = InsertCtx {
                next_seq: &mut self.next_seq,
                ids: &self.ids,
                blocks: &self.blocks,
                zones: &mut zone_rows,
                streams: &mut self.streams,
                new_streams: &mut new_streams,
                fresh: self.recent.keeps().then_some(&mut fresh),
            };
            for events in requests {
                out.push(insert_request(&tx, events, &mut ctx)?);
            }
            let mut zones: HashMap<u64, (i64, i64)> = HashMap::new();
            for (seq, ts) in &zone_rows {
                let z = zones.entry(seq >> BLOCK_SHIFT).or_insert((*ts, *ts));
                z.0 = z.0.min(*ts);
                z.1 = z.1.max(*ts);
            }
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO zones(block, min_ts, max_ts) VALUES (?1, ?2, ?3)
                     ON CONFLICT(block) DO UPDATE SET min_ts = min(min_ts, excluded.min_ts),
                                                      max_ts = max(max_ts, excluded.max_ts)",
                )?;
                for (block, (lo, hi)) in &zones {
                    st.execute(params![*block as i64, lo, hi])?;
                }
            }
            // A block is full once a later one has an event: its entries
            // become postings in this same transaction.
            let sealed = if self.next_seq != first_seq {
                let newest = (self.next_seq - 1) >> BLOCK_SHIFT;
                self.blocks.seal_below(&tx, newest)?
            } else {
                None
            };
            // No bookkeeping rows: sequence numbers have no gaps and purges
            // only cut a prefix, so the count is max - min + 1 and the last
            // sequence is max(seq) (or, after a purge emptied the table, the
            // `last_seq` the purge recorded).
            tx.commit()?;
            Ok((out, sealed))
        })();
        match r {
            Ok((out, sealed)) => {
                if let Some(below) = sealed {
                    self.blocks.sealed(below);
                }
                self.count += zone_rows.len() as i64;
                // Before the head moves: a consumer it wakes finds them.
                self.recent.committed(fresh);
                if self.next_seq != first_seq {
                    self.head.send_replace(Seq(self.next_seq - 1));
                }
                Ok(out)
            }
            Err(e) => {
                tracing::error!(error = %e, "commit failed");
                self.next_seq = first_seq;
                self.blocks.rolled_back(first_seq);
                for (project, t) in new_streams {
                    if let Some(types) = self.streams.get_mut(&project) {
                        types.remove(t);
                    }
                }
                Err(e)
            }
        }
    }

    fn purge(&mut self, retention: Retention, batch: usize) -> Result<u64, Error> {
        let batch = batch.max(1) as i64;
        let mut bound: Option<i64> = None;
        if let Some(max) = retention.max_events {
            let excess = self.count - max as i64;
            if excess > 0 {
                let take = excess.min(batch);
                let b: Option<i64> = self
                    .conn
                    .query_row(
                        "SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?1",
                        [take - 1],
                        |r| r.get(0),
                    )
                    .optional()?;
                bound = b;
            }
        }
        if let Some(age) = retention.max_age {
            let cutoff = cds_events_model::Timestamp::now()
                .unix_nanos()
                .saturating_sub(age.as_nanos() as i64);
            let mut st = self
                .conn
                .prepare_cached("SELECT seq, ts FROM events ORDER BY seq LIMIT ?1")?;
            let rows = st.query_map([batch], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
            let mut last = None;
            for row in rows {
                let (seq, ts) = row?;
                if ts >= cutoff {
                    break;
                }
                last = Some(seq);
            }
            bound = match (bound, last) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        let Some(mut bound) = bound else {
            return Ok(0);
        };
        if let Some(hold) = retention.hold_from {
            bound = bound.min(hold.0 as i64 - 1);
        }
        if bound < 1 {
            return Ok(0);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let deleted = tx.execute("DELETE FROM events WHERE seq <= ?1", [bound])? as i64;
        let kept_block = (bound + 1) >> BLOCK_SHIFT;
        for table in ["zones", "block_streams", "block_runs", "block_ids"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE block < ?1"),
                [kept_block],
            )?;
        }
        // Remembered so that sequence numbers never restart, even when the
        // purge empties the table.
        LAST_SEQ.set(&tx, &(self.next_seq as i64 - 1))?;
        tx.commit()?;
        self.ids.purged_below(kept_block as u64);
        self.blocks.purged_below(kept_block as u64);
        self.recent.purged_through(Seq(bound as u64));
        self.count -= deleted;
        metrics::counter!("cds_events_purged_total").increment(deleted as u64);
        Ok(deleted as u64)
    }
}

struct InsertCtx<'a> {
    next_seq: &'a mut u64,
    ids: &'a IdFilter,
    blocks: &'a Blocks,
    zones: &'a mut Vec<(u64, i64)>,
    streams: &'a mut Streams,
    new_streams: &'a mut Vec<(String, &'static str)>,
    /// The events inserted, as readers will see them once committed.
    fresh: Option<&'a mut Vec<StoredEvent>>,
}

fn stream_id(
    conn: &Connection,
    ctx: &mut InsertCtx<'_>,
    project: &str,
    t: &'static str,
) -> Result<i64, Error> {
    if let Some(id) = ctx.streams.get(project).and_then(|types| types.get(t)) {
        return Ok(*id);
    }
    conn.prepare_cached("INSERT INTO streams(project_key, type) VALUES (?1, ?2)")?
        .execute(params![project, t])?;
    let id = conn.last_insert_rowid();
    ctx.streams
        .entry(project.to_owned())
        .or_default()
        .insert(t, id);
    ctx.new_streams.push((project.to_owned(), t));
    Ok(id)
}

fn insert_request(
    conn: &Connection,
    events: &[NewEvent],
    ctx: &mut InsertCtx<'_>,
) -> Result<Vec<Placed>, Error> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO events(seq, id, stream, ts, run, body, idh) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut out = Vec::with_capacity(events.len());
    let keys: Vec<i64> = events.iter().map(|ne| id_hash(&ne.head.id)).collect();
    ctx.ids.warm(&keys);
    for (ne, &key) in events.iter().zip(&keys) {
        let e = &ne.head;
        // Ids are unique because this one thread checks before it inserts
        // (an id earlier in the same transaction included).
        if ctx.ids.may_hold(key)
            && let Some(original) =
                ctx.ids
                    .find_hashed(&ctx.blocks.writer_view(), conn, key, &e.id)?
        {
            out.push(Placed {
                seq: Seq(original as u64),
                duplicate: true,
            });
            continue;
        }
        let seq = *ctx.next_seq;
        let ts = ne.timestamp.unix_nanos();
        let stream = stream_id(conn, ctx, &e.project_key, e.event_type.as_str())?;
        let run = (!e.workflow_run_id.is_empty()).then(|| run_hash(&e.workflow_run_id));
        insert.execute(params![seq as i64, e.id, stream, ts, run, &*ne.json, key])?;
        // Entries first: a reader the filter sends to this block finds it.
        ctx.blocks.add(seq, stream, run, key);
        ctx.ids.insert(key, seq);
        *ctx.next_seq += 1;
        ctx.zones.push((seq, ts));
        if let Some(fresh) = ctx.fresh.as_deref_mut() {
            // Readers near the head route it without scanning its JSON.
            fresh.push(StoredEvent {
                seq: Seq(seq),
                json: ne.json.clone(),
                known: Some(ne.head.clone()),
            });
        }
        out.push(Placed {
            seq: Seq(seq),
            duplicate: false,
        });
    }
    Ok(out)
}
