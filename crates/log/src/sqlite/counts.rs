//! [`EventLog::count`](crate::EventLog::count) on SQLite: the zone map turns
//! the window into a range of blocks, then one grouped read of that range of
//! `seq` (the table's rowid: a range seek, never a scan of older history)
//! counts by bucket and stream; streams map to their type and scope here.

use super::schema::BLOCK_SHIFT;
use crate::counts::{CountQuery, TypeCount, collect};
use cds_events_model::{EventScope, EventType};
use cds_events_store::Error;
use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;

pub(crate) fn run(conn: &Connection, q: &CountQuery) -> Result<Vec<TypeCount>, Error> {
    let Some((since, until, step)) = q.nanos() else {
        return Ok(Vec::new());
    };
    let tx = conn.unchecked_transaction()?;
    let mut streams: HashMap<i64, EventType> = HashMap::new();
    super::for_each_stream(&tx, |id, project, t| {
        if q.admits(&EventScope::from_wire(&project)) {
            streams.insert(id, t);
        }
    })?;
    if streams.is_empty() {
        return Ok(Vec::new());
    }
    let first: Option<i64> = tx
        .prepare_cached("SELECT MIN(block) FROM zones WHERE max_ts >= ?1")?
        .query_row([since], |r| r.get(0))
        .optional()?
        .flatten();
    let last: Option<i64> = tx
        .prepare_cached("SELECT MAX(block) FROM zones WHERE min_ts < ?1")?
        .query_row([until], |r| r.get(0))
        .optional()?
        .flatten();
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(Vec::new());
    };
    if first > last {
        return Ok(Vec::new());
    }
    let (lo, hi) = (first << BLOCK_SHIFT, ((last + 1) << BLOCK_SHIFT) - 1);
    let mut st = tx.prepare_cached(
        "SELECT (ts - ?1) / ?2, stream, COUNT(*) FROM events
         WHERE seq >= ?3 AND seq <= ?4 AND ts >= ?1 AND ts < ?5
         GROUP BY 1, 2",
    )?;
    let rows = st
        .query_map([since, step, lo, hi, until], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(collect(rows.into_iter().filter_map(
        |(bucket, stream, n)| streams.get(&stream).map(|t| (bucket, *t, n as u64)),
    )))
}
