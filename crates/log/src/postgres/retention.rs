//! Purges and figures. Sequence numbers have no gaps and purges cut a
//! prefix, so the number of events is `max(seq) - min(seq) + 1`, read from
//! the two ends of the primary key.

use super::schema::{BLOCK_SHIFT, TABLES};
use crate::{LogStats, Retention, Seq};
use cds_events_store::Error;
use cds_events_store::pg::deadpool_postgres::Object;

/// The stored range, `None` when empty.
async fn range(conn: &Object) -> Result<Option<(i64, i64)>, Error> {
    let row = conn
        .query_one("SELECT min(seq), max(seq) FROM log_events", &[])
        .await?;
    Ok(row
        .get::<_, Option<i64>>(0)
        .zip(row.get::<_, Option<i64>>(1)))
}

/// Deletes up to `batch` of the oldest events beyond `retention`. Several
/// instances may purge at once: each deletes what is still there below its
/// bound.
pub(super) async fn purge(
    conn: &mut Object,
    retention: Retention,
    batch: usize,
) -> Result<u64, Error> {
    let batch = batch.max(1) as i64;
    let Some((min, max)) = range(conn).await? else {
        return Ok(0);
    };
    let mut bound: Option<i64> = None;
    if let Some(keep) = retention.max_events {
        let excess = (max - min + 1) - keep as i64;
        if excess > 0 {
            bound = Some(min + excess.min(batch) - 1);
        }
    }
    if let Some(age) = retention.max_age {
        let cutoff = cds_events_model::Timestamp::now()
            .unix_nanos()
            .saturating_sub(age.as_nanos() as i64);
        let rows = conn
            .query(
                "SELECT seq, ts FROM log_events WHERE seq >= $1 ORDER BY seq LIMIT $2",
                &[&min, &batch],
            )
            .await?;
        let last = rows
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .take_while(|(_, ts)| *ts < cutoff)
            .last()
            .map(|(seq, _)| seq);
        bound = bound.max(last);
    }
    let Some(mut bound) = bound else {
        return Ok(0);
    };
    if let Some(hold) = retention.hold_from {
        bound = bound.min(hold.0 as i64 - 1);
    }
    if bound < min {
        return Ok(0);
    }
    let tx = conn.transaction().await?;
    let deleted = tx
        .execute(
            "DELETE FROM log_events WHERE seq >= $1 AND seq <= $2",
            &[&min, &bound],
        )
        .await?;
    tx.execute(
        "DELETE FROM log_zones WHERE block < $1",
        &[&((bound + 1) >> BLOCK_SHIFT)],
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("cds_events_purged_total").increment(deleted);
    Ok(deleted)
}

pub(super) async fn stats(conn: &Object) -> Result<LogStats, Error> {
    let tables: Vec<&str> = TABLES.to_vec();
    let row = conn
        .query_one(
            "SELECT (SELECT min(seq) FROM log_events), (SELECT max(seq) FROM log_events),
                    (SELECT seq FROM log_head),
                    (SELECT sum(pg_total_relation_size(t::regclass))::bigint
                     FROM unnest($1::text[]) AS t)",
            &[&tables],
        )
        .await?;
    let range = row
        .get::<_, Option<i64>>(0)
        .zip(row.get::<_, Option<i64>>(1));
    Ok(LogStats {
        backend: "postgresql",
        events: range.map_or(0, |(lo, hi)| (hi - lo + 1) as u64),
        oldest_seq: Seq(range.map_or(0, |(lo, _)| lo as u64)),
        head_seq: Seq(row.get::<_, i64>(2) as u64),
        bytes_on_disk: row.get::<_, Option<i64>>(3).unwrap_or(0) as u64,
    })
}
