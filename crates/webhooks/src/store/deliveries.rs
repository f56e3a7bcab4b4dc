//! Delivery and attempt rows: the workers' pages, the listings, the purge
//! and what retention must keep.

use super::schema::POSITION;
use super::{Due, Store};
use crate::error::WebhooksError;
use crate::model::{AttemptOut, DeliveryStatus};
use crate::time::{now_ms, to_datetime};
use cds_events_log::Seq;
use rusqlite::{Connection, OptionalExtension, Row, params};

impl Store {
    /// A worker's next deliveries (see [`pending_page`]).
    pub(crate) async fn due(
        &self,
        notification: i64,
        ordered: bool,
        limit: usize,
    ) -> Result<Vec<Due>, WebhooksError> {
        self.read(move |c| pending_page(c, notification, ordered, limit))
            .await
    }

    /// A notification's deliveries (see [`list_deliveries`]).
    pub(crate) async fn list_deliveries(
        &self,
        notification: i64,
        statuses: Vec<DeliveryStatus>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, WebhooksError> {
        self.read(move |c| list_deliveries(c, notification, &statuses, before, limit))
            .await
    }

    /// One delivery of a notification and every attempt made for it, read in
    /// one snapshot (the row and its attempts agree).
    pub(crate) async fn delivery(
        &self,
        notification: i64,
        id: i64,
    ) -> Result<Option<(DeliveryRow, Vec<AttemptOut>)>, WebhooksError> {
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let found = match get_delivery(&tx, notification, id)? {
                Some(d) => {
                    let attempts = list_attempts(&tx, &d)?;
                    Some((d, attempts))
                }
                None => None,
            };
            tx.finish()?;
            Ok(found)
        })
        .await
    }

    /// Puts a delivery back to pending, due now, with a fresh attempt budget;
    /// its attempts are kept. Returns it as it is now, `None` when the
    /// notification has no such delivery.
    pub(crate) async fn redeliver(
        &self,
        notification: i64,
        id: i64,
    ) -> Result<Option<DeliveryRow>, WebhooksError> {
        self.call(move |ctx| {
            let now = now_ms();
            let Some(before) = get_delivery(&ctx.conn, notification, id)? else {
                return Ok(None);
            };
            let tx = ctx.conn.transaction()?;
            keep_success_as_attempt(&tx, notification, id)?;
            tx.execute(
                "UPDATE deliveries SET status = 'pending', tries = 0, next_attempt_at = ?3, updated_at = ?3
                 WHERE id = ?1 AND notification_id = ?2",
                params![id, notification, now],
            )?;
            tx.commit()?;
            if before.status != DeliveryStatus::Pending.as_str() {
                ctx.add_pending(1);
            }
            get_delivery(&ctx.conn, notification, id)
        })
        .await
    }

    /// Redelivers every failed delivery of a notification created at or
    /// after `since` (ms); returns how many.
    pub(crate) async fn redeliver_failed_since(
        &self,
        notification: i64,
        since: i64,
    ) -> Result<u64, WebhooksError> {
        self.call(move |ctx| {
            let now = now_ms();
            let n = ctx.conn.execute(
                "UPDATE deliveries SET status = 'pending', tries = 0, next_attempt_at = ?3, updated_at = ?3
                 WHERE notification_id = ?1 AND status = 'failed' AND created_at >= ?2",
                params![notification, since, now],
            )?;
            ctx.add_pending(n as i64);
            Ok(n as u64)
        })
        .await
    }

    /// One small transaction of clean-up (see [`purge_step`]).
    pub(crate) async fn purge_step(
        &self,
        finished_before: i64,
    ) -> Result<(u64, bool), WebhooksError> {
        self.call(move |ctx| purge_step(&mut ctx.conn, finished_before))
            .await
    }

    /// Deliveries waiting to be sent.
    pub(crate) async fn pending(&self) -> Result<u64, WebhooksError> {
        self.call(|ctx| Ok(ctx.pending.max(0) as u64)).await
    }

    /// What retention must keep for the dispatcher and the pending
    /// deliveries of the `enabled` notifications (see [`retention_hold`]).
    pub(crate) async fn retention_hold(
        &self,
        enabled: Vec<i64>,
    ) -> Result<Option<Seq>, WebhooksError> {
        self.read(move |c| retention_hold(c, &enabled)).await
    }
}

/// Deliveries (with their attempts) deleted per transaction by the purge.
pub(crate) const PURGE_CHUNK: i64 = 1000;

/// One small transaction of clean-up: up to [`PURGE_CHUNK`] deliveries of a
/// deleted notification, or else of those finished (not pending) and
/// created before `finished_before` (ms). Returns how many deliveries went,
/// and whether there may be more to do.
fn purge_step(conn: &mut Connection, finished_before: i64) -> Result<(u64, bool), WebhooksError> {
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
            params![arg, PURGE_CHUNK],
        )?;
        tx.execute(
            &format!("DELETE FROM deliveries WHERE id IN ({pick})"),
            params![arg, PURGE_CHUNK],
        )
    };
    let n = match deleted_notification {
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
    Ok((n.0 as u64, n.1))
}

/// The next deliveries a worker may send: pending, by due time (or, for an
/// ordered notification, by id: sequence order), at most `limit`.
fn pending_page(
    conn: &Connection,
    notification: i64,
    ordered: bool,
    limit: usize,
) -> Result<Vec<Due>, WebhooksError> {
    let sql = if ordered {
        "SELECT id, event_seq, event_id, attempts, tries, next_attempt_at FROM deliveries
         WHERE notification_id = ?1 AND status = 'pending' ORDER BY id LIMIT ?2"
    } else {
        "SELECT id, event_seq, event_id, attempts, tries, next_attempt_at FROM deliveries
         WHERE notification_id = ?1 AND status = 'pending' ORDER BY next_attempt_at, id LIMIT ?2"
    };
    let mut st = conn.prepare_cached(sql)?;
    let rows = st.query_map(params![notification, limit as i64], |r| {
        Ok(Due {
            id: r.get(0)?,
            seq: r.get(1)?,
            event_id: r.get(2)?,
            attempts: r.get(3)?,
            tries: r.get(4)?,
            next_attempt_at: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
            body: None,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) struct DeliveryRow {
    pub id: i64,
    pub event_id: String,
    pub event_seq: i64,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The successful attempt kept in the row: status code, latency,
    /// response excerpt.
    pub ok: Option<(Option<u16>, i64, Option<String>)>,
}

const DELIVERY_COLUMNS: &str =
    "id, event_id, event_seq, status, attempts, next_attempt_at, created_at, updated_at,
     ok_status_code, ok_latency_ms, ok_response";

fn delivery_of(r: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: r.get(0)?,
        event_id: r.get(1)?,
        event_seq: r.get(2)?,
        status: r.get(3)?,
        attempts: r.get(4)?,
        next_attempt_at: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        ok: match r.get::<_, Option<i64>>(9)? {
            Some(latency) => Some((r.get(8)?, latency, r.get(10)?)),
            None => None,
        },
    })
}

/// A notification's deliveries with id below `before`, newest first, of the
/// given statuses: one index range per status, merged, so each costs at most
/// `limit` rows however many other deliveries there are.
fn list_deliveries(
    conn: &Connection,
    notification: i64,
    statuses: &[DeliveryStatus],
    before: i64,
    limit: usize,
) -> Result<Vec<DeliveryRow>, WebhooksError> {
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
                params![notification, s.as_str(), before, limit as i64],
                delivery_of,
            )?;
            for r in rows {
                all.push(r?);
            }
        }
    }
    tx.finish()?;
    all.sort_by_key(|r| std::cmp::Reverse(r.id));
    all.truncate(limit);
    Ok(all)
}

fn get_delivery(
    conn: &Connection,
    notification: i64,
    id: i64,
) -> Result<Option<DeliveryRow>, WebhooksError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1 AND notification_id = ?2"
        ))?
        .query_row(params![id, notification], delivery_of)
        .optional()?)
}

/// Every attempt of a delivery, in order: its `attempts` rows, then the
/// success kept in its row, if any.
fn list_attempts(
    conn: &Connection,
    delivery: &DeliveryRow,
) -> Result<Vec<AttemptOut>, WebhooksError> {
    let mut st = conn.prepare_cached(
        "SELECT n, at, status_code, latency_ms, error, response FROM attempts
         WHERE delivery_id = ?1 ORDER BY n",
    )?;
    let rows = st.query_map([delivery.id], |r| {
        Ok(AttemptOut {
            n: r.get::<_, i64>(0)?.clamp(0, u32::MAX as i64) as u32,
            at: to_datetime(r.get(1)?),
            status_code: r.get(2)?,
            latency_ms: r.get::<_, i64>(3)?.max(0) as u64,
            error: r.get(4)?,
            response: r.get(5)?,
        })
    })?;
    let mut all: Vec<AttemptOut> = rows.collect::<Result<_, _>>()?;
    if let Some((status_code, latency, response)) = &delivery.ok {
        all.push(AttemptOut {
            n: delivery.attempts.clamp(0, u32::MAX as i64) as u32,
            at: to_datetime(delivery.updated_at),
            status_code: *status_code,
            latency_ms: (*latency).max(0) as u64,
            error: None,
            response: response.clone(),
        });
    }
    Ok(all)
}

/// See [`crate::Webhooks::retention_hold`]. Deliveries are created in log
/// order, so a notification's oldest pending delivery (lowest id, found in
/// `deliveries_by_status`) has its oldest pending event.
fn retention_hold(conn: &Connection, notifications: &[i64]) -> Result<Option<Seq>, WebhooksError> {
    let mut hold: Option<i64> = POSITION.get(conn)?.map(|p| p + 1);
    let mut st = conn.prepare_cached(
        "SELECT event_seq FROM deliveries WHERE notification_id = ?1 AND status = 'pending'
         ORDER BY id LIMIT 1",
    )?;
    for id in notifications {
        if let Some(seq) = st.query_row([id], |r| r.get::<_, i64>(0)).optional()? {
            hold = Some(hold.map_or(seq, |h| h.min(seq)));
        }
    }
    Ok(hold.map(|s| Seq(s.max(0) as u64)))
}

/// Moves a success kept in a delivery's row into `attempts`, before the row
/// is reused by a redelivery.
fn keep_success_as_attempt(
    conn: &Connection,
    notification: i64,
    delivery: i64,
) -> Result<(), WebhooksError> {
    conn.execute(
        "INSERT OR IGNORE INTO attempts(delivery_id, n, at, status_code, latency_ms, error, response)
         SELECT id, attempts, updated_at, ok_status_code, ok_latency_ms, NULL, ok_response
         FROM deliveries WHERE id = ?1 AND notification_id = ?2 AND ok_latency_ms IS NOT NULL",
        params![delivery, notification],
    )?;
    conn.execute(
        "UPDATE deliveries SET ok_status_code = NULL, ok_latency_ms = NULL, ok_response = NULL
         WHERE id = ?1 AND notification_id = ?2 AND ok_latency_ms IS NOT NULL",
        params![delivery, notification],
    )?;
    Ok(())
}
