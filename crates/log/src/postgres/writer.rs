//! The append path: one task per `PgLog` group-commits its appends, and
//! every append transaction of every instance is serialized by the row lock
//! on `log_head`.
//!
//! A group is the first waiting request and every other one already queued
//! (up to [`MAX_GROUP_EVENTS`] events). Its transaction runs in two pipelined
//! round trips:
//!
//! 1. `BEGIN`; `SELECT seq FROM log_head FOR UPDATE` (waits while another
//!    instance's append holds the row, and then reads the seq it left);
//!    `SELECT id, seq FROM log_events WHERE id = ANY(…)` — a statement of its
//!    own, so under READ COMMITTED its snapshot is taken after the lock and
//!    sees every append committed before.
//! 2. The events that are new get `head + 1 …`, in request order (a
//!    duplicate, stored earlier or earlier in the same group, gets the
//!    original's seq and `duplicate: true`); then the multi-row `INSERT …
//!    SELECT FROM unnest(…)`, the zone map, new streams, `UPDATE log_head`,
//!    `pg_notify('cds_events_head', last)` and `COMMIT`.
//!
//! The row lock is released only after the commit is visible, so the next
//! appender numbers after it and commits after it: sequence numbers are
//! gap-free and commit-ordered for every reader, on every instance. The
//! serialization costs the lock holder about one round trip per group, not
//! per request.
//!
//! The rows go in as one `INSERT … SELECT FROM unnest($1::bigint[], …)`
//! rather than a binary `COPY`: timed ad hoc on 500-event batches (each
//! alternating with the other, 100 of each, twice) the insert took the same
//! time both ways (about 15 ms per batch on a loaded two-core machine, within
//! the noise), and the `INSERT` pipelines with the rest of the transaction
//! while `COPY` needs round trips of its own with the head's lock held.
//!
//! Replies go out after the commit; this instance's `head()` moves at once,
//! others' through the notification (see `head.rs`). If a group fails, each
//! request is retried alone so that one bad request cannot fail the others;
//! if the database is away, every request of the group is answered busy.

use super::schema::{BLOCK_SHIFT, HEAD_CHANNEL};
use crate::{Appended, NewEvent, Seq};
use cds_events_store::Error;
use cds_events_store::pg::PgPool;
use cds_events_store::pg::deadpool_postgres::Object;
use cds_events_store::pg::tokio_postgres::types::ToSql;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;

/// Most events committed in one transaction: bounds the lock's hold time and
/// the size of one statement.
const MAX_GROUP_EVENTS: usize = 10_000;

/// Requests waiting for the writer task.
const QUEUE: usize = 4096;

pub(super) type Reply = oneshot::Sender<Result<Vec<Appended>, Error>>;

pub(super) enum Msg {
    Append(Vec<NewEvent>, Reply),
    /// Everything queued before is committed; then the task ends.
    Close(oneshot::Sender<()>),
}

/// Starts the writer task; it ends after a [`Msg::Close`] or when every
/// sender is gone.
pub(super) fn spawn(
    pool: PgPool,
    head: Arc<watch::Sender<Seq>>,
    tasks: &TaskTracker,
) -> mpsc::Sender<Msg> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let writer = GroupWriter {
        pool,
        head,
        streams: HashSet::new(),
    };
    tasks.spawn(writer.run(rx));
    tx
}

struct GroupWriter {
    pool: PgPool,
    head: Arc<watch::Sender<Seq>>,
    /// (project, type) pairs known to be in `log_streams`.
    streams: HashSet<(String, &'static str)>,
}

type Append = (Vec<NewEvent>, Reply);

impl GroupWriter {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut next: Option<Msg> = None;
        loop {
            let msg = match next.take() {
                Some(m) => m,
                None => match rx.recv().await {
                    Some(m) => m,
                    None => return,
                },
            };
            let (events, reply) = match msg {
                Msg::Close(done) => {
                    let _ = done.send(());
                    return;
                }
                Msg::Append(events, reply) => (events, reply),
            };
            let mut weight = events.len();
            let mut group = vec![(events, reply)];
            while weight < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(Msg::Append(events, reply)) => {
                        weight += events.len();
                        group.push((events, reply));
                    }
                    Ok(close) => {
                        next = Some(close);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group).await;
        }
    }

    async fn commit_group(&mut self, group: Vec<Append>) {
        let started = Instant::now();
        let events: usize = group.iter().map(|(e, _)| e.len()).sum();
        let requests: Vec<&[NewEvent]> = group.iter().map(|(e, _)| e.as_slice()).collect();
        let results: Vec<Result<Vec<Appended>, Error>> = match self.commit(&requests).await {
            Ok(results) => results.into_iter().map(Ok).collect(),
            Err(e) if group.len() == 1 => vec![Err(e)],
            Err(e) if e.is_unavailable() => {
                let msg = e.to_string();
                requests
                    .iter()
                    .map(|_| Err(Error::Busy(msg.clone())))
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, requests = group.len(), "group commit failed; retrying requests one by one");
                let mut out = Vec::with_capacity(requests.len());
                for r in &requests {
                    out.push(
                        self.commit(std::slice::from_ref(r))
                            .await
                            .map(|mut v| v.remove(0)),
                    );
                }
                out
            }
        };
        metrics::histogram!("cds_events_commit_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("cds_events_commit_group_events").record(events as f64);
        for ((_, reply), r) in group.into_iter().zip(results) {
            let _ = reply.send(r);
        }
    }

    /// One transaction over `requests`; on error nothing is kept.
    async fn commit(&mut self, requests: &[&[NewEvent]]) -> Result<Vec<Vec<Appended>>, Error> {
        let conn = self.pool.get().await?;
        match self.transaction(&conn, requests).await {
            Ok((out, last, new_streams)) => {
                if let Some(last) = last {
                    super::head::advance(&self.head, last);
                }
                self.streams.extend(new_streams);
                Ok(out)
            }
            Err(e) => {
                tracing::error!(error = %e, "append transaction failed");
                // A connection left inside a transaction must not go back to
                // the pool.
                if conn.is_closed() || conn.batch_execute("ROLLBACK").await.is_err() {
                    drop(Object::take(conn));
                }
                Err(e)
            }
        }
    }

    /// The transaction; returns the outcomes, the new head (if anything was
    /// written) and the streams it added.
    async fn transaction(&self, conn: &Object, requests: &[&[NewEvent]]) -> Result<Outcome, Error> {
        let lock = conn
            .prepare_cached("SELECT seq FROM log_head FOR UPDATE")
            .await?;
        let lookup = conn
            .prepare_cached("SELECT id, seq FROM log_events WHERE id = ANY($1::text[])")
            .await?;
        let mut ids: Vec<&str> = requests
            .iter()
            .flat_map(|r| r.iter().map(|e| e.head.id.as_str()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        // Round trip 1, pipelined in this order.
        let lookup_args: [&(dyn ToSql + Sync); 1] = [&ids];
        let (_, head, found) = tokio::try_join!(
            biased;
            conn.batch_execute("BEGIN"),
            conn.query_one(&lock, &[]),
            conn.query(&lookup, &lookup_args),
        )?;
        let head: i64 = head.get(0);
        let mut known: HashMap<String, i64> = found
            .into_iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect();

        let mut rows = Rows::default();
        let mut new_streams = Vec::new();
        let mut next = head + 1;
        let mut out = Vec::with_capacity(requests.len());
        for events in requests {
            let mut appended = Vec::with_capacity(events.len());
            for ne in *events {
                let e = &ne.head;
                if let Some(seq) = known.get(&e.id) {
                    appended.push(Appended {
                        id: e.id.clone(),
                        seq: Seq(*seq as u64),
                        duplicate: true,
                    });
                    continue;
                }
                let t = e.event_type.as_str();
                let pair = (e.project_key.clone(), t);
                if !self.streams.contains(&pair) && !new_streams.contains(&pair) {
                    new_streams.push(pair);
                }
                rows.push(next, ne);
                known.insert(e.id.clone(), next);
                appended.push(Appended {
                    id: e.id.clone(),
                    seq: Seq(next as u64),
                    duplicate: false,
                });
                next += 1;
            }
            out.push(appended);
        }
        let last = next - 1;
        if rows.seq.is_empty() {
            conn.batch_execute("COMMIT").await?;
            return Ok((out, None, Vec::new()));
        }

        let insert = conn
            .prepare_cached(
                "INSERT INTO log_events (seq, id, project_key, type, ts, run, body)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                                      $5::bigint[], $6::text[], $7::text[])",
            )
            .await?;
        let zones = conn
            .prepare_cached(
                "INSERT INTO log_zones (block, min_ts, max_ts)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[])
                 ON CONFLICT (block) DO UPDATE
                 SET min_ts = LEAST(log_zones.min_ts, excluded.min_ts),
                     max_ts = GREATEST(log_zones.max_ts, excluded.max_ts)",
            )
            .await?;
        let streams = conn
            .prepare_cached(
                "INSERT INTO log_streams (project_key, type)
                 SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            )
            .await?;
        let set_head = conn.prepare_cached("UPDATE log_head SET seq = $1").await?;
        let notify = conn.prepare_cached("SELECT pg_notify($1, $2)").await?;

        let (blocks, min_ts, max_ts) = zone_rows(&rows);
        let (stream_projects, stream_types): (Vec<&str>, Vec<&str>) =
            new_streams.iter().map(|(p, t)| (p.as_str(), *t)).unzip();
        let last_text = last.to_string();
        let insert_args: [&(dyn ToSql + Sync); 7] = [
            &rows.seq,
            &rows.id,
            &rows.project,
            &rows.kind,
            &rows.ts,
            &rows.run,
            &rows.body,
        ];
        let zone_args: [&(dyn ToSql + Sync); 3] = [&blocks, &min_ts, &max_ts];
        let stream_args: [&(dyn ToSql + Sync); 2] = [&stream_projects, &stream_types];
        let head_args: [&(dyn ToSql + Sync); 1] = [&last];
        let notify_args: [&(dyn ToSql + Sync); 2] = [&HEAD_CHANNEL, &last_text];
        // Round trip 2, pipelined in this order. If a statement fails the
        // transaction is aborted, and the COMMIT then rolls it back.
        let (inserted, zoned, streamed, headed, notified, committed) = tokio::join!(
            biased;
            conn.execute(&insert, &insert_args),
            conn.execute(&zones, &zone_args),
            conn.execute(&streams, &stream_args),
            conn.execute(&set_head, &head_args),
            conn.execute(&notify, &notify_args),
            conn.batch_execute("COMMIT"),
        );
        inserted?;
        zoned?;
        streamed?;
        headed?;
        notified?;
        committed?;
        Ok((out, Some(Seq(last as u64)), new_streams))
    }
}

/// What a transaction reports: the outcomes, the new head, the new streams.
type Outcome = (Vec<Vec<Appended>>, Option<Seq>, Vec<(String, &'static str)>);

/// The new events as columns, for `unnest`.
#[derive(Default)]
struct Rows<'a> {
    seq: Vec<i64>,
    id: Vec<&'a str>,
    project: Vec<&'a str>,
    kind: Vec<&'static str>,
    ts: Vec<i64>,
    run: Vec<Option<&'a str>>,
    body: Vec<&'a str>,
}

impl<'a> Rows<'a> {
    fn push(&mut self, seq: i64, ne: &'a NewEvent) {
        let e = &ne.head;
        self.seq.push(seq);
        self.id.push(&e.id);
        self.project.push(&e.project_key);
        self.kind.push(e.event_type.as_str());
        self.ts.push(ne.timestamp.unix_nanos());
        self.run
            .push((!e.workflow_run_id.is_empty()).then_some(e.workflow_run_id.as_str()));
        self.body.push(&ne.json);
    }
}

/// Per block touched, the lowest and highest event time.
fn zone_rows(rows: &Rows<'_>) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
    let mut zones: Vec<(i64, i64, i64)> = Vec::new();
    for (seq, ts) in rows.seq.iter().zip(&rows.ts) {
        let block = seq >> BLOCK_SHIFT;
        match zones.last_mut() {
            Some(z) if z.0 == block => {
                z.1 = z.1.min(*ts);
                z.2 = z.2.max(*ts);
            }
            _ => zones.push((block, *ts, *ts)),
        }
    }
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for (b, lo, hi) in zones {
        out.0.push(b);
        out.1.push(lo);
        out.2.push(hi);
    }
    out
}
