//! `/v2/events/stats`: events per time bucket and family, for the console's
//! overview chart. The log counts from its zone map's sequence range
//! ([`EventLog::count`](cds_events_log::EventLog::count)), so the answer costs
//! the events of the window, never the whole history; the window is bounded
//! ([`MAX_COUNT_WINDOW`], [`MAX_COUNT_BUCKETS`]).

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody, ProjectReader};
use crate::extract::restrict_to_readable;
use crate::state::AppState;
use axum::extract::{Query, State, rejection::QueryRejection};
use axum::{Json, Router, routing};
use cds_events_api::{BucketOut, StatsOut};
use cds_events_log::{CountQuery, MAX_COUNT_BUCKETS, MAX_COUNT_WINDOW};
use cds_events_model::{EventFilter, Family, Timestamp};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::IntoParams;

/// `/v2/events/stats`.
pub fn router() -> Router<AppState> {
    Router::new().route("/v2/events/stats", routing::get(stats))
}

/// The window and bucket width of a count.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// RFC 3339, inclusive; default: one hour before `until`. At most 24 h
    /// before `until`.
    pub since: Option<String>,
    /// RFC 3339, exclusive; default: now.
    pub until: Option<String>,
    /// Bucket width: seconds, or a number with `s`, `m` or `h` (default
    /// `60s`); at least `1s`, at most 1,440 buckets in the window.
    pub step: Option<String>,
}

/// A step: whole seconds, bare or with a unit (`s`, `m`, `h`).
fn parse_step(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn time(field: &str, s: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => Timestamp::parse(s)
            .map(Some)
            .map_err(|e| ApiError::bad_param(field, format!("{s:?} is not RFC 3339 ({e})"))),
    }
}

/// The validated window.
fn window(p: &StatsParams) -> Result<(Timestamp, Timestamp, Duration), ApiError> {
    let until = time("until", p.until.as_deref())?.unwrap_or_else(Timestamp::now);
    let since = time("since", p.since.as_deref())?.unwrap_or_else(|| {
        Timestamp::from_unix_nanos(until.unix_nanos().saturating_sub(3_600_000_000_000))
    });
    let span = until.unix_nanos().saturating_sub(since.unix_nanos());
    if span <= 0 {
        return Err(ApiError::bad_param("since", "must be before until"));
    }
    if span as u128 > MAX_COUNT_WINDOW.as_nanos() {
        return Err(ApiError::bad_param(
            "since",
            "the window is longer than 24 hours",
        ));
    }
    let step = match p.step.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Duration::from_secs(60),
        Some(s) => parse_step(s).filter(|d| !d.is_zero()).ok_or_else(|| {
            ApiError::bad_param("step", format!("{s:?} is not a number of s, m or h"))
        })?,
    };
    if (span as u128).div_ceil(step.as_nanos()) > u128::from(MAX_COUNT_BUCKETS) {
        return Err(ApiError::bad_param(
            "step",
            format!("makes more than {MAX_COUNT_BUCKETS} buckets in the window"),
        ));
    }
    Ok((since, until, step))
}

/// Events per time bucket and family.
///
/// Counts by event time the events the token may read, in every bucket of
/// the window (`since` inclusive, `until` exclusive). The console's overview
/// loads its last hour from here.
#[utoipa::path(
    get, path = "/v2/events/stats", tag = "events", params(StatsParams),
    responses(
        (status = 200, description = "the window's buckets", body = StatsOut),
        (status = 400, description = "an invalid parameter, named in the error (a window over 24 h: `since`; too many buckets: `step`)", body = ErrorBody),
        ProjectReader,
    )
)]
pub async fn stats(
    State(st): State<AppState>,
    caller: Caller,
    params: Result<Query<StatsParams>, QueryRejection>,
) -> Result<Json<StatsOut>, ApiError> {
    let Query(params) = params?;
    let (since, until, step) = window(&params)?;
    let mut filter = EventFilter::default();
    restrict_to_readable(&caller, &mut filter)?;
    let counts = st
        .log
        .count(CountQuery {
            scopes: filter.scopes,
            exclude_global: filter.exclude_global,
            since,
            until,
            step,
        })
        .await?;
    let span = (until.unix_nanos() - since.unix_nanos()) as u128;
    let n = span.div_ceil(step.as_nanos()) as usize;
    let step_nanos = step.as_nanos() as i64;
    let mut buckets: Vec<BucketOut> = (0..n)
        .map(|i| BucketOut {
            start: Timestamp::from_unix_nanos(since.unix_nanos() + i as i64 * step_nanos)
                .to_go_string(),
            total: 0,
            by_family: BTreeMap::new(),
        })
        .collect();
    let mut total = 0;
    for c in counts {
        if let Some(b) = buckets.get_mut(c.bucket as usize) {
            b.total += c.count;
            *b.by_family
                .entry(c.event_type.family().as_str().to_owned())
                .or_default() += c.count;
            total += c.count;
        }
    }
    Ok(Json(StatsOut {
        since: since.to_go_string(),
        until: until.to_go_string(),
        step_seconds: step.as_secs(),
        families: Family::ALL.iter().map(|f| f.as_str().to_owned()).collect(),
        buckets,
        total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_with_or_without_a_unit() {
        assert_eq!(parse_step("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_step("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_step("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_step("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_step("1d"), None);
        assert_eq!(parse_step("m"), None);
    }
}
