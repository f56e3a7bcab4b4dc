//! The dispatcher: follows the log and turns every event that matches a
//! notification into a delivery row, durably, before anything is sent.
//!
//! A consumer driven by the log's one loop ([`cds_events_log::follow`]):
//! for each batch read after its position it writes the batch's deliveries
//! and the new position in one transaction (see
//! `store::NotificationStore::create_deliveries`), under the lead this
//! instance holds (it runs only there, see `lead`); the store then wakes the
//! workers concerned, on every instance. It never sends anything and never
//! waits for a receiver, so a slow endpoint cannot hold the log back.

use crate::engine::Inner;
use crate::model::OrderedBy;
use crate::store::{Lead, NewDelivery};
use cds_events_log::{
    Checkpoint, Consumer, ConsumerError, EventLog, FollowOptions, LogError, PositionStore, Seq,
    StoredEvent, follow,
};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events read from the log per transaction.
const READ_BATCH: usize = 512;
/// How often the position is stored while it only follows the head.
const IDLE_PERSIST: Duration = Duration::from_secs(1);

/// Follows the log under `lead` until `shutdown` (see
/// [`cds_events_log::follow`]).
pub(crate) async fn run(inner: Arc<Inner>, lead: Arc<Lead>, shutdown: CancellationToken) {
    let log = Arc::clone(&inner.log);
    let options = FollowOptions {
        batch: READ_BATCH,
        retry: Duration::from_millis(500),
        idle_persist: IDLE_PERSIST,
    };
    follow(log, Dispatcher { inner, lead }, options, shutdown).await;
}

/// The dispatcher as a consumer of the log. Its position lives in the
/// store, written with each batch's deliveries under the lead.
struct Dispatcher {
    inner: Arc<Inner>,
    lead: Arc<Lead>,
}

impl Consumer for Dispatcher {
    fn name(&self) -> &str {
        "webhooks"
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint::WithBatch(Arc::new(Position {
            inner: Arc::clone(&self.inner),
            lead: Arc::clone(&self.lead),
        }))
    }

    /// While there is no notification at all, nothing is read: the position
    /// follows the head.
    fn is_listening(&self) -> bool {
        !self.inner.registry.is_empty()
    }

    /// Ingest first: paced while the machine is saturated.
    async fn admit(&mut self, max: usize) -> usize {
        self.inner.pressure.admit_reads(max).await
    }

    /// One log read in flight from the whole engine (see `Inner::log_reads`).
    async fn read(
        &self,
        log: &dyn EventLog,
        after: Seq,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, LogError> {
        let _permit = self.inner.log_reads.acquire().await;
        log.read_after(after, limit).await
    }

    async fn handle(&mut self, batch: &[StoredEvent]) -> Result<(), ConsumerError> {
        dispatch_batch(&self.inner, &self.lead, batch)
            .await
            .map_err(|e| ConsumerError::Handle(Box::new(e)))
    }
}

/// The dispatcher's position in the store, moved under the lead.
struct Position {
    inner: Arc<Inner>,
    lead: Arc<Lead>,
}

#[async_trait::async_trait]
impl PositionStore for Position {
    async fn load(&self) -> Result<Option<Seq>, ConsumerError> {
        self.inner.store.position().await.map_err(position_error)
    }

    async fn save(&self, position: Seq) -> Result<(), ConsumerError> {
        // The position alone: no delivery to create.
        self.inner
            .store
            .create_deliveries(&self.lead, Vec::new(), position)
            .await
            .map_err(position_error)
    }
}

fn position_error(e: crate::WebhooksError) -> ConsumerError {
    ConsumerError::Position(Box::new(e))
}

/// A delivery's key for a notification ordered by `by`: the event's value
/// of that envelope field (empty when it has none: such events share one
/// key); empty when the notification is not ordered per key.
fn order_key(by: Option<OrderedBy>, e: &cds_events_model::StoredHead<'_>) -> String {
    match by {
        None => String::new(),
        Some(OrderedBy::WorkflowRunId) => e.workflow_run_id.to_string(),
        Some(OrderedBy::Workflow) => e.workflow.to_string(),
        Some(OrderedBy::Repository) => e.repository.to_string(),
    }
}

/// Matches and records one batch (never empty): its deliveries and the
/// position of its last event, in one transaction.
async fn dispatch_batch(
    inner: &Inner,
    lead: &Lead,
    batch: &[StoredEvent],
) -> Result<(), crate::WebhooksError> {
    let Some(last) = batch.last().map(|e| e.seq) else {
        return Ok(());
    };
    let index = inner.registry.index();
    let mut rows = Vec::new();
    // Events a `format: cdevents` notification matched but cannot be sent
    // in: no delivery, counted.
    let mut unmapped = 0u64;
    if !index.by_project.is_empty() {
        for stored in batch {
            // Only the type and project route an event: the rest of it is
            // not decoded.
            let event = match stored.head() {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(seq = stored.seq.0, error = %e, "stored event does not decode; no webhook delivery");
                    continue;
                }
            };
            let Some(targets) = index.by_project.get(event.project_key.as_ref()) else {
                continue;
            };
            let mut matched = false;
            let has_cdevent = cds_events_model::cdevents::cd_kind(event.event_type).is_some();
            for t in targets.iter().filter(|t| t.matches(event.event_type)) {
                if t.cdevents && !has_cdevent {
                    unmapped += 1;
                    continue;
                }
                rows.push(NewDelivery {
                    notification: t.id,
                    seq: stored.seq,
                    event_id: event.id.to_string(),
                    order_key: order_key(t.ordered_by, &event),
                });
                matched = true;
            }
            if matched {
                inner.cache.put(stored.seq, Arc::clone(&stored.json));
            }
        }
    }
    if unmapped > 0 {
        metrics::counter!("cds_events_cdevents_unmapped_total", "way" => "webhook")
            .increment(unmapped);
    }
    let created = rows.len();
    // The store wakes the workers concerned (every instance's).
    inner.store.create_deliveries(lead, rows, last).await?;
    if created > 0 {
        metrics::counter!("cds_events_webhook_deliveries_created_total").increment(created as u64);
    }
    Ok(())
}
