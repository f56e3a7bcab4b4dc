//! The deliveries as the API shows them: listings by status, one delivery
//! with its attempts, redelivery, the purge of old rows, the pending count,
//! what retention must keep, and the test ping.
//!
//! Public delivery ids (`msg_…`, also the `webhook-id` of every attempt) are
//! made and parsed here; the rows are the store's, read and changed only
//! through its named operations.

use crate::engine::Inner;
use crate::error::WebhooksError;
use crate::model::{
    AttemptOut, DeliveryOut, DeliveryPage, DeliveryStatus, EventFormat, NotificationHealthOut,
};
use crate::outgoing::Outgoing;
use crate::send::AttemptOutcome;
use crate::store::{Attempt, Delivery, DeliveryId};
use crate::time::{self, now_ms, to_datetime};
use crate::{DeliveryDetail, MAX_PAGE};
use cds_events_model::ProjectKey;
use cds_events_model::cloudevents::{CloudEvent, TYPE_NAMESPACE, seq_text};
use chrono::{DateTime, Utc};

/// The pause between two purge transactions, so that attempt results
/// interleave with a long purge.
const PURGE_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// The window of a notification's health.
const HEALTH_WINDOW_MS: i64 = 24 * 3_600_000;

impl Inner {
    /// See [`crate::Webhooks::health`].
    pub(crate) async fn health(
        &self,
        project: &ProjectKey,
        name: &str,
    ) -> Result<NotificationHealthOut, WebhooksError> {
        let n = self.find(project, name)?;
        let since = now_ms() - HEALTH_WINDOW_MS;
        let h = self.store.health(n.id, since).await?;
        Ok(NotificationHealthOut {
            since: to_datetime(since),
            attempts: h.attempts,
            succeeded: h.succeeded,
            success_rate: (h.attempts > 0).then(|| h.succeeded as f64 / h.attempts as f64),
            p95_latency_ms: h.p95_latency_ms,
            pending: h.pending,
            failed: h.failed,
        })
    }

    /// See [`crate::Webhooks::deliveries`].
    pub(crate) async fn deliveries(
        &self,
        project: &ProjectKey,
        name: &str,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<DeliveryPage, WebhooksError> {
        let n = self.find(project, name)?;
        let before =
            match cursor {
                Some(c) => Some(self.delivery_row(c).ok_or_else(|| {
                    WebhooksError::invalid("cursor", "not a cursor of this listing")
                })?),
                None => None,
            };
        let limit = limit.clamp(1, MAX_PAGE);
        let statuses: Vec<DeliveryStatus> = match status {
            Some(s) => vec![s],
            None => DeliveryStatus::ALL.to_vec(),
        };
        let mut rows = self
            .store
            .list_deliveries(n.id, statuses, before, limit + 1)
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|r| self.delivery_uid(r.id))
        } else {
            None
        };
        Ok(DeliveryPage {
            deliveries: rows.into_iter().map(|r| self.delivery_out(r)).collect(),
            next_cursor,
        })
    }

    /// See [`crate::Webhooks::delivery`].
    pub(crate) async fn delivery(
        &self,
        project: &ProjectKey,
        name: &str,
        delivery_id: &str,
    ) -> Result<DeliveryDetail, WebhooksError> {
        let n = self.find(project, name)?;
        let row = self.known_delivery(delivery_id)?;
        let (d, attempts) = self
            .store
            .delivery(n.id, row)
            .await?
            .ok_or_else(|| WebhooksError::no_delivery(delivery_id))?;
        Ok(DeliveryDetail {
            delivery: self.delivery_out(d),
            attempts: attempts.into_iter().map(attempt_out).collect(),
        })
    }

    /// See [`crate::Webhooks::redeliver`].
    pub(crate) async fn redeliver(
        &self,
        project: &ProjectKey,
        name: &str,
        delivery_id: &str,
    ) -> Result<DeliveryOut, WebhooksError> {
        let n = self.find(project, name)?;
        let row = self.known_delivery(delivery_id)?;
        let d = self
            .store
            .redeliver(n.id, row)
            .await?
            .ok_or_else(|| WebhooksError::no_delivery(delivery_id))?;
        self.registry.wake(n.id);
        Ok(self.delivery_out(d))
    }

    /// See [`crate::Webhooks::redeliver_failed_since`].
    pub(crate) async fn redeliver_failed_since(
        &self,
        project: &ProjectKey,
        name: &str,
        since: DateTime<Utc>,
    ) -> Result<u64, WebhooksError> {
        let n = self.find(project, name)?;
        let count = self
            .store
            .redeliver_failed_since(n.id, since.timestamp_millis())
            .await?;
        if count > 0 {
            self.registry.wake(n.id);
        }
        Ok(count)
    }

    /// See [`crate::Webhooks::purge`].
    pub(crate) async fn purge(&self) -> Result<u64, WebhooksError> {
        let keep = time::millis(self.config.keep_deliveries);
        let mut total = 0;
        loop {
            let step = self.store.purge_step(now_ms() - keep).await?;
            total += step.deliveries;
            if !step.more {
                return Ok(total);
            }
            tokio::time::sleep(PURGE_PAUSE).await;
        }
    }

    /// See [`crate::Webhooks::test`].
    pub(crate) async fn test(
        &self,
        project: &ProjectKey,
        name: &str,
    ) -> Result<AttemptOutcome, WebhooksError> {
        let n = self.find(project, name)?;
        let body = serde_json::json!({
            "id": uuid::Uuid::now_v7().to_string(),
            "type": "Ping",
            "payload": {"notification": n.name},
            "project_key": n.project,
            "notification": n.name,
            "user_mail": "",
            "concurrency": "",
            "timestamp": cds_events_model::Timestamp::now().to_go_string(),
        })
        .to_string();
        let msg_id = format!("msg_test_{}", uuid::Uuid::now_v7().simple());
        let out = match n.format {
            EventFormat::Cds => Outgoing::cds(&body),
            // A ping is no catalogue event: its CloudEvent is built here,
            // in the same shape (for CDEvents too: it has no CDEvents
            // counterpart, and a ping must still reach the endpoint).
            EventFormat::CloudEvents | EventFormat::CdEvents => {
                let ping = CloudEvent {
                    id: &msg_id,
                    source: self
                        .config
                        .cloudevents_source
                        .for_project(n.project.as_str()),
                    ce_type: format!("{TYPE_NAMESPACE}.Ping"),
                    subject: Some(n.name.clone()),
                    time: cds_events_model::Timestamp::now().to_go_string(),
                    cdsseq: seq_text(0),
                    cdsproject: Some(n.project.as_str()),
                    data: &body,
                };
                Outgoing::cloudevent(&ping, n.content_mode, &body)
            }
        };
        // A ping is never retried: always attempt 1.
        Ok(self.sender.send(&n, &msg_id, 1, &out).await)
    }

    /// The public id of a delivery (also its `webhook-id`): `msg_`, the
    /// store's epoch, the row id.
    pub(crate) fn delivery_uid(&self, id: DeliveryId) -> String {
        format!("msg_{}{}", self.store.epoch(), id.0)
    }

    /// The row id of a public delivery id of this store.
    fn delivery_row(&self, uid: &str) -> Option<DeliveryId> {
        uid.strip_prefix("msg_")?
            .strip_prefix(self.store.epoch())?
            .parse()
            .ok()
            .map(DeliveryId)
    }

    fn known_delivery(&self, delivery_id: &str) -> Result<DeliveryId, WebhooksError> {
        self.delivery_row(delivery_id)
            .ok_or_else(|| WebhooksError::no_delivery(delivery_id))
    }

    fn delivery_out(&self, d: Delivery) -> DeliveryOut {
        DeliveryOut {
            id: self.delivery_uid(d.id),
            event_id: d.event_id,
            event_seq: d.event_seq.0,
            status: d.status,
            attempts: d.attempts.clamp(0, u32::MAX as i64) as u32,
            next_attempt_at: (d.status == DeliveryStatus::Pending)
                .then(|| d.next_attempt_at.map(to_datetime))
                .flatten(),
            created_at: to_datetime(d.created_at),
            updated_at: to_datetime(d.updated_at),
        }
    }
}

fn attempt_out(a: Attempt) -> AttemptOut {
    AttemptOut {
        n: a.n.clamp(0, u32::MAX as i64) as u32,
        at: to_datetime(a.at),
        status_code: a.status_code,
        latency_ms: a.latency_ms.max(0) as u64,
        error: a.error,
        response: a.response,
    }
}
