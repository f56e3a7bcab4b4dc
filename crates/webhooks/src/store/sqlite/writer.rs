//! The commands of the single writer thread of `webhooks.db`, and what each
//! does.
//!
//! The thread is the store crate's (`cds_events_store::Writer`). Attempt
//! results arrive from every worker at once; the thread takes the first,
//! then every other result already queued (up to [`MAX_GROUP`]), and
//! [`WriterCtx::commit_group`] commits them in one transaction, so a burst of
//! results costs one commit rather than one per delivery. Replies go out
//! after the commit. Every other change (notifications, delivery creation
//! with the log position, key rotation) is a command of its own, run in
//! order: the mirror is told here too, right after the commit, so the
//! engine's memory follows the database in the same order. Claims run here
//! as well, against the leases this thread keeps (`claims`). At close,
//! what is queued still runs.

use super::claims::Leases;
use super::notifications::{Which, open_one};
use super::outbox::outbox_put;
use super::schema::POSITION;
use crate::crypto::Keyring;
use crate::error::WebhooksError;
use crate::model::{Actor, DeliveryStatus};
use crate::store::{AttemptResult, Mirror, NewDelivery, NotificationId, RecordAck};
use cds_events_log::Seq;
use cds_events_model::EventType;
use cds_events_store::Handler;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

pub(super) type Reply<T> = cds_events_store::Reply<T, WebhooksError>;

pub(super) enum Cmd {
    Deliveries {
        /// The term of the lead the batch is written under.
        term: i64,
        batch: Vec<NewDelivery>,
        position: Seq,
        reply: Reply<()>,
    },
    Call(Box<dyn FnOnce(&mut WriterCtx) + Send>),
}

/// Most attempt results committed in one transaction.
const MAX_GROUP: usize = 4096;

/// Deliveries created per INSERT statement.
const INSERT_CHUNK: usize = 64;

/// `INSERT … VALUES (…), (…)` for `n` deliveries: `?1` is the time, then
/// four parameters per row (notification, sequence number, event id, key).
fn insert_sql(n: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO deliveries(notification_id, event_seq, event_id, order_key, status, attempts,
                                tries, next_attempt_at, created_at, updated_at) VALUES ",
    );
    for i in 0..n {
        let p = 2 + 4 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(?{}, ?{}, ?{}, ?{}, 'pending', 0, 0, ?1, ?1, ?1)",
            p,
            p + 1,
            p + 2,
            p + 3
        ));
    }
    sql
}

/// What a writer command gets to work with.
pub(super) struct WriterCtx {
    pub conn: Connection,
    /// The keyring values are sealed with. Changed only here, so a rotation
    /// and a write that seals a value can never interleave.
    pub keyring: Keyring,
    /// Told of every committed notification change, from here only.
    pub mirror: Arc<dyn Mirror>,
    /// The notifications that exist: a batch's deliveries and a result for
    /// one deleted meanwhile change nothing. Kept here, where creations and
    /// deletions are made, so it is exact without a lookup per row.
    pub live: HashSet<NotificationId>,
    pub disable_after_ms: i64,
    /// The term of the latest lead: only its batches are written.
    pub term: i64,
    /// The leases of claimed deliveries.
    pub leases: Leases,
    /// Pending deliveries. Every change of a delivery's status goes through
    /// this thread, so the count is kept exactly without ever counting rows.
    pub pending: i64,
}

/// An attempt's result to record, which joins groups.
pub(super) type Record = (AttemptResult, Reply<RecordAck>);

impl Handler for WriterCtx {
    type Member = Record;
    type Command = Cmd;
    const MAX_GROUP: usize = MAX_GROUP;

    fn weight(_: &Record) -> usize {
        1
    }

    fn commit_group(&mut self, group: Vec<Record>) {
        let started = Instant::now();
        let n = group.len();
        let r = self.record_all(group.iter().map(|(r, _)| r));
        metrics::histogram!("cds_events_webhook_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        metrics::histogram!("cds_events_webhook_commit_group_results").record(n as f64);
        match r {
            Ok(acks) => {
                for ((result, reply), ack) in group.into_iter().zip(acks) {
                    self.end_lease(result.notification, result.delivery, &result.claimant);
                    let _ = reply.send(Ok(ack));
                }
            }
            Err(e) => {
                // A full disk is said once by the checkpointer and to every
                // writer as a 507; the worker holds its attempts and records
                // them again, so each failed group is no news.
                if matches!(e, WebhooksError::Full(_)) {
                    tracing::debug!(error = %e, results = n, "cannot record attempt results");
                } else {
                    tracing::error!(error = %e, results = n, "cannot record attempt results");
                }
                // Every request of the group failed the same way: a full
                // disk stays a full disk, so the worker knows to wait.
                for (_, reply) in group {
                    let again = match &e {
                        WebhooksError::Full(m) => WebhooksError::Full(m.clone()),
                        other => WebhooksError::Backend(other.to_string().into()),
                    };
                    let _ = reply.send(Err(again));
                }
            }
        }
    }

    fn run(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Deliveries {
                term,
                batch,
                position,
                reply,
            } => {
                let r = if term == self.term {
                    self.insert_deliveries(&batch, position)
                } else {
                    Err(WebhooksError::LostLead)
                };
                let _ = reply.send(r);
            }
            Cmd::Call(f) => f(self),
        }
    }

    fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl WriterCtx {
    /// Moves the pending count (and its gauge) by `delta`.
    pub(super) fn add_pending(&mut self, delta: i64) {
        self.pending += delta;
        metrics::gauge!("cds_events_webhook_deliveries_pending").set(self.pending as f64);
    }

    /// Creates the deliveries of one batch of events and moves the log
    /// position past the batch, in one transaction: after a crash either both
    /// happened or neither did, so re-reading from the stored position never
    /// loses nor duplicates a delivery.
    fn insert_deliveries(
        &mut self,
        rows: &[NewDelivery],
        position: Seq,
    ) -> Result<(), WebhooksError> {
        let now = crate::time::now_ms();
        let mut inserted = 0i64;
        // A notification deleted since the batch was matched gets nothing.
        let rows: Vec<(i64, i64, &str, &str)> = rows
            .iter()
            .filter(|r| self.live.contains(&r.notification))
            .map(|r| {
                (
                    r.notification.0,
                    r.seq.0 as i64,
                    r.event_id.as_str(),
                    r.order_key.as_str(),
                )
            })
            .collect();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Many rows per statement: one statement step (and one update of
        // the AUTOINCREMENT counter) per chunk, not per delivery.
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut st = tx.prepare_cached(&insert_sql(chunk.len()))?;
            let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(1 + 4 * chunk.len());
            args.push(&now);
            for (notification, seq, event_id, order_key) in chunk {
                args.push(notification);
                args.push(seq);
                args.push(event_id);
                args.push(order_key);
            }
            inserted += st.execute(args.as_slice())? as i64;
        }
        POSITION.set(&tx, &(position.0 as i64))?;
        tx.commit()?;
        if inserted > 0 {
            self.add_pending(inserted);
            let mut due: Vec<NotificationId> = rows.iter().map(|r| NotificationId(r.0)).collect();
            due.sort_unstable();
            due.dedup();
            self.mirror.due(&due);
        }
        Ok(())
    }

    fn record_all<'a>(
        &mut self,
        recs: impl Iterator<Item = &'a AttemptResult>,
    ) -> Result<Vec<RecordAck>, WebhooksError> {
        let disable_after = self.disable_after_ms;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut acks = Vec::new();
        let mut disabled = Vec::new();
        let mut transitions = Vec::new();
        let mut finished = 0i64;
        {
            // Only if the delivery is still where this attempt found it
            // (`tries` one lower): a redelivery made while the attempt was in
            // flight resets `tries`, and must not be undone by its result.
            let mut update = tx.prepare_cached(
                "UPDATE deliveries SET status = ?2, attempts = ?3, tries = ?4, next_attempt_at = ?5,
                                       updated_at = ?6
                 WHERE id = ?1 AND tries = ?4 - 1",
            )?;
            // A success is kept in the row itself (see the schema).
            let mut succeeded = tx.prepare_cached(
                "UPDATE deliveries SET status = 'succeeded', attempts = ?2, tries = ?3,
                                       next_attempt_at = NULL, updated_at = ?4,
                                       ok_status_code = ?5, ok_latency_ms = ?6, ok_response = ?7
                 WHERE id = ?1 AND tries = ?3 - 1",
            )?;
            let mut attempt = tx.prepare_cached(
                "INSERT OR REPLACE INTO attempts(delivery_id, n, at, status_code, latency_ms, error, response)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut healthy = tx.prepare_cached(
                "UPDATE notifications SET failing_since = NULL
                 WHERE id = ?1 AND failing_since IS NOT NULL",
            )?;
            let mut failing = tx.prepare_cached(
                "UPDATE notifications SET failing_since = COALESCE(failing_since, ?2)
                 WHERE id = ?1 RETURNING failing_since, enabled",
            )?;
            let mut disable = tx.prepare_cached(
                "UPDATE notifications SET enabled = 0, disabled_reason = ?2, last_modified = ?3
                 WHERE id = ?1",
            )?;
            for r in recs {
                let mut ack = RecordAck::default();
                // Its notification was deleted while the attempt was in
                // flight: its rows wait for the purge, nothing is recorded.
                if !self.live.contains(&r.notification) {
                    ack.superseded = true;
                    acks.push(ack);
                    continue;
                }
                let inline = r.status == DeliveryStatus::Succeeded && r.error.is_none();
                let changed = if inline {
                    succeeded.execute(params![
                        r.delivery.0,
                        r.attempts,
                        r.tries,
                        r.at,
                        r.status_code,
                        r.latency_ms,
                        r.response
                    ])?
                } else {
                    update.execute(params![
                        r.delivery.0,
                        r.status.as_str(),
                        r.attempts,
                        r.tries,
                        r.next_attempt_at,
                        r.at
                    ])?
                };
                if changed == 0 {
                    // Deleted meanwhile, or redelivered while in flight (the
                    // redelivery stands; the worker sends it again).
                    ack.superseded = true;
                    acks.push(ack);
                    continue;
                }
                if r.status != DeliveryStatus::Pending {
                    finished += 1;
                }
                if !inline {
                    attempt.execute(params![
                        r.delivery.0,
                        r.attempts,
                        r.at,
                        r.status_code,
                        r.latency_ms,
                        r.error,
                        r.response
                    ])?;
                }
                if r.endpoint_failed == Some(false) && healthy.execute([r.notification.0])? == 1 {
                    transitions.push((r.notification, None));
                }
                if r.endpoint_failed == Some(true) {
                    let row: Option<(i64, bool)> = failing
                        .query_row(params![r.notification.0, r.at], |x| {
                            Ok((x.get(0)?, x.get(1)?))
                        })
                        .optional()?;
                    if let Some((since, _)) = row
                        && since == r.at
                    {
                        transitions.push((r.notification, Some(since)));
                    }
                    if let Some((since, true)) = row
                        && r.disables(since, disable_after)
                    {
                        let reason = r.disabled_reason(since);
                        disable.execute(params![r.notification.0, reason, r.at])?;
                        // Announced with the change itself (outbox).
                        if let Some(n) = open_one(&tx, &self.keyring, Which::Id(r.notification))? {
                            outbox_put(
                                &tx,
                                &n.event(EventType::NotificationUpdated, &Actor::system())?,
                            )?;
                            disabled.push(n);
                        }
                        ack.disabled = true;
                    }
                }
                acks.push(ack);
            }
        }
        tx.commit()?;
        if finished > 0 {
            self.add_pending(-finished);
        }
        for (id, since) in transitions {
            self.mirror.failing_since(id, since);
        }
        for n in disabled {
            self.tell(n);
        }
        Ok(acks)
    }
}
