//! What goes in and out of a [`NotificationStore`](super::NotificationStore):
//! plain values, the same for every backend. Times are unix milliseconds,
//! log positions are [`Seq`]s, row ids are newtypes; nothing here knows a
//! database.

use crate::error::WebhooksError;
use crate::model::{
    Actor, ContentMode, DeliveryStatus, EventFormat, MASK, NotificationAuth, NotificationFilter,
    NotificationOut, OrderedBy,
};
use crate::signing::SigningSecret;
use crate::time::to_datetime;
use cds_events_log::Seq;
use cds_events_model::{EventType, FullEvent, NotificationEvent, Payload, ProjectKey};
use std::collections::BTreeMap;
use std::fmt;

/// A notification's id in its store (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NotificationId(pub i64);

/// A delivery's id in its store, growing with creation: never reused, even
/// after a purge, so that the public id made of it (the `webhook-id`
/// receivers de-duplicate on) never names two deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(pub i64);

/// A notification as stored, its header values and secrets in the clear (a
/// store seals them at rest). `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    /// Given by the store at creation (ignored when creating).
    pub id: NotificationId,
    /// The public id (`NotificationOut::id`), given by the caller.
    pub uid: String,
    pub project: ProjectKey,
    pub name: String,
    pub url: String,
    pub filters: BTreeMap<String, NotificationFilter>,
    pub headers: BTreeMap<String, String>,
    pub secret: SigningSecret,
    /// The secret before the last rotation and until when it still signs.
    pub previous: Option<(SigningSecret, i64)>,
    pub enabled: bool,
    pub ordered: bool,
    /// Ordering per key (never with `ordered`): the envelope field whose
    /// value is each delivery's [`NewDelivery::order_key`].
    pub ordered_by: Option<OrderedBy>,
    /// The body's shape, and with CloudEvents, the content mode.
    pub format: EventFormat,
    pub content_mode: ContentMode,
    pub disabled_reason: Option<String>,
    /// The first failure since the last success.
    pub failing_since: Option<i64>,
    pub last_modified: i64,
}

impl fmt::Debug for NotificationRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotificationRecord")
            .field("id", &self.id)
            .field("uid", &self.uid)
            .field("project", &self.project)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("enabled", &self.enabled)
            .field("ordered", &self.ordered)
            .field("ordered_by", &self.ordered_by)
            .field("failing_since", &self.failing_since)
            .finish_non_exhaustive()
    }
}

/// A stored `format` and `content_mode` read back (columns of every
/// backend); a value no build wrote makes the notification unreadable.
pub(crate) fn stored_format(
    uid: &str,
    format: &str,
    mode: &str,
) -> Result<(EventFormat, ContentMode), WebhooksError> {
    let unreadable = |problem: String| WebhooksError::Unreadable {
        uid: uid.to_owned(),
        problem,
    };
    Ok((
        format
            .parse()
            .map_err(|e| unreadable(format!("format: {e}")))?,
        mode.parse()
            .map_err(|e| unreadable(format!("content_mode: {e}")))?,
    ))
}

/// A stored `ordered_by` read back (`NULL`: not ordered per key); a value
/// no build wrote makes the notification unreadable.
pub(crate) fn stored_ordered_by(
    uid: &str,
    stored: Option<String>,
) -> Result<Option<OrderedBy>, WebhooksError> {
    stored
        .map(|s| {
            s.parse().map_err(|e| WebhooksError::Unreadable {
                uid: uid.to_owned(),
                problem: format!("ordered_by: {e}"),
            })
        })
        .transpose()
}

/// A stored project key, read back (every backend wrote a valid one).
pub(crate) fn stored_project(uid: &str, project: String) -> Result<ProjectKey, WebhooksError> {
    ProjectKey::new(project).map_err(|e| WebhooksError::Unreadable {
        uid: uid.to_owned(),
        problem: format!("project: {e}"),
    })
}

impl NotificationRecord {
    /// As the API shows it: header values masked, secrets absent.
    pub fn out(&self) -> NotificationOut {
        NotificationOut {
            id: self.uid.clone(),
            project_key: self.project.to_string(),
            name: self.name.clone(),
            last_modified: to_datetime(self.last_modified),
            webhook_url: self.url.clone(),
            filters: self.filters.clone(),
            auth: NotificationAuth {
                headers: self
                    .headers
                    .keys()
                    .map(|k| (k.clone(), MASK.to_owned()))
                    .collect(),
            },
            enabled: self.enabled,
            ordered: self.ordered,
            ordered_by: self.ordered_by,
            format: self.format,
            content_mode: self.content_mode,
            signature: self.secret.scheme(),
            disabled_reason: self.disabled_reason.clone(),
            failing_since: self.failing_since.map(to_datetime),
        }
    }

    /// The Notification event of type `t` (created, updated, deleted)
    /// announcing this notification as it is, made by `actor`. A store
    /// writes it to its outbox in the change's own transaction.
    pub fn event(&self, t: EventType, actor: &Actor) -> Result<FullEvent, WebhooksError> {
        let out = self.out();
        let payload = Payload::from_value(&out).map_err(|source| WebhooksError::Encode {
            what: "the event payload",
            source,
        })?;
        NotificationEvent {
            payload: Some(payload),
            project_key: out.project_key,
            notification: out.name,
            user_id: actor.user_id.clone(),
            username: actor.username.clone(),
            ..Default::default()
        }
        .into_event(t)
        .map_err(|e| WebhooksError::invalid(e.field.unwrap_or_default(), e.message))
    }
}

/// A delivery to create: one event for one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub notification: NotificationId,
    pub seq: Seq,
    pub event_id: String,
    /// Its key when the notification is ordered per key (the value of the
    /// notification's `ordered_by` field in the event, empty when the
    /// event has none), else empty.
    pub order_key: String,
}

/// The outcome of one attempt, to record.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub delivery: DeliveryId,
    pub notification: NotificationId,
    /// Who made the attempt (the claimant of [`Claim`]): its lease on the
    /// delivery ends with the result, whatever the result.
    pub claimant: String,
    /// Attempts made so far, this one included (its number).
    pub attempts: i64,
    /// Attempts of the current round, this one included: the result counts
    /// only if the delivery is still at `tries - 1` (not redelivered while
    /// the attempt was in flight).
    pub tries: i64,
    /// `Pending` (with `next_attempt_at`) for a retry, else how it ended.
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<i64>,
    pub at: i64,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The start of the response body.
    pub response: Option<String>,
    /// `Some(true)` when the endpoint failed, `Some(false)` when it
    /// succeeded, `None` when it was not reached through no fault of its own.
    pub endpoint_failed: Option<bool>,
    /// The receiver answered `410 Gone` (it wants no more calls): the
    /// notification is disabled at once, whatever `disable_after` says.
    pub gone: bool,
}

impl AttemptResult {
    /// Whether this failed attempt disables its enabled notification, which
    /// has been failing since `failing_since` (unix ms).
    pub(crate) fn disables(&self, failing_since: i64, disable_after_ms: i64) -> bool {
        self.gone || self.at - failing_since >= disable_after_ms
    }

    /// Why this failed attempt disabled its notification (see
    /// [`AttemptResult::disables`]).
    pub(crate) fn disabled_reason(&self, failing_since: i64) -> String {
        if self.gone {
            return "disabled: the receiver answered 410 Gone".to_owned();
        }
        format!(
            "disabled after failing continuously since {}",
            crate::time::to_datetime(failing_since).to_rfc3339()
        )
    }
}

/// What recording an attempt changed besides the delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordAck {
    /// The notification was disabled by this failure (failing for
    /// `disable_after`, or answered `410 Gone`).
    pub disabled: bool,
    /// The result was not recorded: the delivery was deleted or redelivered
    /// while the attempt was in flight.
    pub superseded: bool,
}

/// A worker's request for deliveries to send now, for one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub notification: NotificationId,
    /// Who claims: the instance's id. Its leases are renewed, released and
    /// ended by a result under this name.
    pub claimant: String,
    /// One at a time in log order: the oldest pending delivery, if it is due
    /// and no one holds it, else nothing (it holds back the later ones).
    pub ordered: bool,
    /// Ordered per key: a pending delivery is handed out only while no
    /// earlier one of its key (`NewDelivery::order_key`) is pending (in
    /// flight or waiting for a retry); keys go in parallel, within the
    /// leases' limit. Not with `ordered`.
    pub per_key: bool,
    /// Most deliveries wanted now.
    pub want: usize,
    /// Most deliveries of this notification leased at once, by every
    /// claimant together (the endpoint's concurrency).
    pub max_leased: usize,
    /// The claimant's clock, unix ms: a lease ending at or before it binds
    /// no one any more.
    pub now: i64,
    /// When the leases taken end unless renewed.
    pub until: i64,
}

/// What a [`Claim`] got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimed {
    /// Leased to the claimant, in the order to send them (due time, then
    /// id; log order when ordered).
    pub due: Vec<Due>,
    /// When a claim may get more (the next pending delivery falls due, or a
    /// lease ends), if known; a change (a new delivery, a result) may make
    /// it sooner.
    pub next_at: Option<i64>,
}

/// A delivery leased to be sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub id: DeliveryId,
    pub seq: Seq,
    pub event_id: String,
    pub attempts: i64,
    pub tries: i64,
    pub next_attempt_at: i64,
}

/// A delivery as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event_id: String,
    pub event_seq: Seq,
    pub status: DeliveryStatus,
    /// Attempts made, over every round of redelivery.
    pub attempts: i64,
    /// Attempts of the current round (since the last redelivery).
    pub tries: i64,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One recorded attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt of the delivery.
    pub n: i64,
    pub at: i64,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response: Option<String>,
}

/// An event waiting in the outbox, as its stored JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: i64,
    pub event: String,
}

/// What one purge step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Deliveries deleted (with their attempts).
    pub deliveries: u64,
    /// Whether there may be more to delete.
    pub more: bool,
}

/// A notification's recent health, read in one snapshot: its attempts made
/// since a time (successes among them, their 95th percentile latency) and
/// its deliveries pending and failed now, counted exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Health {
    pub attempts: u64,
    pub succeeded: u64,
    /// The nearest-rank 95th percentile of the attempts' latencies: the
    /// smallest latency at least 95 % of them do not exceed. `None` without
    /// an attempt.
    pub p95_latency_ms: Option<i64>,
    pub pending: u64,
    pub failed: u64,
}

/// The nearest-rank 95th percentile of `sorted` (ascending); what a backend
/// that cannot compute it in its query uses, so that every backend agrees
/// with PostgreSQL's `percentile_disc(0.95)`.
pub fn p95(sorted: &[i64]) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    // ceil(0.95 × n), in integers: the rank, from 1.
    let rank = (sorted.len() * 95).div_ceil(100);
    Some(sorted[rank.max(1) - 1])
}

#[cfg(test)]
mod health_tests {
    use super::p95;

    #[test]
    fn p95_is_the_nearest_rank() {
        assert_eq!(p95(&[]), None);
        assert_eq!(p95(&[7]), Some(7));
        let twenty: Vec<i64> = (1..=20).collect();
        assert_eq!(p95(&twenty), Some(19));
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(p95(&hundred), Some(95));
        assert_eq!(p95(&[1, 2, 3, 4, 5]), Some(5));
    }
}
