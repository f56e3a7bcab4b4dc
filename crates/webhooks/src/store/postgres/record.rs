//! Attempt results, committed in groups.
//!
//! Results arrive from every worker at once. One task per store takes the
//! first, then every other result already queued (up to [`MAX_GROUP`]), and
//! commits them in one transaction, so that a burst costs one commit (one
//! WAL flush) rather than one per delivery. Replies go out after the commit;
//! the mirror is told of failure-state changes and automatic disablings
//! after it too, under the ordered state's lock. Each result ends its
//! claimant's lease on the delivery, recorded or superseded. At close, what
//! is queued still runs.

use super::Shared;
use super::deliveries::{lock_live, outbox_put};
use super::notifications::{Lock, Which, announce, load_one};
use crate::error::WebhooksError;
use crate::model::{Actor, DeliveryStatus};
use crate::store::{AttemptResult, NotificationId, NotificationRecord, RecordAck};
use cds_events_model::EventType;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Most attempt results committed in one transaction.
const MAX_GROUP: usize = 1024;

/// Results waiting for the task.
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<RecordAck, WebhooksError>>;

/// The queue of results and the task that commits them.
pub(super) struct Recorder {
    queue: Mutex<Option<mpsc::Sender<(AttemptResult, Reply)>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Recorder {
    pub(super) fn spawn(shared: Arc<Shared>) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<(AttemptResult, Reply)>(QUEUE);
        let task = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(next) => group.push(next),
                        Err(_) => break,
                    }
                }
                commit(&shared, group).await;
            }
        });
        Recorder {
            queue: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
        }
    }

    /// Queues `result` and waits for its group's commit.
    pub(super) async fn record(&self, result: AttemptResult) -> Result<RecordAck, WebhooksError> {
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(WebhooksError::Closed)?;
        let (reply, answer) = oneshot::channel();
        queue
            .send((result, reply))
            .await
            .map_err(|_| WebhooksError::Closed)?;
        answer.await.map_err(|_| WebhooksError::Closed)?
    }

    /// Takes no more results, and returns once those queued are committed.
    pub(super) async fn close(&self) {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Commits one group and answers each of its results.
async fn commit(shared: &Shared, group: Vec<(AttemptResult, Reply)>) {
    let started = Instant::now();
    let n = group.len();
    let (results, replies): (Vec<AttemptResult>, Vec<Reply>) = group.into_iter().unzip();
    let r = shared.record_all(&results).await;
    metrics::histogram!("cds_events_webhook_commit_seconds")
        .record(started.elapsed().as_secs_f64());
    metrics::histogram!("cds_events_webhook_commit_group_results").record(n as f64);
    match r {
        Ok(acks) => {
            for (reply, ack) in replies.into_iter().zip(acks) {
                let _ = reply.send(Ok(ack));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, results = n, "cannot record attempt results");
            // Every result of the group failed the same way.
            let unavailable = matches!(e, WebhooksError::Unavailable(_));
            for reply in replies {
                let same: Box<dyn std::error::Error + Send + Sync> = e.to_string().into();
                let _ = reply.send(Err(if unavailable {
                    WebhooksError::Unavailable(same)
                } else {
                    WebhooksError::Backend(same)
                }));
            }
        }
    }
}

impl Shared {
    /// Records a group of results in one transaction (see
    /// [`NotificationStore::record`](crate::store::NotificationStore::record)).
    async fn record_all(&self, group: &[AttemptResult]) -> Result<Vec<RecordAck>, WebhooksError> {
        let mut ordered = self.ordered.lock().await;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let mut ids: Vec<i64> = group.iter().map(|r| r.notification.0).collect();
        ids.sort_unstable();
        ids.dedup();
        // A result for a notification deleted meanwhile changes nothing; one
        // being deleted now waits for this transaction.
        let live = lock_live(&tx, &ids).await?;
        // Only if the delivery is still where this attempt found it (`tries`
        // one lower): a redelivery made while the attempt was in flight
        // resets `tries`, and must not be undone by its result.
        // The claimant's lease ends with its result (another claimant's,
        // taken after this one's ended, stays).
        let update = tx
            .prepare_cached(
                "UPDATE webhook_deliveries SET status = $2, attempts = $3, tries = $4::BIGINT,
                     next_attempt_at = $5, updated_at = $6,
                     lease_until = CASE WHEN claimed_by = $7 THEN NULL ELSE lease_until END
                 WHERE id = $1 AND tries = $4::BIGINT - 1",
            )
            .await?;
        // A success is kept in the row itself (see the schema).
        let succeeded = tx
            .prepare_cached(
                "UPDATE webhook_deliveries SET status = 'succeeded', attempts = $2,
                     tries = $3::BIGINT, next_attempt_at = NULL, updated_at = $4,
                     ok_status_code = $5, ok_latency_ms = $6, ok_response = $7,
                     lease_until = CASE WHEN claimed_by = $8 THEN NULL ELSE lease_until END
                 WHERE id = $1 AND tries = $3::BIGINT - 1",
            )
            .await?;
        let release = tx
            .prepare_cached(
                "UPDATE webhook_deliveries SET lease_until = NULL
                 WHERE id = $1 AND claimed_by = $2 AND lease_until IS NOT NULL",
            )
            .await?;
        let attempt = tx
            .prepare_cached(
                "INSERT INTO webhook_attempts (delivery_id, n, at, status_code, latency_ms, error,
                     response)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (delivery_id, n) DO UPDATE SET at = excluded.at,
                     status_code = excluded.status_code, latency_ms = excluded.latency_ms,
                     error = excluded.error, response = excluded.response",
            )
            .await?;
        let healthy = tx
            .prepare_cached(
                "UPDATE webhook_notifications SET failing_since = NULL
                 WHERE id = $1 AND failing_since IS NOT NULL",
            )
            .await?;
        let failing = tx
            .prepare_cached(
                "SELECT failing_since, enabled FROM webhook_notifications WHERE id = $1
                 FOR NO KEY UPDATE",
            )
            .await?;
        let start_failing = tx
            .prepare_cached("UPDATE webhook_notifications SET failing_since = $2 WHERE id = $1")
            .await?;
        let disable = tx
            .prepare_cached(
                "UPDATE webhook_notifications SET enabled = FALSE, disabled_reason = $2,
                     last_modified = $3
                 WHERE id = $1",
            )
            .await?;
        // Notification rows are changed in id order, whichever instance
        // commits: two groups never wait for each other in a cycle.
        let mut order: Vec<usize> = (0..group.len()).collect();
        order.sort_by_key(|&i| group[i].notification);
        let mut acks = vec![RecordAck::default(); group.len()];
        let mut transitions: Vec<(NotificationId, Option<i64>)> = Vec::new();
        let mut disabled: Vec<NotificationRecord> = Vec::new();
        for i in order {
            let r = &group[i];
            let ack = &mut acks[i];
            if !live.contains(&r.notification.0) {
                ack.superseded = true;
                continue;
            }
            let code = r.status_code.map(i32::from);
            let inline = r.status == DeliveryStatus::Succeeded && r.error.is_none();
            let changed = if inline {
                tx.execute(
                    &succeeded,
                    &[
                        &r.delivery.0,
                        &r.attempts,
                        &r.tries,
                        &r.at,
                        &code,
                        &r.latency_ms,
                        &r.response,
                        &r.claimant,
                    ],
                )
                .await?
            } else {
                tx.execute(
                    &update,
                    &[
                        &r.delivery.0,
                        &r.status.as_str(),
                        &r.attempts,
                        &r.tries,
                        &r.next_attempt_at,
                        &r.at,
                        &r.claimant,
                    ],
                )
                .await?
            };
            if changed == 0 {
                // Deleted meanwhile, or redelivered while in flight (the
                // redelivery stands; the worker sends it again).
                tx.execute(&release, &[&r.delivery.0, &r.claimant]).await?;
                ack.superseded = true;
                continue;
            }
            if !inline {
                tx.execute(
                    &attempt,
                    &[
                        &r.delivery.0,
                        &r.attempts,
                        &r.at,
                        &code,
                        &r.latency_ms,
                        &r.error,
                        &r.response,
                    ],
                )
                .await?;
            }
            let id = r.notification;
            if r.endpoint_failed == Some(false) && tx.execute(&healthy, &[&id.0]).await? == 1 {
                transitions.push((id, None));
            }
            if r.endpoint_failed == Some(true) {
                let row = tx.query_one(&failing, &[&id.0]).await?;
                let (since, enabled): (Option<i64>, bool) = (row.try_get(0)?, row.try_get(1)?);
                let since = match since {
                    Some(since) => since,
                    None => {
                        tx.execute(&start_failing, &[&id.0, &r.at]).await?;
                        transitions.push((id, Some(r.at)));
                        r.at
                    }
                };
                if enabled && r.disables(since, self.disable_after_ms) {
                    let reason = r.disabled_reason(since);
                    tx.execute(&disable, &[&id.0, &reason, &r.at]).await?;
                    // Announced with the change itself (outbox).
                    if let Some(n) =
                        load_one(&*tx, &ordered.keyring, Which::Id(id), Lock::None).await?
                    {
                        outbox_put(
                            &tx,
                            &n.event(EventType::NotificationUpdated, &Actor::system())?,
                        )
                        .await?;
                        disabled.push(n);
                    }
                    ack.disabled = true;
                }
            }
        }
        let mut told: Vec<NotificationId> = transitions.iter().map(|(id, _)| *id).collect();
        told.extend(disabled.iter().map(|n| n.id));
        told.sort_unstable();
        told.dedup();
        for id in told {
            announce(&tx, id).await?;
        }
        tx.commit().await?;
        let mirror = self.mirror.as_ref();
        for (id, since) in transitions {
            ordered.failing(mirror, id, since);
        }
        for n in disabled {
            ordered.put(mirror, n);
        }
        Ok(acks)
    }
}
