//! Turns a [`Query`] into ordered index walks over windows of sequence
//! numbers.
//!
//! One probe (one round trip) bounds the walk: the stored range, the zone
//! map's blocks for `since`/`until`, and how many streams (project × type
//! pairs) a project filter covers. Then the walk reads windows of sequence
//! numbers in the requested order, each one statement, the first
//! [`FIRST_WINDOW`] wide and each next one twice as wide (up to
//! [`MAX_WINDOW`]): a dense filter fills its page in the first window, a
//! sparse one reaches far in a few steps. In a window the candidates come
//! from one of the indexes (the driver), every index ending in `seq` so that
//! each walk is already in order and stops at the page's limit:
//!
//! - a workflow run: `log_events_run`;
//! - projects (with or without types): one walk of `log_events_project_type`
//!   per stream of `log_streams` that matches (a `LATERAL` join), merged;
//! - types over every project: one walk of `log_events_type` per type
//!   (one `UNION ALL` branch each, so that the planner sees each type's
//!   value and how rare it is);
//! - otherwise the primary key, over the window's range.
//!
//! Conditions the driver does not cover are checked on each candidate row
//! (non-indexed context fields from the JSON). A walk that finds little is
//! bounded by a time budget: it then answers what it found with a cursor
//! where it stopped, so a client that follows cursors still sees every match
//! and no request runs away.

use super::schema::BLOCK_SHIFT;
use crate::{Order, Page, Query, Seq, StoredEvent};
use cds_events_model::EventScope;
use cds_events_store::Error;
use cds_events_store::pg::deadpool_postgres::Object;
use cds_events_store::pg::tokio_postgres::types::ToSql;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The first window's width, in sequence numbers.
const FIRST_WINDOW: i64 = 1 << 14;
/// The widest window: bounds what one statement of a scan reads.
const MAX_WINDOW: i64 = 1 << 22;
/// Above this many streams, one walk per stream costs more than reading the
/// window's rows; the walk takes another driver.
const MAX_STREAMS: i64 = 256;
/// Above this many types (most of the catalogue), reading the window's rows
/// is as cheap as a walk per type.
const MAX_TYPE_BRANCHES: usize = 64;

type Param = Box<dyn ToSql + Sync + Send>;

/// Where a window's candidates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Driver {
    Run,
    Streams,
    Types,
    Scan,
}

/// A bounded walk: the range, and one statement run per window with
/// `$1` = window low, `$2` = window high, `$3` = how many rows are still
/// wanted, then `params`.
struct Plan {
    lo: i64,
    hi: i64,
    driver: Driver,
    sql: String,
    params: Vec<Param>,
}

impl Plan {
    fn bind(&mut self, p: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(p));
        format!("${}", self.params.len() + 3)
    }

    fn args<'a>(&'a self, window: &'a [i64; 3]) -> Vec<&'a (dyn ToSql + Sync)> {
        let mut args: Vec<&(dyn ToSql + Sync)> =
            window.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        args.extend(self.params.iter().map(|p| &**p as &(dyn ToSql + Sync)));
        args
    }
}

/// What the probe found.
struct Bounds {
    lo: i64,
    hi: i64,
    /// Streams of the filter's projects (and types), when it names projects.
    streams: i64,
}

/// The `project_key` of a scope: the table keeps `''` for global events
/// (CDS's wire value); that spelling stays inside this backend.
fn stream_key(scope: &EventScope) -> String {
    match scope {
        EventScope::Global => String::new(),
        EventScope::Project(key) => key.as_str().to_owned(),
    }
}

/// The projects a filter names, without the global scope when it is
/// excluded; `None` when it names none (every project).
fn projects(q: &Query) -> Option<Vec<String>> {
    let f = &q.filter;
    if f.scopes.is_empty() {
        return None;
    }
    Some(
        f.scopes
            .iter()
            .filter(|s| !(f.exclude_global && matches!(s, EventScope::Global)))
            .map(stream_key)
            .collect(),
    )
}

fn types(q: &Query) -> Option<Vec<String>> {
    q.filter
        .types
        .as_ref()
        .map(|t| t.iter().map(|t| t.as_str().to_owned()).collect())
}

async fn probe(conn: &Object, q: &Query) -> Result<Option<Bounds>, Error> {
    let f = &q.filter;
    let since = f.since.map(|t| t.unix_nanos());
    let until = f.until.map(|t| t.unix_nanos());
    let projects = projects(q).unwrap_or_default();
    let types = types(q);
    let row = conn
        .query_one(
            "SELECT (SELECT min(seq) FROM log_events), (SELECT max(seq) FROM log_events),
                    (SELECT min(block) FROM log_zones WHERE max_ts >= $1),
                    (SELECT max(block) FROM log_zones WHERE min_ts <= $2),
                    (SELECT count(*) FROM log_streams
                     WHERE project_key = ANY($3::text[])
                       AND ($4::text[] IS NULL OR type = ANY($4::text[])))",
            &[&since, &until, &projects, &types],
        )
        .await?;
    let (Some(min), Some(max)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
    else {
        return Ok(None);
    };
    let mut lo = min;
    let mut hi = max;
    match (q.order, q.cursor) {
        (Order::Asc, Some(c)) => lo = lo.max(c.0 as i64 + 1),
        (Order::Desc, Some(c)) => hi = hi.min(c.0 as i64 - 1),
        _ => {}
    }
    if since.is_some() {
        match row.get::<_, Option<i64>>(2) {
            Some(b) => lo = lo.max(b << BLOCK_SHIFT),
            None => return Ok(None),
        }
    }
    if until.is_some() {
        match row.get::<_, Option<i64>>(3) {
            Some(b) => hi = hi.min(((b + 1) << BLOCK_SHIFT) - 1),
            None => return Ok(None),
        }
    }
    if lo > hi {
        return Ok(None);
    }
    Ok(Some(Bounds {
        lo,
        hi,
        streams: row.get(4),
    }))
}

async fn plan(conn: &Object, q: &Query) -> Result<Option<Plan>, Error> {
    let f = &q.filter;
    if f.types.as_ref().is_some_and(|t| t.is_empty()) {
        return Ok(None);
    }
    let projects = projects(q);
    if projects.as_ref().is_some_and(|p| p.is_empty()) {
        return Ok(None);
    }
    let Some(bounds) = probe(conn, q).await? else {
        return Ok(None);
    };
    if projects.is_some() && bounds.streams == 0 {
        return Ok(None);
    }
    let types = types(q);
    let driver = if f.workflow_run_id.is_some() {
        Driver::Run
    } else if projects.is_some() && bounds.streams <= MAX_STREAMS {
        Driver::Streams
    } else if types.as_ref().is_some_and(|t| t.len() <= MAX_TYPE_BRANCHES) {
        Driver::Types
    } else {
        Driver::Scan
    };
    let mut plan = Plan {
        lo: bounds.lo,
        hi: bounds.hi,
        driver: driver.clone(),
        sql: String::new(),
        params: Vec::new(),
    };
    let dir = match q.order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };

    // The driver's own conditions come first, then the refinements.
    let mut outer = String::new();
    let mut type_params: Vec<String> = Vec::new();
    let mut refine = String::new();
    match &driver {
        Driver::Run => {
            let run = plan.bind(f.workflow_run_id.clone().unwrap_or_default());
            refine.push_str(&format!(" AND x.run = {run}"));
        }
        Driver::Streams => {
            let p = plan.bind(projects.clone().unwrap_or_default());
            outer.push_str(&format!(" WHERE s.project_key = ANY({p}::text[])"));
            if let Some(t) = &types {
                let t = plan.bind(t.clone());
                outer.push_str(&format!(" AND s.type = ANY({t}::text[])"));
            }
        }
        Driver::Types => {
            for t in types.clone().unwrap_or_default() {
                type_params.push(plan.bind(t));
            }
        }
        Driver::Scan => {}
    }
    let mut cond = |plan: &mut Plan, sql: &str, p: Option<Param>| {
        if let Some(p) = p {
            plan.params.push(p);
        }
        let n = format!("${}", plan.params.len() + 3);
        refine.push_str(" AND ");
        refine.push_str(&sql.replace("$?", &n));
    };
    if driver != Driver::Streams {
        if let Some(p) = &projects {
            cond(
                &mut plan,
                "x.project_key = ANY($?::text[])",
                Some(Box::new(p.clone())),
            );
        } else if f.exclude_global {
            cond(&mut plan, "x.project_key <> ''", None);
        }
        if driver != Driver::Types
            && let Some(t) = &types
        {
            cond(
                &mut plan,
                "x.type = ANY($?::text[])",
                Some(Box::new(t.clone())),
            );
        }
    }
    if let Some(s) = f.since {
        cond(&mut plan, "x.ts >= $?", Some(Box::new(s.unix_nanos())));
    }
    if let Some(u) = f.until {
        cond(&mut plan, "x.ts <= $?", Some(Box::new(u.unix_nanos())));
    }
    for (key, v) in [
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
                &mut plan,
                &format!("(x.body::jsonb ->> '{key}') = $?"),
                Some(Box::new(v.clone())),
            );
        }
    }
    if let Some(u) = &f.user {
        cond(
            &mut plan,
            "((x.body::jsonb ->> 'user_id') = $? OR (x.body::jsonb ->> 'username') = $?)",
            Some(Box::new(u.clone())),
        );
    }

    let range = "x.seq >= $1 AND x.seq <= $2";
    plan.sql = match driver {
        Driver::Run | Driver::Scan => format!(
            "SELECT x.seq, x.body FROM log_events x WHERE {range}{refine}
             ORDER BY x.seq {dir} LIMIT $3"
        ),
        Driver::Streams => format!(
            "SELECT e.seq, e.body FROM log_events e WHERE e.seq IN (
               SELECT c.seq FROM log_streams s CROSS JOIN LATERAL (
                 SELECT x.seq FROM log_events x
                 WHERE x.project_key = s.project_key AND x.type = s.type AND {range}{refine}
                 ORDER BY x.seq {dir} LIMIT $3) c
               {outer}
               ORDER BY c.seq {dir} LIMIT $3)
             ORDER BY e.seq {dir}"
        ),
        // One branch per type, each with its value bound (not a join with
        // the list): the planner then knows how rare each type is.
        Driver::Types => {
            let branches: Vec<String> = type_params
                .iter()
                .map(|t| {
                    format!(
                        "(SELECT x.seq FROM log_events x WHERE x.type = {t} AND {range}{refine}
                          ORDER BY x.seq {dir} LIMIT $3)"
                    )
                })
                .collect();
            format!(
                "SELECT e.seq, e.body FROM log_events e WHERE e.seq IN (
                   SELECT c.seq FROM ({}) c ORDER BY c.seq {dir} LIMIT $3)
                 ORDER BY e.seq {dir}",
                branches.join(" UNION ALL ")
            )
        }
    };
    Ok(Some(plan))
}

/// The first window of a walk: `[low, high]`.
fn first_window(plan: &Plan, order: Order) -> (i64, i64) {
    match order {
        Order::Asc => (
            plan.lo,
            plan.lo.saturating_add(FIRST_WINDOW - 1).min(plan.hi),
        ),
        Order::Desc => (
            plan.hi.saturating_sub(FIRST_WINDOW - 1).max(plan.lo),
            plan.hi,
        ),
    }
}

pub(super) async fn run(conn: &Object, q: &Query, budget: Duration) -> Result<Page, Error> {
    let started = Instant::now();
    let Some(plan) = plan(conn, q).await? else {
        return Ok(Page {
            events: Vec::new(),
            next_cursor: None,
        });
    };
    let limit = q.limit.max(1) as i64;
    let statement = conn.prepare(&plan.sql).await?;
    let mut events: Vec<StoredEvent> = Vec::new();
    let mut next_cursor = None;
    let (mut lo, mut hi) = first_window(&plan, q.order);
    let mut width = FIRST_WINDOW;
    loop {
        let window = [lo, hi, limit - events.len() as i64];
        for row in conn.query(&statement, &plan.args(&window)).await? {
            events.push(StoredEvent::new(
                Seq(row.get::<_, i64>(0) as u64),
                Arc::from(row.get::<_, String>(1)),
            ));
        }
        if events.len() as i64 >= limit {
            next_cursor = events.last().map(|e| e.seq);
            break;
        }
        let done = match q.order {
            Order::Asc => hi >= plan.hi,
            Order::Desc => lo <= plan.lo,
        };
        if done {
            break;
        }
        if started.elapsed() >= budget {
            // Resume exactly where this walk stopped.
            next_cursor = Some(Seq(match q.order {
                Order::Asc => hi,
                Order::Desc => lo,
            } as u64));
            break;
        }
        width = (width * 2).min(MAX_WINDOW);
        match q.order {
            Order::Asc => {
                lo = hi + 1;
                hi = hi.saturating_add(width).min(plan.hi);
            }
            Order::Desc => {
                hi = lo - 1;
                lo = lo.saturating_sub(width).max(plan.lo);
            }
        }
    }
    Ok(Page {
        events,
        next_cursor,
    })
}

/// How a query would run: the walk, then PostgreSQL's plan for its first
/// window.
pub(super) async fn explain(conn: &Object, q: &Query) -> Result<Vec<String>, Error> {
    let Some(plan) = plan(conn, q).await? else {
        return Ok(vec!["(matches nothing)".to_owned()]);
    };
    let (lo, hi) = first_window(&plan, q.order);
    let window = [lo, hi, q.limit.max(1) as i64];
    let mut lines = vec![format!(
        "walk seq {}..={} by {:?}, first window {lo}..={hi}",
        plan.lo, plan.hi, plan.driver
    )];
    let rows = conn
        .query(
            &format!("EXPLAIN (COSTS OFF) {}", plan.sql),
            &plan.args(&window),
        )
        .await?;
    lines.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    Ok(lines)
}
