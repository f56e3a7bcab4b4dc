//! Delivery and attempt rows: the listings,
//! redelivery, the purge, the pending count and what retention must keep.
//! (Creating deliveries and recording attempts are the writer's own
//! commands, in `writer`.)

use super::schema::POSITION;
use super::writer::WriterCtx;
use crate::error::WebhooksError;
use crate::model::DeliveryStatus;
use crate::store::{Attempt, Delivery, DeliveryId, NotificationId, PURGE_CHUNK, Purged};
use crate::time::now_ms;
use cds_events_log::Seq;
use rusqlite::{Connection, OptionalExtension, Row, params};

impl WriterCtx {
    pub(super) fn redeliver(
        &mut self,
        notification: NotificationId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, WebhooksError> {
        let now = now_ms();
        let Some(before) = get(&self.conn, notification, id)? else {
            return Ok(None);
        };
        let tx = self.conn.transaction()?;
        keep_success_as_attempt(&tx, notification, id)?;
        tx.execute(
            "UPDATE deliveries SET status = 'pending', tries = 0, next_attempt_at = ?3, updated_at = ?3
             WHERE id = ?1 AND notification_id = ?2",
            params![id.0, notification.0, now],
        )?;
        tx.commit()?;
        if before.delivery.status != DeliveryStatus::Pending {
            self.add_pending(1);
        }
        Ok(get(&self.conn, notification, id)?.map(|r| r.delivery))
    }

    pub(super) fn redeliver_failed_since(
        &mut self,
        notification: NotificationId,
        since: i64,
    ) -> Result<u64, WebhooksError> {
        let now = now_ms();
        let n = self.conn.execute(
            "UPDATE deliveries SET status = 'pending', tries = 0, next_attempt_at = ?3, updated_at = ?3
             WHERE notification_id = ?1 AND status = 'failed' AND created_at >= ?2",
            params![notification.0, since, now],
        )?;
        self.add_pending(n as i64);
        Ok(n as u64)
    }
}

/// Pending deliveries, those of deleted notifications waiting for the purge
/// left out (counted once at open; the writer keeps the count after).
pub(super) fn count_pending(conn: &Connection) -> Result<i64, WebhooksError> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'
         AND notification_id NOT IN (SELECT notification_id FROM purge_queue)",
        [],
        |r| r.get(0),
    )?)
}

pub(super) fn position(conn: &Connection) -> Result<Option<Seq>, WebhooksError> {
    // A negative position was never written: none.
    Ok(POSITION
        .get(conn)?
        .and_then(|p| u64::try_from(p).ok())
        .map(Seq))
}

/// See [`NotificationStore::start_position`](crate::store::NotificationStore::start_position).
/// Run by the writer thread, the only one that writes the position.
pub(super) fn start_position(conn: &Connection, head: Seq) -> Result<Seq, WebhooksError> {
    if let Some(p) = position(conn)? {
        return Ok(p);
    }
    POSITION.set(conn, &(head.0 as i64))?;
    Ok(head)
}

/// One small transaction of clean-up (see
/// [`NotificationStore::purge_step`](crate::store::NotificationStore::purge_step)).
pub(super) fn purge_step(
    conn: &mut Connection,
    finished_before: i64,
) -> Result<Purged, WebhooksError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let deleted_notification: Option<i64> = tx
        .query_row("SELECT notification_id FROM purge_queue LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    // Deletes the deliveries `pick` selects (`?1` = `arg`, `?2` = the chunk
    // size) with their attempts; returns how many.
    let delete = |pick: &str, arg: i64| -> rusqlite::Result<usize> {
        tx.execute(
            &format!("DELETE FROM attempts WHERE delivery_id IN ({pick})"),
            params![arg, PURGE_CHUNK as i64],
        )?;
        tx.execute(
            &format!("DELETE FROM deliveries WHERE id IN ({pick})"),
            params![arg, PURGE_CHUNK as i64],
        )
    };
    let (n, more) = match deleted_notification {
        Some(nid) => {
            let n = delete(
                "SELECT id FROM deliveries WHERE notification_id = ?1 ORDER BY id LIMIT ?2",
                nid,
            )?;
            if n == 0 {
                tx.execute("DELETE FROM purge_queue WHERE notification_id = ?1", [nid])?;
            }
            (n, true)
        }
        None => {
            // Oldest first: ids grow with creation time, so the scan stops
            // at the first chunk of old finished rows.
            let n = delete(
                "SELECT id FROM deliveries WHERE status != 'pending' AND created_at < ?1
                 ORDER BY id LIMIT ?2",
                finished_before,
            )?;
            (n, n > 0)
        }
    };
    tx.commit()?;
    Ok(Purged {
        deliveries: n as u64,
        more,
    })
}

fn seq(stored: i64) -> Seq {
    Seq(stored.max(0) as u64)
}

/// A delivery row: the delivery, and the successful attempt kept in the row
/// itself (status code, latency, response excerpt; see the schema).
struct DeliveryRow {
    delivery: Delivery,
    ok: Option<(Option<u16>, i64, Option<String>)>,
}

const DELIVERY_COLUMNS: &str =
    "id, event_id, event_seq, status, attempts, next_attempt_at, created_at, updated_at,
     ok_status_code, ok_latency_ms, ok_response, tries";

fn delivery_of(r: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    let status: String = r.get(3)?;
    Ok(DeliveryRow {
        delivery: Delivery {
            id: DeliveryId(r.get(0)?),
            event_id: r.get(1)?,
            event_seq: seq(r.get(2)?),
            status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
            attempts: r.get(4)?,
            tries: r.get(11)?,
            next_attempt_at: r.get(5)?,
            created_at: r.get(6)?,
            updated_at: r.get(7)?,
        },
        ok: match r.get::<_, Option<i64>>(9)? {
            Some(latency) => Some((r.get(8)?, latency, r.get(10)?)),
            None => None,
        },
    })
}

/// A notification's deliveries with id below `before`, newest first, of the
/// given statuses: one index range per status, merged, so each costs at most
/// `limit` rows however many other deliveries there are.
pub(super) fn list(
    conn: &Connection,
    notification: NotificationId,
    statuses: &[DeliveryStatus],
    before: Option<DeliveryId>,
    limit: usize,
) -> Result<Vec<Delivery>, WebhooksError> {
    let before = before.map_or(i64::MAX, |b| b.0);
    // One snapshot for all the ranges: a delivery changing status between
    // two of them would otherwise be listed twice, or not at all.
    let tx = conn.unchecked_transaction()?;
    let mut all = Vec::new();
    {
        let mut st = tx.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE notification_id = ?1 AND status = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4"
        ))?;
        for s in statuses {
            let rows = st.query_map(
                params![notification.0, s.as_str(), before, limit as i64],
                delivery_of,
            )?;
            for r in rows {
                all.push(r?.delivery);
            }
        }
    }
    tx.finish()?;
    all.sort_by_key(|d| std::cmp::Reverse(d.id));
    all.truncate(limit);
    Ok(all)
}

fn get(
    conn: &Connection,
    notification: NotificationId,
    id: DeliveryId,
) -> Result<Option<DeliveryRow>, WebhooksError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1 AND notification_id = ?2"
        ))?
        .query_row(params![id.0, notification.0], delivery_of)
        .optional()?)
}

/// One delivery and every attempt made for it, in one snapshot (the row
/// and its attempts agree).
pub(super) fn with_attempts(
    conn: &Connection,
    notification: NotificationId,
    id: DeliveryId,
) -> Result<Option<(Delivery, Vec<Attempt>)>, WebhooksError> {
    let tx = conn.unchecked_transaction()?;
    let found = match get(&tx, notification, id)? {
        Some(row) => {
            let attempts = attempts(&tx, &row)?;
            Some((row.delivery, attempts))
        }
        None => None,
    };
    tx.finish()?;
    Ok(found)
}

/// Every attempt of a delivery, in order: its `attempts` rows, then the
/// success kept in its row, if any.
fn attempts(conn: &Connection, row: &DeliveryRow) -> Result<Vec<Attempt>, WebhooksError> {
    let mut st = conn.prepare_cached(
        "SELECT n, at, status_code, latency_ms, error, response FROM attempts
         WHERE delivery_id = ?1 ORDER BY n",
    )?;
    let rows = st.query_map([row.delivery.id.0], |r| {
        Ok(Attempt {
            n: r.get(0)?,
            at: r.get(1)?,
            status_code: r.get(2)?,
            latency_ms: r.get(3)?,
            error: r.get(4)?,
            response: r.get(5)?,
        })
    })?;
    let mut all: Vec<Attempt> = rows.collect::<Result<_, _>>()?;
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

/// See [`NotificationStore::retention_hold`](crate::store::NotificationStore::retention_hold).
/// Deliveries are created in log order, so a notification's oldest pending
/// delivery (lowest id, found in `deliveries_by_status`) has its oldest
/// pending event.
pub(super) fn retention_hold(conn: &Connection) -> Result<Option<Seq>, WebhooksError> {
    let tx = conn.unchecked_transaction()?;
    // The stored position has been handled: the hold starts after it.
    let mut hold: Option<Seq> = POSITION.get(&tx)?.map(|p| seq(p + 1));
    {
        let mut enabled = tx.prepare_cached("SELECT id FROM notifications WHERE enabled = 1")?;
        let enabled: Vec<i64> = enabled
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut oldest = tx.prepare_cached(
            "SELECT event_seq FROM deliveries WHERE notification_id = ?1 AND status = 'pending'
             ORDER BY id LIMIT 1",
        )?;
        for id in enabled {
            if let Some(pending) = oldest.query_row([id], |r| r.get::<_, i64>(0)).optional()? {
                let pending = seq(pending);
                hold = Some(hold.map_or(pending, |h| h.min(pending)));
            }
        }
    }
    tx.finish()?;
    Ok(hold)
}

/// Moves a success kept in a delivery's row into `attempts`, before the row
/// is reused by a redelivery.
fn keep_success_as_attempt(
    conn: &Connection,
    notification: NotificationId,
    delivery: DeliveryId,
) -> Result<(), WebhooksError> {
    conn.execute(
        "INSERT OR IGNORE INTO attempts(delivery_id, n, at, status_code, latency_ms, error, response)
         SELECT id, attempts, updated_at, ok_status_code, ok_latency_ms, NULL, ok_response
         FROM deliveries WHERE id = ?1 AND notification_id = ?2 AND ok_latency_ms IS NOT NULL",
        params![delivery.0, notification.0],
    )?;
    conn.execute(
        "UPDATE deliveries SET ok_status_code = NULL, ok_latency_ms = NULL, ok_response = NULL
         WHERE id = ?1 AND notification_id = ?2 AND ok_latency_ms IS NOT NULL",
        params![delivery.0, notification.0],
    )?;
    Ok(())
}
