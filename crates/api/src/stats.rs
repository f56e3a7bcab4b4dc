//! Events per time bucket and family as `GET /v2/events/stats` answers
//! them (the console's overview chart, `cds-events stats`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// One bucket of a count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BucketOut {
    /// The bucket's start (RFC 3339); it ends `step_seconds` later.
    pub start: String,
    pub total: u64,
    /// Events per family (families with none are left out).
    pub by_family: BTreeMap<String, u64>,
}

/// Events per bucket and family, for what the token may read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsOut {
    pub since: String,
    pub until: String,
    pub step_seconds: u64,
    /// The catalogue's families, in its order.
    pub families: Vec<String>,
    /// Every bucket of the window, in time order, empty ones included.
    pub buckets: Vec<BucketOut>,
    pub total: u64,
}
