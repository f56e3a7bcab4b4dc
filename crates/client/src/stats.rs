//! Event counts: `/v2/events/stats`.

use crate::{Client, ClientError};
use cds_events_api::StatsOut;
use reqwest::Method;

impl Client {
    /// Events per time bucket and family, by event time, for what the
    /// token reads: `since` (inclusive, RFC 3339; default one hour before
    /// `until`), `until` (exclusive; default now), `step` (`60s`, `5m`, `1h`;
    /// default one minute). At most 24 h and 1,440 buckets.
    pub async fn stats(
        &self,
        since: Option<&str>,
        until: Option<&str>,
        step: Option<&str>,
    ) -> Result<StatsOut, ClientError> {
        let params: Vec<(&str, &str)> = [("since", since), ("until", until), ("step", step)]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        Self::read(
            self.req_at(Method::GET, &["v2", "events", "stats"])?
                .query(&params),
        )
        .await
    }
}
