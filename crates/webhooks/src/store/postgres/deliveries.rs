//! Delivery and attempt rows: a batch of deliveries with the position, the
//! listings, redelivery, the purge, the pending count, what retention must
//! keep; and the outbox. (Claims are `claims`', recording attempts is
//! `record`'s.)

use super::Shared;
use super::schema::DUE_CHANNEL;
use crate::error::WebhooksError;
use crate::model::DeliveryStatus;
use crate::store::{
    Attempt, Delivery, DeliveryId, Lead, NewDelivery, NotificationId, OutboxEntry, PURGE_CHUNK,
    Purged,
};
use crate::time::now_ms;
use cds_events_log::Seq;
use cds_events_store::pg::tokio_postgres::{IsolationLevel, Row, Transaction};
use std::collections::HashSet;

const DELIVERY_COLUMNS: &str =
    "id, event_id, event_seq, status, attempts, next_attempt_at, created_at, updated_at,
     ok_status_code, ok_latency_ms, ok_response, tries";

/// The longest list of notification ids a due announcement carries;
/// beyond, it says `*` (all), well under PostgreSQL's 8000-byte payload.
const MAX_DUE_PAYLOAD: usize = 4000;

impl Shared {
    pub(super) async fn position(&self) -> Result<Option<Seq>, WebhooksError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt("SELECT position FROM webhook_state", &[])
            .await?;
        // A negative position was never written: none.
        Ok(match row {
            Some(r) => r.try_get::<_, Option<i64>>(0)?,
            None => None,
        }
        .and_then(|p| u64::try_from(p).ok())
        .map(Seq))
    }

    /// See [`NotificationStore::start_position`](crate::store::NotificationStore::start_position):
    /// the one row's position is filled only while it was never written,
    /// in one statement, so two instances opening at once agree.
    pub(super) async fn start_position(&self, head: Seq) -> Result<Seq, WebhooksError> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE webhook_state SET position = $1 WHERE position IS NULL OR position < 0",
            &[&(head.0 as i64)],
        )
        .await?;
        drop(conn);
        Ok(self.position().await?.unwrap_or(head))
    }

    /// Creates the deliveries of one batch of events and moves the log
    /// position past the batch, in one transaction: after a crash either
    /// both happened or neither did. The position moves first, and only
    /// under `lead`'s term: its row stays locked until the commit, so a new
    /// holder's term waits for this batch, and this batch, arriving after
    /// the new term, writes nothing.
    pub(super) async fn create_deliveries(
        &self,
        lead: &Lead,
        batch: Vec<NewDelivery>,
        position: Seq,
    ) -> Result<(), WebhooksError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let moved = tx
            .execute(
                "UPDATE webhook_state SET position = $1 WHERE leader_term = $2",
                &[&(position.0 as i64), &lead.term()],
            )
            .await?;
        if moved == 0 {
            tx.rollback().await?;
            lead.lose();
            return Err(WebhooksError::LostLead);
        }
        let mut ids: Vec<i64> = batch.iter().map(|d| d.notification.0).collect();
        ids.sort_unstable();
        ids.dedup();
        // A notification deleted since the batch was matched gets nothing;
        // one being deleted now waits for this transaction.
        let live = lock_live(&tx, &ids).await?;
        let (mut notifications, mut seqs, mut events, mut keys) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for d in batch.iter().filter(|d| live.contains(&d.notification.0)) {
            notifications.push(d.notification.0);
            seqs.push(d.seq.0 as i64);
            events.push(d.event_id.as_str());
            keys.push(d.order_key.as_str());
        }
        if !notifications.is_empty() {
            // One statement for the batch; ids given in the batch's order
            // (log order), which the workers' ordered pages rely on.
            tx.execute(
                "INSERT INTO webhook_deliveries (notification_id, event_seq, event_id, order_key,
                     status, attempts, tries, next_attempt_at, created_at, updated_at)
                 SELECT n, s, e, k, 'pending', 0, 0, $4, $4, $4
                 FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $5::TEXT[])
                     WITH ORDINALITY AS t(n, s, e, k, o)
                 ORDER BY o",
                &[&notifications, &seqs, &events, &now_ms(), &keys],
            )
            .await?;
        }
        let mut due: Vec<i64> = notifications;
        due.sort_unstable();
        due.dedup();
        if !due.is_empty() {
            // Every instance's workers after the commit, this one's too
            // (through its listener like the others': no instance's workers
            // get a head start, so the work spreads).
            let mut payload = due
                .iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join(",");
            if payload.len() > MAX_DUE_PAYLOAD {
                payload = "*".into();
            }
            tx.execute("SELECT pg_notify($1, $2)", &[&DUE_CHANNEL, &payload])
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A notification's deliveries of the given statuses with id below
    /// `before`, newest first: one statement (so one snapshot), one index
    /// range per status, each costing at most `limit` rows.
    pub(super) async fn list_deliveries(
        &self,
        notification: NotificationId,
        statuses: &[DeliveryStatus],
        before: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhooksError> {
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT d.* FROM unnest($2::TEXT[]) AS s(status)
                     CROSS JOIN LATERAL (
                         SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                         WHERE notification_id = $1 AND status = s.status AND id < $3
                         ORDER BY id DESC LIMIT $4
                     ) AS d
                     ORDER BY d.id DESC LIMIT $4"
                ),
                &[
                    &notification.0,
                    &statuses,
                    &before.map_or(i64::MAX, |b| b.0),
                    &(limit as i64),
                ],
            )
            .await?;
        rows.iter().map(|r| Ok(delivery_of(r)?.delivery)).collect()
    }

    /// One delivery and every attempt made for it, in one snapshot.
    pub(super) async fn delivery(
        &self,
        notification: NotificationId,
        id: DeliveryId,
    ) -> Result<Option<(Delivery, Vec<Attempt>)>, WebhooksError> {
        let mut conn = self.conn().await?;
        let tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                     WHERE id = $1 AND notification_id = $2"
                ),
                &[&id.0, &notification.0],
            )
            .await?;
        let found = match row {
            Some(r) => {
                let row = delivery_of(&r)?;
                let attempts = attempts(&tx, &row).await?;
                Some((row.delivery, attempts))
            }
            None => None,
        };
        tx.commit().await?;
        Ok(found)
    }

    /// Back to pending, due now, with a fresh attempt budget; a success kept
    /// in the row moves to the attempts first.
    pub(super) async fn redeliver(
        &self,
        notification: NotificationId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, WebhooksError> {
        let now = now_ms();
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        tx.execute(
            "INSERT INTO webhook_attempts (delivery_id, n, at, status_code, latency_ms, error, response)
             SELECT id, attempts, updated_at, ok_status_code, ok_latency_ms, NULL, ok_response
             FROM webhook_deliveries
             WHERE id = $1 AND notification_id = $2 AND ok_latency_ms IS NOT NULL
             ON CONFLICT DO NOTHING",
            &[&id.0, &notification.0],
        )
        .await?;
        let row = tx
            .query_opt(
                &format!(
                    "UPDATE webhook_deliveries SET status = 'pending', tries = 0,
                         next_attempt_at = $3, updated_at = $3,
                         ok_status_code = NULL, ok_latency_ms = NULL, ok_response = NULL
                     WHERE id = $1 AND notification_id = $2
                     RETURNING {DELIVERY_COLUMNS}"
                ),
                &[&id.0, &notification.0, &now],
            )
            .await?;
        let d = row.map(|r| delivery_of(&r)).transpose()?;
        tx.commit().await?;
        Ok(d.map(|d| d.delivery))
    }

    pub(super) async fn redeliver_failed_since(
        &self,
        notification: NotificationId,
        since: i64,
    ) -> Result<u64, WebhooksError> {
        let conn = self.conn().await?;
        Ok(conn
            .execute(
                "UPDATE webhook_deliveries SET status = 'pending', tries = 0,
                     next_attempt_at = $3, updated_at = $3
                 WHERE notification_id = $1 AND status = 'failed' AND created_at >= $2",
                &[&notification.0, &since, &now_ms()],
            )
            .await?)
    }

    /// One small transaction of clean-up: a chunk of a deleted
    /// notification's deliveries (an instance purging another one skips it),
    /// or else of the finished ones created before `finished_before`,
    /// oldest first.
    pub(super) async fn purge_step(&self, finished_before: i64) -> Result<Purged, WebhooksError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let deleted_notification: Option<i64> = tx
            .query_opt(
                "SELECT notification_id FROM webhook_purge_queue LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        // Deletes the deliveries `pick` selects ($1 = `arg`, $2 = the chunk
        // size) with their attempts, in one statement; returns how many.
        let delete = async |pick: &str, arg: i64| -> Result<u64, WebhooksError> {
            Ok(tx
                .execute(
                    &format!(
                        "WITH picked AS ({pick}),
                         gone AS (DELETE FROM webhook_attempts
                                  WHERE delivery_id IN (SELECT id FROM picked))
                         DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM picked)"
                    ),
                    &[&arg, &(PURGE_CHUNK as i64)],
                )
                .await?)
        };
        let (n, more) = match deleted_notification {
            Some(nid) => {
                let n = delete(
                    "SELECT id FROM webhook_deliveries WHERE notification_id = $1
                     ORDER BY id LIMIT $2",
                    nid,
                )
                .await?;
                if n == 0 {
                    tx.execute(
                        "DELETE FROM webhook_purge_queue WHERE notification_id = $1",
                        &[&nid],
                    )
                    .await?;
                }
                (n, true)
            }
            None => {
                let n = delete(
                    "SELECT id FROM webhook_deliveries
                     WHERE status <> 'pending' AND created_at < $1 ORDER BY id LIMIT $2",
                    finished_before,
                )
                .await?;
                (n, n > 0)
            }
        };
        tx.commit().await?;
        Ok(Purged {
            deliveries: n,
            more,
        })
    }

    /// Pending deliveries, those of deleted notifications waiting for the
    /// purge left out, counted by the database (every instance changes
    /// them); the pending gauge follows.
    pub(super) async fn pending(&self) -> Result<u64, WebhooksError> {
        let conn = self.conn().await?;
        let n: i64 = conn
            .query_one(
                "SELECT count(*) FROM webhook_deliveries d
                 WHERE status = 'pending' AND NOT EXISTS (
                     SELECT 1 FROM webhook_purge_queue q WHERE q.notification_id = d.notification_id)",
                &[],
            )
            .await?
            .try_get(0)?;
        metrics::gauge!("cds_events_webhook_deliveries_pending").set(n as f64);
        Ok(n.max(0) as u64)
    }

    /// The position after the dispatcher's, or the event of the oldest
    /// pending delivery of an enabled notification if that comes first, in
    /// one statement (one snapshot). Deliveries are created in log order,
    /// so a notification's oldest pending delivery has its oldest event.
    pub(super) async fn retention_hold(&self) -> Result<Option<Seq>, WebhooksError> {
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                "SELECT (SELECT position FROM webhook_state),
                        (SELECT min(p.event_seq) FROM webhook_notifications n
                         CROSS JOIN LATERAL (
                             SELECT event_seq FROM webhook_deliveries d
                             WHERE d.notification_id = n.id AND d.status = 'pending'
                             ORDER BY d.id LIMIT 1
                         ) AS p
                         WHERE n.enabled)",
                &[],
            )
            .await?;
        // The stored position has been handled: the hold starts after it.
        let after = row.try_get::<_, Option<i64>>(0)?.map(|p| seq(p + 1));
        let pending = row.try_get::<_, Option<i64>>(1)?.map(seq);
        Ok(match (after, pending) {
            (Some(a), Some(p)) => Some(a.min(p)),
            (a, p) => a.or(p),
        })
    }

    pub(super) async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, WebhooksError> {
        let conn = self.conn().await?;
        conn.query(
            "SELECT id, event FROM webhook_outbox ORDER BY id LIMIT $1",
            &[&(limit as i64)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(OutboxEntry {
                id: r.try_get(0)?,
                event: r.try_get(1)?,
            })
        })
        .collect()
    }

    pub(super) async fn remove_from_outbox(&self, ids: &[i64]) -> Result<(), WebhooksError> {
        let conn = self.conn().await?;
        conn.execute("DELETE FROM webhook_outbox WHERE id = ANY($1)", &[&ids])
            .await?;
        Ok(())
    }
}

/// Puts an event in the outbox, inside the caller's transaction.
pub(super) async fn outbox_put(
    tx: &Transaction<'_>,
    event: &cds_events_model::FullEvent,
) -> Result<(), WebhooksError> {
    tx.execute(
        "INSERT INTO webhook_outbox (event) VALUES ($1)",
        &[&event.to_json()],
    )
    .await?;
    Ok(())
}

/// Which of the notifications `ids` (sorted) exist, their rows locked
/// against deletion until the caller's transaction ends.
pub(super) async fn lock_live(
    tx: &Transaction<'_>,
    ids: &[i64],
) -> Result<HashSet<i64>, WebhooksError> {
    tx.query(
        "SELECT id FROM webhook_notifications WHERE id = ANY($1) ORDER BY id FOR KEY SHARE",
        &[&ids],
    )
    .await?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
    .collect()
}

pub(super) fn seq(stored: i64) -> Seq {
    Seq(stored.max(0) as u64)
}

/// A delivery row: the delivery, and the successful attempt kept in the row
/// itself (status code, latency, response excerpt).
struct DeliveryRow {
    delivery: Delivery,
    ok: Option<(Option<u16>, i64, Option<String>)>,
}

fn delivery_of(r: &Row) -> Result<DeliveryRow, WebhooksError> {
    let status: &str = r.try_get(3)?;
    Ok(DeliveryRow {
        delivery: Delivery {
            id: DeliveryId(r.try_get(0)?),
            event_id: r.try_get(1)?,
            event_seq: seq(r.try_get(2)?),
            status: DeliveryStatus::parse(status).unwrap_or(DeliveryStatus::Pending),
            attempts: r.try_get(4)?,
            tries: r.try_get(11)?,
            next_attempt_at: r.try_get(5)?,
            created_at: r.try_get(6)?,
            updated_at: r.try_get(7)?,
        },
        ok: match r.try_get::<_, Option<i64>>(9)? {
            Some(latency) => Some((status_code(r.try_get(8)?), latency, r.try_get(10)?)),
            None => None,
        },
    })
}

/// A stored status code (an INTEGER column) as HTTP's.
pub(super) fn status_code(stored: Option<i32>) -> Option<u16> {
    stored.and_then(|c| u16::try_from(c).ok())
}

/// Every attempt of a delivery, in order: its `webhook_attempts` rows, then
/// the success kept in its row, if any.
async fn attempts(tx: &Transaction<'_>, row: &DeliveryRow) -> Result<Vec<Attempt>, WebhooksError> {
    let mut all = tx
        .query(
            "SELECT n, at, status_code, latency_ms, error, response FROM webhook_attempts
             WHERE delivery_id = $1 ORDER BY n",
            &[&row.delivery.id.0],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Attempt {
                n: r.try_get(0)?,
                at: r.try_get(1)?,
                status_code: status_code(r.try_get(2)?),
                latency_ms: r.try_get(3)?,
                error: r.try_get(4)?,
                response: r.try_get(5)?,
            })
        })
        .collect::<Result<Vec<_>, WebhooksError>>()?;
    if let Some((status_code, latency_ms, response)) = &row.ok {
        all.push(Attempt {
            n: row.delivery.attempts,
            at: row.delivery.updated_at,
            status_code: *status_code,
            latency_ms: *latency_ms,
            error: None,
            response: response.clone(),
        });
    }
    Ok(all)
}
