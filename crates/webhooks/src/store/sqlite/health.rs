//! A notification's health: its recent attempts and its exact pending and
//! failed counts, read in one snapshot.

use crate::error::WebhooksError;
use crate::store::{Health, NotificationId, p95};
use rusqlite::{Connection, params};

/// See [`NotificationStore::health`](crate::store::NotificationStore::health).
/// SQLite has no percentile function: the latencies are read (one index
/// range, sorted by SQLite) and ranked here, as PostgreSQL's
/// `percentile_disc` ranks them.
pub(super) fn health(
    conn: &Connection,
    notification: NotificationId,
    since: i64,
) -> Result<Health, WebhooksError> {
    let tx = conn.unchecked_transaction()?;
    let mut health = Health::default();
    let mut latencies = Vec::new();
    {
        // Successes kept in a delivery's row (at `updated_at`), then the
        // attempts with rows (failures, and successes moved there by a
        // redelivery: those without an error).
        let mut st = tx.prepare_cached(
            "SELECT ok_latency_ms, 1 FROM deliveries
             WHERE notification_id = ?1 AND updated_at >= ?2 AND ok_latency_ms IS NOT NULL
             UNION ALL
             SELECT a.latency_ms, a.error IS NULL
             FROM deliveries d JOIN attempts a ON a.delivery_id = d.id
             WHERE d.notification_id = ?1 AND d.updated_at >= ?2 AND a.at >= ?2
             ORDER BY 1",
        )?;
        let rows = st.query_map(params![notification.0, since], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?))
        })?;
        for r in rows {
            let (ms, ok) = r?;
            latencies.push(ms);
            health.succeeded += u64::from(ok);
        }
        let mut counts = tx.prepare_cached(
            "SELECT status, count(*) FROM deliveries
             WHERE notification_id = ?1 AND status IN ('pending', 'failed') GROUP BY status",
        )?;
        let rows = counts.query_map(params![notification.0], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for r in rows {
            let (status, n) = r?;
            match status.as_str() {
                "pending" => health.pending = n as u64,
                _ => health.failed = n as u64,
            }
        }
    }
    tx.finish()?;
    health.attempts = latencies.len() as u64;
    health.p95_latency_ms = p95(&latencies);
    Ok(health)
}
