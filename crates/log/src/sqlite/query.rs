//! Turns a [`Query`] into SQL that an index serves.
//!
//! SQLite cannot merge several index ranges in sequence order, and sorting
//! every row of a busy project to return 100 would be a scan in disguise. So
//! the plan is ours: one branch per (project, type) pair — or per type, or per
//! workflow run — each an ordered index range that stops at `limit`, then a
//! merge of those few hundred candidates. Time bounds become sequence bounds
//! through the zone map, so `since` never walks the history before it.

use super::schema::ZONE_SHIFT;
use crate::{LogError, Order, Page, Query, Seq, StoredEvent};
use cds_events_model::EventType;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use std::sync::Arc;

/// Above this many branches a plain sequence scan is used instead.
const MAX_BRANCHES: usize = 200;

/// The SQL and parameters for a query, or `None` when it can match nothing.
pub(crate) fn plan(conn: &Connection, q: &Query) -> Result<Option<(String, Vec<Value>)>, LogError> {
    let f = &q.filter;
    if f.types.as_ref().is_some_and(|t| t.is_empty()) {
        return Ok(None);
    }
    let limit = q.limit.max(1);
    let mut lo: i64 = 1;
    let mut hi: i64 = i64::MAX;
    match (q.order, q.cursor) {
        (Order::Asc, Some(c)) => lo = lo.max(c.0 as i64 + 1),
        (Order::Desc, Some(c)) => hi = hi.min(c.0 as i64 - 1),
        _ => {}
    }
    if let Some(since) = f.since {
        let block: Option<i64> = conn
            .prepare_cached("SELECT MIN(block) FROM zones WHERE max_ts >= ?1")?
            .query_row([since.unix_nanos()], |r| r.get(0))
            .optional()?
            .flatten();
        match block {
            Some(b) => lo = lo.max(b << ZONE_SHIFT),
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
            Some(b) => hi = hi.min(((b + 1) << ZONE_SHIFT) - 1),
            None => return Ok(None),
        }
    }
    if lo > hi {
        return Ok(None);
    }

    // Conditions every branch carries.
    let mut common = String::from("seq >= ? AND seq <= ?");
    let mut common_params: Vec<Value> = vec![Value::Integer(lo), Value::Integer(hi)];
    let mut cond = |sql: &str, v: Value| {
        common.push_str(" AND ");
        common.push_str(sql);
        common_params.push(v);
    };
    if let Some(s) = f.since {
        cond("ts >= ?", Value::Integer(s.unix_nanos()));
    }
    if let Some(u) = f.until {
        cond("ts <= ?", Value::Integer(u.unix_nanos()));
    }
    for (col, v) in [
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
            cond(&format!("{col} = ?"), Value::Text(v.clone()));
        }
    }
    if let Some(u) = &f.user {
        common.push_str(" AND (user_id = ? OR username = ?)");
        common_params.push(Value::Text(u.clone()));
        common_params.push(Value::Text(u.clone()));
    }

    let dir = match q.order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    };
    let types: Vec<EventType> = match &f.types {
        Some(t) => t.iter().copied().collect(),
        None => Vec::new(),
    };

    // Each branch: (index hint, extra condition, its params).
    let mut branches: Vec<(&str, String, Vec<Value>)> = Vec::new();
    if let Some(run) = &f.workflow_run_id {
        let mut extra = String::from("workflow_run_id = ?");
        let mut p = vec![Value::Text(run.clone())];
        in_list(
            &mut extra,
            &mut p,
            "project_key",
            f.projects.iter().cloned(),
        );
        in_list(
            &mut extra,
            &mut p,
            "type",
            types.iter().map(|t| t.as_str().to_owned()),
        );
        branches.push(("events_run", extra, p));
    } else if !f.projects.is_empty() {
        let all = EventType::ALL;
        let ts: &[EventType] = if types.is_empty() { all } else { &types };
        if f.projects.len() * ts.len() <= MAX_BRANCHES {
            for p in &f.projects {
                for t in ts {
                    branches.push((
                        "events_project_type",
                        "project_key = ? AND type = ?".to_owned(),
                        vec![Value::Text(p.clone()), Value::Text(t.as_str().to_owned())],
                    ));
                }
            }
        } else {
            let mut extra = String::from("1");
            let mut p = Vec::new();
            in_list(
                &mut extra,
                &mut p,
                "project_key",
                f.projects.iter().cloned(),
            );
            in_list(
                &mut extra,
                &mut p,
                "type",
                types.iter().map(|t| t.as_str().to_owned()),
            );
            branches.push(("", extra, p));
        }
    } else if !types.is_empty() && types.len() <= MAX_BRANCHES {
        for t in &types {
            branches.push((
                "events_type",
                "type = ?".to_owned(),
                vec![Value::Text(t.as_str().to_owned())],
            ));
        }
    } else {
        branches.push(("", "1".to_owned(), Vec::new()));
    }

    let mut sql = String::from("SELECT s.seq, e.body FROM (");
    let mut params: Vec<Value> = Vec::new();
    let single = branches.len() == 1;
    for (i, (index, extra, p)) in branches.into_iter().enumerate() {
        if i > 0 {
            sql.push_str(" UNION ALL ");
        }
        let hint = if index.is_empty() {
            String::new()
        } else {
            format!(" INDEXED BY {index}")
        };
        let branch = format!(
            "SELECT seq FROM events{hint} WHERE {extra} AND {common} ORDER BY seq {dir} LIMIT {limit}"
        );
        if single {
            sql.push_str(&branch);
        } else {
            sql.push_str("SELECT seq FROM (");
            sql.push_str(&branch);
            sql.push(')');
        }
        params.extend(p);
        params.extend(common_params.iter().cloned());
    }
    if !single {
        sql.push_str(&format!(" ORDER BY seq {dir} LIMIT {limit}"));
    }
    sql.push_str(&format!(
        ") s JOIN events e ON e.seq = s.seq ORDER BY s.seq {dir}"
    ));
    Ok(Some((sql, params)))
}

fn in_list(
    sql: &mut String,
    params: &mut Vec<Value>,
    col: &str,
    values: impl Iterator<Item = String>,
) {
    let values: Vec<String> = values.collect();
    if values.is_empty() {
        return;
    }
    sql.push_str(&format!(" AND {col} IN ("));
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('?');
        params.push(Value::Text(v));
    }
    sql.push(')');
}

pub(crate) fn run(conn: &Connection, q: &Query) -> Result<Page, LogError> {
    let tx = conn.unchecked_transaction()?;
    let Some((sql, params)) = plan(&tx, q)? else {
        return Ok(Page {
            events: Vec::new(),
            next_cursor: None,
        });
    };
    let mut st = tx.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(params), |r| {
        Ok(StoredEvent {
            seq: Seq(r.get::<_, i64>(0)? as u64),
            json: Arc::from(r.get::<_, String>(1)?),
        })
    })?;
    let events = rows.collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if events.len() >= q.limit.max(1) {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    Ok(Page {
        events,
        next_cursor,
    })
}

/// `EXPLAIN QUERY PLAN` of the SQL a query would run, one line per step.
pub(crate) fn explain(conn: &Connection, q: &Query) -> Result<Vec<String>, LogError> {
    let Some((sql, params)) = plan(conn, q)? else {
        return Ok(vec!["(matches nothing)".to_owned()]);
    };
    let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
    let rows = st.query_map(params_from_iter(params), |r| r.get::<_, String>(3))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
