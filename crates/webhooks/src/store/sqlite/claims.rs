//! Claims and leases on `webhooks.db`, kept in the writer's memory.
//!
//! One process owns the file, so no one else could hold a lease: the
//! leases are a map on the writer thread, which also commits every result.
//! A claim runs there too, so it reads the rows as committed and the leases
//! as they are, and a result ends its lease right after its commit: a
//! delivery can never be claimed twice, nor be claimed after its result
//! made it final. A reopened store has no leases (their claimants were the
//! process that closed it).

use super::writer::WriterCtx;
use crate::error::WebhooksError;
use crate::store::{Claim, Claimed, DeliveryId, Due, NotificationId};
use rusqlite::{OptionalExtension, params};
use std::collections::HashMap;

/// A lease on one delivery.
#[derive(Debug, Clone)]
pub(super) struct Lease {
    claimant: String,
    until: i64,
}

/// Each notification's leased deliveries.
pub(super) type Leases = HashMap<NotificationId, HashMap<DeliveryId, Lease>>;

const DUE_COLUMNS: &str = "id, event_seq, event_id, attempts, tries, next_attempt_at";

fn due_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Due> {
    Ok(Due {
        id: DeliveryId(r.get(0)?),
        seq: cds_events_log::Seq(r.get::<_, i64>(1)?.max(0) as u64),
        event_id: r.get(2)?,
        attempts: r.get(3)?,
        tries: r.get(4)?,
        next_attempt_at: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
    })
}

impl WriterCtx {
    /// See [`NotificationStore::claim`](crate::store::NotificationStore::claim).
    pub(super) fn claim(&mut self, c: &Claim) -> Result<Claimed, WebhooksError> {
        if c.want == 0 || c.max_leased == 0 {
            return Ok(Claimed::default());
        }
        let leases = self.leases.entry(c.notification).or_default();
        // An ended lease binds no one.
        leases.retain(|_, l| l.until > c.now);
        let soonest_end = leases.values().map(|l| l.until).min();
        let mut claimed = Claimed::default();
        if c.ordered {
            let oldest = self
                .conn
                .prepare_cached(&format!(
                    "SELECT {DUE_COLUMNS} FROM deliveries
                     WHERE notification_id = ?1 AND status = 'pending' ORDER BY id LIMIT 1"
                ))?
                .query_row([c.notification.0], due_of)
                .optional()?;
            if let Some(d) = oldest {
                match leases.get(&d.id) {
                    Some(held) => claimed.next_at = Some(held.until),
                    None if d.next_attempt_at > c.now => claimed.next_at = Some(d.next_attempt_at),
                    None => {
                        leases.insert(d.id, lease(c));
                        claimed.due.push(d);
                    }
                }
            }
            return Ok(claimed);
        }
        let slots = c.max_leased.saturating_sub(leases.len()).min(c.want);
        if slots > 0 {
            // Leased rows are due too: read past them. Per key, only the
            // oldest pending delivery of each key is a candidate.
            let mut st = self.conn.prepare_cached(&format!(
                "SELECT {DUE_COLUMNS} FROM deliveries d
                 WHERE notification_id = ?1 AND status = 'pending' AND next_attempt_at <= ?2
                   AND (?4 = 0 OR NOT EXISTS (
                       SELECT 1 FROM deliveries e
                       WHERE e.notification_id = ?1 AND e.status = 'pending'
                         AND e.order_key = d.order_key AND e.id < d.id))
                 ORDER BY next_attempt_at, id LIMIT ?3"
            ))?;
            let rows = st.query_map(
                params![
                    c.notification.0,
                    c.now,
                    (slots + leases.len()) as i64,
                    c.per_key
                ],
                due_of,
            )?;
            for d in rows {
                let d = d?;
                if claimed.due.len() == slots {
                    break;
                }
                if let std::collections::hash_map::Entry::Vacant(free) = leases.entry(d.id) {
                    free.insert(lease(c));
                    claimed.due.push(d);
                }
            }
        }
        let next_due: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT next_attempt_at FROM deliveries
                 WHERE notification_id = ?1 AND status = 'pending' AND next_attempt_at > ?2
                 ORDER BY next_attempt_at LIMIT 1",
            )?
            .query_row(params![c.notification.0, c.now], |r| r.get(0))
            .optional()?;
        claimed.next_at = match (next_due, soonest_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(claimed)
    }

    /// See [`NotificationStore::renew`](crate::store::NotificationStore::renew).
    pub(super) fn renew(&mut self, claimant: &str, ids: &[DeliveryId], until: i64) {
        for leases in self.leases.values_mut() {
            for id in ids {
                if let Some(l) = leases.get_mut(id)
                    && l.claimant == claimant
                {
                    l.until = until;
                }
            }
        }
    }

    /// See [`NotificationStore::release`](crate::store::NotificationStore::release).
    pub(super) fn release(&mut self, claimant: &str, ids: &[DeliveryId]) {
        for leases in self.leases.values_mut() {
            leases.retain(|id, l| !(l.claimant == claimant && ids.contains(id)));
        }
    }

    /// Ends `claimant`'s lease on `delivery` of `notification` (its result
    /// is committed).
    pub(super) fn end_lease(
        &mut self,
        notification: NotificationId,
        delivery: DeliveryId,
        claimant: &str,
    ) {
        if let Some(leases) = self.leases.get_mut(&notification)
            && leases
                .get(&delivery)
                .is_some_and(|l| l.claimant == claimant)
        {
            leases.remove(&delivery);
        }
    }

    /// A notification was deleted: its leases go with it.
    pub(super) fn forget_leases(&mut self, notification: NotificationId) {
        self.leases.remove(&notification);
    }
}

fn lease(c: &Claim) -> Lease {
    Lease {
        claimant: c.claimant.clone(),
        until: c.until,
    }
}
