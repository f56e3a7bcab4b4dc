//! Claims and leases on a shared database: any instance's worker claims a
//! notification's due deliveries, each leased to it (`claimed_by`,
//! `lease_until`) until its result is recorded, it is released, or the lease
//! ends (its claimant died: another instance claims it then, and sends it
//! with the same `webhook-id`).
//!
//! The claims of one notification are serialized across instances by a
//! transaction-level advisory lock on its id: the leases it holds are
//! counted and new ones taken in one step, so the endpoint's concurrency
//! holds for the whole cluster. Unordered, the rows are picked with
//! `FOR UPDATE SKIP LOCKED`: a row being recorded at that moment is
//! skipped, not waited for. Ordered, the oldest pending row is read without
//! skipping (skipping it would hand out the next one first) and leased only
//! if it is due and no one holds it. Ordered per key, as unordered among
//! the rows with no earlier pending row of their key: the check reads the
//! statement's snapshot, where a row being recorded at that moment is still
//! pending, so it holds its key back (never the reverse).

use super::Shared;
use super::deliveries::seq;
use crate::error::WebhooksError;
use crate::store::{Claim, Claimed, DeliveryId, Due};
use cds_events_store::pg::tokio_postgres::Row;

/// The first key of the per-notification claim lock (the second is the
/// notification's id); other users of two-key advisory locks here pick
/// other first keys.
const CLAIM_LOCK: i32 = 0x636c;

fn due_of(r: &Row) -> Result<Due, WebhooksError> {
    Ok(Due {
        id: DeliveryId(r.try_get(0)?),
        seq: seq(r.try_get(1)?),
        event_id: r.try_get(2)?,
        attempts: r.try_get(3)?,
        tries: r.try_get(4)?,
        next_attempt_at: r.try_get::<_, Option<i64>>(5)?.unwrap_or(0),
    })
}

impl Shared {
    /// See [`NotificationStore::claim`](crate::store::NotificationStore::claim).
    pub(super) async fn claim(&self, c: &Claim) -> Result<Claimed, WebhooksError> {
        if c.want == 0 || c.max_leased == 0 {
            return Ok(Claimed::default());
        }
        let id = c.notification.0;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // Ids beyond 2^31 share a lock with another notification's: they
        // only wait for each other.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, $2)",
            &[&CLAIM_LOCK, &(id as i32)],
        )
        .await?;
        let claimed = if c.ordered {
            claim_oldest(&tx, c).await?
        } else {
            claim_due(&tx, c).await?
        };
        tx.commit().await?;
        Ok(claimed)
    }

    /// See [`NotificationStore::renew`](crate::store::NotificationStore::renew).
    pub(super) async fn renew(
        &self,
        claimant: &str,
        ids: &[i64],
        until: i64,
    ) -> Result<(), WebhooksError> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE webhook_deliveries SET lease_until = $3
             WHERE id = ANY($1) AND claimed_by = $2 AND lease_until IS NOT NULL",
            &[&ids, &claimant, &until],
        )
        .await?;
        Ok(())
    }

    /// See [`NotificationStore::release`](crate::store::NotificationStore::release).
    pub(super) async fn release(&self, claimant: &str, ids: &[i64]) -> Result<(), WebhooksError> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE webhook_deliveries SET lease_until = NULL
             WHERE id = ANY($1) AND claimed_by = $2 AND lease_until IS NOT NULL",
            &[&ids, &claimant],
        )
        .await?;
        Ok(())
    }
}

type Tx<'a> = cds_events_store::pg::tokio_postgres::Transaction<'a>;

/// The oldest pending delivery, if it is due and no one holds it.
async fn claim_oldest(tx: &Tx<'_>, c: &Claim) -> Result<Claimed, WebhooksError> {
    let Some(oldest) = tx
        .query_opt(
            "SELECT id, next_attempt_at, lease_until FROM webhook_deliveries
             WHERE notification_id = $1 AND status = 'pending' ORDER BY id LIMIT 1",
            &[&c.notification.0],
        )
        .await?
    else {
        return Ok(Claimed::default());
    };
    let id: i64 = oldest.try_get(0)?;
    let due_at = oldest.try_get::<_, Option<i64>>(1)?.unwrap_or(0);
    if let Some(until) = oldest.try_get::<_, Option<i64>>(2)?
        && until > c.now
    {
        return Ok(Claimed {
            due: Vec::new(),
            next_at: Some(until),
        });
    }
    if due_at > c.now {
        return Ok(Claimed {
            due: Vec::new(),
            next_at: Some(due_at),
        });
    }
    // Still pending and free: a result committed since the read (from a
    // claimant whose lease had ended) leaves it alone, and the worker looks
    // again at once.
    let row = tx
        .query_opt(
            "UPDATE webhook_deliveries SET claimed_by = $2, lease_until = $3
             WHERE id = $1 AND status = 'pending' AND (lease_until IS NULL OR lease_until <= $4)
             RETURNING id, event_seq, event_id, attempts, tries, next_attempt_at",
            &[&id, &c.claimant, &c.until, &c.now],
        )
        .await?;
    Ok(match row {
        Some(r) => Claimed {
            due: vec![due_of(&r)?],
            next_at: None,
        },
        None => Claimed {
            due: Vec::new(),
            next_at: Some(c.now),
        },
    })
}

/// Due deliveries no one holds, by due time, within the free leases.
async fn claim_due(tx: &Tx<'_>, c: &Claim) -> Result<Claimed, WebhooksError> {
    let id = c.notification.0;
    let held = tx
        .query_one(
            "SELECT count(*), min(lease_until) FROM webhook_deliveries
             WHERE notification_id = $1 AND lease_until > $2",
            &[&id, &c.now],
        )
        .await?;
    let leased: i64 = held.try_get(0)?;
    let soonest_end: Option<i64> = held.try_get(1)?;
    let slots = (c.max_leased as i64 - leased).clamp(0, c.want as i64);
    let mut due = Vec::new();
    if slots > 0 {
        let rows = tx
            .query(
                "WITH picked AS (
                     SELECT id FROM webhook_deliveries
                     WHERE notification_id = $1 AND status = 'pending' AND next_attempt_at <= $2
                       AND (lease_until IS NULL OR lease_until <= $2)
                       AND (NOT $6 OR NOT EXISTS (
                           SELECT 1 FROM webhook_deliveries e
                           WHERE e.notification_id = $1 AND e.status = 'pending'
                             AND e.order_key = webhook_deliveries.order_key
                             AND e.id < webhook_deliveries.id))
                     ORDER BY next_attempt_at, id LIMIT $3
                     FOR UPDATE SKIP LOCKED)
                 UPDATE webhook_deliveries d SET claimed_by = $4, lease_until = $5
                 FROM picked WHERE d.id = picked.id
                 RETURNING d.id, d.event_seq, d.event_id, d.attempts, d.tries, d.next_attempt_at",
                &[&id, &c.now, &slots, &c.claimant, &c.until, &c.per_key],
            )
            .await?;
        due = rows.iter().map(due_of).collect::<Result<Vec<_>, _>>()?;
        due.sort_by_key(|d| (d.next_attempt_at, d.id));
    }
    let next_due: Option<i64> = tx
        .query_opt(
            "SELECT next_attempt_at FROM webhook_deliveries
             WHERE notification_id = $1 AND status = 'pending' AND next_attempt_at > $2
             ORDER BY next_attempt_at LIMIT 1",
            &[&id, &c.now],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    Ok(Claimed {
        due,
        next_at: match (next_due, soonest_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    })
}
