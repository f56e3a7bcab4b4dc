//! A notification's health: its recent attempts and its exact pending and
//! failed counts, in one statement (one snapshot).

use super::Shared;
use crate::error::WebhooksError;
use crate::store::{Health, NotificationId};

impl Shared {
    /// See [`NotificationStore::health`](crate::store::NotificationStore::health).
    /// The percentile is PostgreSQL's `percentile_disc` (nearest rank), as
    /// [`p95`](crate::store::p95) computes it for SQLite.
    pub(super) async fn health(
        &self,
        notification: NotificationId,
        since: i64,
    ) -> Result<Health, WebhooksError> {
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                "WITH recent AS (
                     SELECT ok_latency_ms AS ms, TRUE AS ok FROM webhook_deliveries
                     WHERE notification_id = $1 AND updated_at >= $2 AND ok_latency_ms IS NOT NULL
                     UNION ALL
                     SELECT a.latency_ms, a.error IS NULL
                     FROM webhook_deliveries d JOIN webhook_attempts a ON a.delivery_id = d.id
                     WHERE d.notification_id = $1 AND d.updated_at >= $2 AND a.at >= $2
                 )
                 SELECT count(*), count(*) FILTER (WHERE ok),
                        percentile_disc(0.95) WITHIN GROUP (ORDER BY ms),
                        (SELECT count(*) FROM webhook_deliveries
                         WHERE notification_id = $1 AND status = 'pending'),
                        (SELECT count(*) FROM webhook_deliveries
                         WHERE notification_id = $1 AND status = 'failed')
                 FROM recent",
                &[&notification.0, &since],
            )
            .await?;
        let count = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        Ok(Health {
            attempts: count(0),
            succeeded: count(1),
            p95_latency_ms: row.get(2),
            pending: count(3),
            failed: count(4),
        })
    }
}
