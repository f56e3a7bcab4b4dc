//! Wall-clock time as stored: unix milliseconds.

use chrono::{DateTime, Utc};

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A duration in stored milliseconds, capped so that adding it to a time
/// never overflows.
pub(crate) fn millis(d: std::time::Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128 / 2) as i64
}

pub(crate) fn to_datetime(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}
