//! Turns a [`Query`] into a walk over sequence blocks.
//!
//! What finds rows is kept per block of sequence numbers (`seq >>
//! BLOCK_SHIFT`, see `blocks.rs`), so a query walks blocks in the requested
//! order and, in each block, takes the entries of its streams (project ×
//! type pairs) or its workflow run, then checks any other condition on each
//! candidate row in order. It stops as soon as the page is full. Time
//! bounds become block bounds through the zone map, so `since` never walks
//! the history before it, and a block whose zone lies within them checks no
//! row's time. A walk that finds little is bounded by a time budget: it
//! then answers what it found with a cursor where it stopped, so a client
//! that follows cursors still sees every match and no request runs away.

use super::blocks::{Blocks, Key, View, postings_sql};
use super::schema::{BLOCK_SHIFT, run_hash};
use super::stored_at;
use crate::{Order, Page, Query, Seq};
use cds_events_model::EventScope;
use cds_events_store::Error;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, ToSql, params_from_iter};
use std::time::{Duration, Instant};

/// Above this many streams, looking each one up in every block costs more
/// than reading the block's rows; the walk reads rows instead.
const MAX_SEEK_STREAMS: usize = 64;

/// How a block is searched.
#[derive(Debug)]
enum Driver {
    /// The entries of each of these streams.
    Streams(Vec<i64>),
    /// The entries of this run hash.
    Run(i64),
    /// Read the block's rows in sequence order.
    Scan,
}

#[derive(Debug)]
struct Plan {
    lo: i64,
    hi: i64,
    driver: Driver,
    /// The time bounds (`since`, `until`) in nanoseconds: checked on a
    /// candidate row only in a block whose zone crosses them.
    since: Option<i64>,
    until: Option<i64>,
    /// The other conditions checked on each candidate row, with their
    /// parameters.
    refine: String,
    refine_params: Vec<Value>,
}

fn in_list(col: &str, n: usize) -> String {
    let mut s = format!("{col} IN (");
    for i in 0..n {
        s.push_str(if i == 0 { "?" } else { ",?" });
    }
    s.push(')');
    s
}

fn plan(conn: &Connection, q: &Query) -> Result<Option<Plan>, Error> {
    let f = &q.filter;
    if f.types.as_ref().is_some_and(|t| t.is_empty()) {
        return Ok(None);
    }
    let mut lo: i64 = 1;
    let mut hi: i64 = i64::MAX;
    match (q.order, q.cursor) {
        (Order::Asc, Some(c)) => lo = lo.max(c.0 as i64 + 1),
        (Order::Desc, Some(c)) => hi = hi.min(c.0 as i64 - 1),
        _ => {}
    }
    // The snapshot's range: entries in memory may be newer, and a purge may
    // have cut a block's start.
    let Some((min_seq, max_seq)) = super::seq_range(conn)? else {
        return Ok(None);
    };
    lo = lo.max(min_seq);
    hi = hi.min(max_seq);
    if let Some(since) = f.since {
        let block: Option<i64> = conn
            .prepare_cached("SELECT MIN(block) FROM zones WHERE max_ts >= ?1")?
            .query_row([since.unix_nanos()], |r| r.get(0))
            .optional()?
            .flatten();
        match block {
            Some(b) => lo = lo.max(b << BLOCK_SHIFT),
            None => return Ok(None),
        }
    }
    if let Some(until) = f.until {
        let block: Option<i64> = conn
            .prepare_cached("SELECT MAX(block) FROM zones WHERE min_ts <= ?1")?
            .query_row([until.unix_nanos()], |r| r.get(0))
            .optional()?
            .flatten();
        match block {
            Some(b) => hi = hi.min(((b + 1) << BLOCK_SHIFT) - 1),
            None => return Ok(None),
        }
    }
    if lo > hi {
        return Ok(None);
    }

    // Which streams (project × type pairs) can match.
    let streams: Option<Vec<i64>> = if f.scopes.is_empty() && f.types.is_none() && !f.exclude_global
    {
        None
    } else {
        let mut sql = String::from("SELECT id FROM streams WHERE 1");
        let mut params: Vec<Value> = Vec::new();
        if f.exclude_global {
            sql.push_str(" AND project_key != ''");
        }
        if !f.scopes.is_empty() {
            sql.push_str(" AND ");
            sql.push_str(&in_list("project_key", f.scopes.len()));
            params.extend(
                f.scopes
                    .iter()
                    .map(|s| Value::Text(stream_key(s).to_owned())),
            );
        }
        if let Some(types) = &f.types {
            sql.push_str(" AND ");
            sql.push_str(&in_list("type", types.len()));
            params.extend(types.iter().map(|t| Value::Text(t.as_str().to_owned())));
        }
        let mut st = conn.prepare(&sql)?;
        let ids = st
            .query_map(params_from_iter(params), |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Ok(None);
        }
        Some(ids)
    };

    let mut refine = String::new();
    let mut refine_params: Vec<Value> = Vec::new();
    let mut cond = |sql: &str, vals: Vec<Value>| {
        refine.push_str(" AND ");
        refine.push_str(sql);
        refine_params.extend(vals);
    };
    for (key, v) in [
        ("workflow_run_id", &f.workflow_run_id),
        ("vcs_name", &f.vcs_name),
        ("repository", &f.repository),
        ("workflow", &f.workflow),
        ("run_job_id", &f.run_job_id),
        ("job_id", &f.job_id),
        ("region", &f.region),
        ("hatchery", &f.hatchery),
        ("status", &f.status),
    ] {
        if let Some(v) = v {
            cond(
                &format!("json_extract(body, '$.{key}') = ?"),
                vec![Value::Text(v.clone())],
            );
        }
    }
    if let Some(u) = &f.user {
        cond(
            "(json_extract(body, '$.user_id') = ? OR json_extract(body, '$.username') = ?)",
            vec![Value::Text(u.clone()), Value::Text(u.clone())],
        );
    }

    let driver = match (&f.workflow_run_id, streams) {
        (Some(run), streams) => {
            if let Some(s) = streams {
                cond(
                    &in_list("stream", s.len()),
                    s.into_iter().map(Value::Integer).collect(),
                );
            }
            Driver::Run(run_hash(run))
        }
        (None, Some(s)) if s.len() <= MAX_SEEK_STREAMS => Driver::Streams(s),
        (None, Some(s)) => {
            cond(
                &in_list("stream", s.len()),
                s.into_iter().map(Value::Integer).collect(),
            );
            Driver::Scan
        }
        (None, None) => Driver::Scan,
    };
    Ok(Some(Plan {
        lo,
        hi,
        driver,
        since: f.since.map(|t| t.unix_nanos()),
        until: f.until.map(|t| t.unix_nanos()),
        refine,
        refine_params,
    }))
}

impl Plan {
    /// What the block's entries are asked, unless the walk reads rows.
    fn key(&self) -> Option<Key<'_>> {
        match &self.driver {
            Driver::Streams(s) => Some(Key::Streams(s)),
            Driver::Run(h) => Some(Key::Run(*h)),
            Driver::Scan => None,
        }
    }

    /// The matching rows of a range (`?1`, `?2`), read in sequence order;
    /// its other parameters are [`Plan::params`] with the time bounds.
    fn scan_sql(&self) -> String {
        format!(
            "SELECT seq FROM events WHERE seq >= ?1 AND seq <= ?2{}{}",
            self.time_sql(true),
            self.refine
        )
    }

    /// Whether the candidate row `?1` meets the other conditions, the time
    /// bounds among them if `timed`; its other parameters are
    /// [`Plan::params`].
    fn check_sql(&self, timed: bool) -> String {
        format!(
            "SELECT 1 FROM events WHERE seq = ?1{}{}",
            self.time_sql(timed),
            self.refine
        )
    }

    /// The time bounds as conditions on a row, if `timed`.
    fn time_sql(&self, timed: bool) -> &'static str {
        match (timed, self.since.is_some(), self.until.is_some()) {
            (false, _, _) | (true, false, false) => "",
            (true, true, false) => " AND ts >= ?",
            (true, false, true) => " AND ts <= ?",
            (true, true, true) => " AND ts >= ? AND ts <= ?",
        }
    }

    /// The parameters after the row or range, the time bounds' if `timed`,
    /// bound by reference: no value is copied per candidate.
    fn params(&self, timed: bool) -> impl Iterator<Item = &dyn ToSql> {
        let time = if timed {
            [self.since.as_ref(), self.until.as_ref()]
        } else {
            [None, None]
        };
        time.into_iter()
            .flatten()
            .map(|v| v as &dyn ToSql)
            .chain(self.refine_params.iter().map(|v| v as &dyn ToSql))
    }

    /// Whether the rows of `block` may fall outside the time bounds: false
    /// when its zone (the times of the rows it holds in this snapshot) lies
    /// within them, so its candidates need no check of the time.
    fn timed(&self, conn: &Connection, block: i64) -> Result<bool, Error> {
        if self.since.is_none() && self.until.is_none() {
            return Ok(false);
        }
        let zone: Option<(i64, i64)> = conn
            .prepare_cached("SELECT min_ts, max_ts FROM zones WHERE block = ?1")?
            .query_row([block], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(zone.is_none_or(|(min, max)| {
            self.since.is_some_and(|s| min < s) || self.until.is_some_and(|u| max > u)
        }))
    }
}

/// A query's walk over its blocks, with the entries its snapshot may read.
struct Walk<'a> {
    conn: &'a Connection,
    plan: &'a Plan,
    view: View,
    order: Order,
    limit: usize,
}

impl Walk<'_> {
    /// Adds the matches of `block` in `lo..=hi` to `found`, in the query's
    /// order; candidates are checked against the other conditions only
    /// until `found` holds `limit`.
    fn block(&self, block: i64, lo: i64, hi: i64, found: &mut Vec<i64>) -> Result<(), Error> {
        let in_order = |seqs: &mut Vec<i64>| {
            if self.order == Order::Desc {
                seqs.reverse();
            }
        };
        let Some(key) = self.plan.key() else {
            let mut st = self.conn.prepare_cached(&self.plan.scan_sql())?;
            let range = [&lo as &dyn ToSql, &hi as &dyn ToSql];
            let params = range.into_iter().chain(self.plan.params(true));
            let mut seqs = st
                .query_map(params_from_iter(params), |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            seqs.sort_unstable();
            in_order(&mut seqs);
            found.extend(seqs);
            return Ok(());
        };
        let mut seqs = self.view.seqs(self.conn, block as u64, key)?;
        seqs.retain(|s| (lo..=hi).contains(s));
        if seqs.is_empty() {
            // Nothing to check: the block's zone need not be read.
            return Ok(());
        }
        in_order(&mut seqs);
        let timed = self.plan.timed(self.conn, block)?;
        if !timed && self.plan.refine.is_empty() {
            found.extend(seqs);
            return Ok(());
        }
        let mut check = self.conn.prepare_cached(&self.plan.check_sql(timed))?;
        for seq in seqs {
            if found.len() >= self.limit {
                break;
            }
            let params = std::iter::once(&seq as &dyn ToSql).chain(self.plan.params(timed));
            if check.exists(params_from_iter(params))? {
                found.push(seq);
            }
        }
        Ok(())
    }
}

pub(crate) fn run(
    conn: &Connection,
    blocks: &Blocks,
    q: &Query,
    budget: Duration,
) -> Result<Page, Error> {
    let started = Instant::now();
    let tx = conn.unchecked_transaction()?;
    let Some(plan) = plan(&tx, q)? else {
        return Ok(Page {
            events: Vec::new(),
            next_cursor: None,
        });
    };
    let limit = q.limit.max(1);
    let walk = Walk {
        conn: &tx,
        plan: &plan,
        view: blocks.view(&tx)?,
        order: q.order,
        limit,
    };
    let (first_block, last_block) = (plan.lo >> BLOCK_SHIFT, plan.hi >> BLOCK_SHIFT);
    let mut found: Vec<i64> = Vec::new();
    let mut next_cursor = None;
    let mut block = if q.order == Order::Asc {
        first_block
    } else {
        last_block
    };
    loop {
        let lo = plan.lo.max(block << BLOCK_SHIFT);
        let hi = plan.hi.min(((block + 1) << BLOCK_SHIFT) - 1);
        walk.block(block, lo, hi, &mut found)?;
        if found.len() >= limit {
            found.truncate(limit);
            next_cursor = found.last().map(|s| Seq(*s as u64));
            break;
        }
        let done = if q.order == Order::Asc {
            block >= last_block
        } else {
            block <= first_block
        };
        if done {
            break;
        }
        if started.elapsed() >= budget {
            // Resume exactly where this walk stopped.
            next_cursor = Some(Seq(if q.order == Order::Asc {
                hi as u64
            } else {
                lo as u64
            }));
            break;
        }
        block += if q.order == Order::Asc { 1 } else { -1 };
    }
    let mut events = Vec::with_capacity(found.len());
    for seq in found {
        // Found in this snapshot: the row is there.
        events.push(stored_at(&tx, seq)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?);
    }
    Ok(Page {
        events,
        next_cursor,
    })
}

/// How a query would run: the walk, then SQLite's plans for what it asks in
/// a block (the postings of a full block, the check of each candidate, or
/// the read of a block's rows).
pub(crate) fn explain(conn: &Connection, blocks: &Blocks, q: &Query) -> Result<Vec<String>, Error> {
    let tx = conn.unchecked_transaction()?;
    let Some(plan) = plan(&tx, q)? else {
        return Ok(vec!["(matches nothing)".to_owned()]);
    };
    let view = blocks.view(&tx)?;
    let mut lines = vec![format!(
        "walk blocks {}..={} by {:?}; blocks below {} from their postings, the others from memory",
        plan.lo >> BLOCK_SHIFT,
        plan.hi >> BLOCK_SHIFT,
        plan.driver,
        view.sealed_below(),
    )];
    let zero = 0i64;
    let with_refine = |n: usize| {
        let mut params = vec![&zero as &dyn ToSql; n];
        params.extend(plan.params(true));
        params
    };
    let asked = match plan.key() {
        Some(key) => vec![
            (postings_sql(key).to_owned(), vec![&zero as &dyn ToSql; 2]),
            (plan.check_sql(true), with_refine(1)),
        ],
        None => vec![(plan.scan_sql(), with_refine(2))],
    };
    for (sql, params) in asked {
        let mut st = tx.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let rows = st.query_map(params_from_iter(params), |r| r.get::<_, String>(3))?;
        lines.extend(rows.collect::<Result<Vec<_>, _>>()?);
    }
    Ok(lines)
}

/// The `streams.project_key` of a scope: the table keeps `''` for global
/// events (CDS's wire value); that spelling stays inside this backend.
fn stream_key(scope: &EventScope) -> &str {
    match scope {
        EventScope::Global => "",
        EventScope::Project(key) => key.as_str(),
    }
}
