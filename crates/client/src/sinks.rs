//! Broker sinks: `/v2/sinks` (admin).

use crate::{Client, ClientError};
use cds_events_api::{ReplayOut, SinkOut, SinksOut};
use reqwest::Method;

impl Client {
    /// Every sink: kind, state, position, lag, last error.
    pub async fn sinks(&self) -> Result<Vec<SinkOut>, ClientError> {
        let out: SinksOut = Self::read(self.req_at(Method::GET, &["v2", "sinks"])?).await?;
        Ok(out.sinks)
    }

    /// Stops a sink sending (its position stays).
    pub async fn pause_sink(&self, name: &str) -> Result<SinkOut, ClientError> {
        Self::read(self.req_at(Method::POST, &["v2", "sinks", name, "pause"])?).await
    }

    /// Sends again from where the sink stands.
    pub async fn resume_sink(&self, name: &str) -> Result<SinkOut, ClientError> {
        Self::read(self.req_at(Method::POST, &["v2", "sinks", name, "resume"])?).await
    }

    /// Sends every event again from sequence number `from` on.
    pub async fn replay_sink(&self, name: &str, from: u64) -> Result<ReplayOut, ClientError> {
        Self::read(
            self.req_at(Method::POST, &["v2", "sinks", name, "replay"])?
                .query(&[("from", from)]),
        )
        .await
    }
}
