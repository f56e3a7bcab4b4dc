//! The engine as a durable consumer that retention asks: what it still
//! needs from the log is [`Webhooks::retention_hold`]. It never purges
//! anything itself.

use crate::Webhooks;
use cds_events_log::{ConsumerError, RetentionHold, Seq};

#[async_trait::async_trait]
impl RetentionHold for Webhooks {
    fn name(&self) -> &str {
        "webhooks"
    }

    async fn needs_from(&self) -> Result<Option<Seq>, ConsumerError> {
        self.retention_hold()
            .await
            .map_err(|e| ConsumerError::Hold(Box::new(e)))
    }
}
