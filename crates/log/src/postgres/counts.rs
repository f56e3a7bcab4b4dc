//! [`EventLog::count`](crate::EventLog::count) on PostgreSQL: `log_zones`
//! turns the window into a range of blocks, then one grouped read of that
//! range of `seq` (the primary key: a range walk, never the older history)
//! counts by bucket, project and type; scopes are admitted here.

use super::schema::BLOCK_SHIFT;
use crate::counts::{CountQuery, TypeCount, collect};
use cds_events_model::{EventScope, EventType};
use cds_events_store::Error;
use cds_events_store::pg::deadpool_postgres::Object;

pub(super) async fn run(conn: &Object, q: &CountQuery) -> Result<Vec<TypeCount>, Error> {
    let Some((since, until, step)) = q.nanos() else {
        return Ok(Vec::new());
    };
    let st = conn
        .prepare_cached(
            "SELECT (SELECT min(block) FROM log_zones WHERE max_ts >= $1),
                    (SELECT max(block) FROM log_zones WHERE min_ts < $2)",
        )
        .await?;
    let row = conn.query_one(&st, &[&since, &until]).await?;
    let (Some(first), Some(last)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
    else {
        return Ok(Vec::new());
    };
    if first > last {
        return Ok(Vec::new());
    }
    let (lo, hi) = (first << BLOCK_SHIFT, ((last + 1) << BLOCK_SHIFT) - 1);
    let st = conn
        .prepare_cached(
            "SELECT (ts - $1) / $2, project_key, type, count(*) FROM log_events
             WHERE seq BETWEEN $3 AND $4 AND ts >= $1 AND ts < $5
             GROUP BY 1, 2, 3",
        )
        .await?;
    let rows = conn.query(&st, &[&since, &step, &lo, &hi, &until]).await?;
    Ok(collect(rows.iter().filter_map(|r| {
        let project: &str = r.get(1);
        if !q.admits(&EventScope::from_wire(project)) {
            return None;
        }
        let t = EventType::parse(r.get::<_, &str>(2))?;
        Some((r.get::<_, i64>(0), t, r.get::<_, i64>(3) as u64))
    })))
}
