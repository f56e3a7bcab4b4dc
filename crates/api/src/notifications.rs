//! Project notifications (webhooks) as the API reads and writes them: the
//! notification in CDS's JSON (spec §6), its signing secrets, its
//! deliveries and their attempts.

use crate::format::{ContentMode, EventFormat, OrderedBy, SignatureScheme};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use utoipa::{IntoParams, ToSchema};

/// What a header value is shown as; sent back on update, it keeps the stored
/// value.
pub const MASK: &str = "***";

/// One named filter: the event-type expressions it matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationFilter {
    /// Regular expressions matched, unanchored, against the event type.
    #[serde(default)]
    pub event: Vec<String>,
}

/// Headers added to every request (stored encrypted; shown masked as `***`).
/// `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationAuth {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl fmt::Debug for NotificationAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotificationAuth")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A notification as a client creates or replaces it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationIn {
    /// Unique in the project: letters, digits, `-`, `_`, `.`.
    pub name: String,
    pub webhook_url: String,
    /// Named filters; an event matching any expression of any filter is
    /// delivered. No filters: every event of the project.
    #[serde(default)]
    pub filters: BTreeMap<String, NotificationFilter>,
    /// On update, a header value of `***` keeps the stored one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<NotificationAuth>,
    /// Default `true`; on update, absent keeps the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Deliver one at a time in event order. Default `false`. Not `true`
    /// together with `ordered_by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered: Option<bool>,
    /// Ordering per key: one at a time in event order among the events of
    /// one value of this envelope field (`workflow_run_id`, `workflow` or
    /// `repository`), in parallel across values; events where it is empty
    /// share one key. On update, given with or without `ordered: false` it
    /// sets this mode; `ordered` alone (`true` or `false`) clears it; both
    /// absent keep the current mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered_by: Option<OrderedBy>,
    /// The body sent: `cds` (the full event, the default) or `cloudevents`
    /// (CloudEvents 1.0). On update, absent keeps the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<EventFormat>,
    /// With `cloudevents`: `structured` (the default; the body is the
    /// CloudEvent) or `binary` (`ce-*` headers, the body is the full event).
    /// On update, absent keeps the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_mode: Option<ContentMode>,
    /// `symmetric` (the default: a `whsec_` secret shared with the
    /// receiver) or `ed25519` (a key pair made here; receivers verify with
    /// its public key, `…/public-key`). On update, absent keeps the current
    /// one; another one replaces the key, the old one still signing for the
    /// rotation overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureScheme>,
}

/// A notification as returned: header values masked, secrets absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationOut {
    pub id: String,
    pub project_key: String,
    pub name: String,
    pub last_modified: DateTime<Utc>,
    pub webhook_url: String,
    pub filters: BTreeMap<String, NotificationFilter>,
    pub auth: NotificationAuth,
    pub enabled: bool,
    pub ordered: bool,
    /// The envelope field its deliveries are ordered by (per key), if
    /// they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordered_by: Option<OrderedBy>,
    /// `cds` or `cloudevents`.
    #[serde(default)]
    pub format: EventFormat,
    /// `structured` or `binary` (used with `cloudevents`).
    #[serde(default)]
    pub content_mode: ContentMode,
    /// `symmetric` or `ed25519`: how its requests are signed.
    #[serde(default)]
    pub signature: SignatureScheme,
    /// Why the service turned it off (it kept failing), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed, while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
}

/// A notification just created, with its signing secret (shown this once;
/// managers can read it again at `…/secret`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedNotificationOut {
    #[serde(flatten)]
    pub notification: NotificationOut,
    /// The key receivers check signatures with: the `whsec_…` secret, or
    /// for `ed25519`, the public key `whpk_…` (the private key is never
    /// shown).
    pub secret: String,
}

impl fmt::Debug for CreatedNotificationOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedNotificationOut")
            .field("notification", &self.notification)
            .field("secret", &MASK)
            .finish()
    }
}

/// The signing secrets a receiver should accept now (for `ed25519`, the
/// public keys `whpk_…`: the private keys are never shown).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecretOut {
    /// The secret new requests are signed with.
    pub secret: String,
    /// The secret before the last rotation, while still signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousSecret>,
}

impl fmt::Debug for SecretOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretOut")
            .field("secret", &MASK)
            .field("previous", &self.previous)
            .finish()
    }
}

/// The secret before a rotation, valid (and signed with) until `valid_until`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviousSecret {
    pub secret: String,
    pub valid_until: DateTime<Utc>,
}

impl fmt::Debug for PreviousSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreviousSecret")
            .field("secret", &MASK)
            .field("valid_until", &self.valid_until)
            .finish()
    }
}

/// An `ed25519` notification's public key(s): what a receiver verifies
/// `v1a,` signatures with, in three spellings of the same 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublicKeyOut {
    /// The key new requests are signed with.
    #[serde(flatten)]
    pub current: PublicKey,
    /// The key before the last rotation, while requests are still signed
    /// with it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousPublicKey>,
}

/// One Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PublicKey {
    /// `whpk_` and the base64 of the key (Standard Webhooks' spelling).
    pub public_key: String,
    /// The raw 32 bytes, base64.
    pub base64: String,
    /// SubjectPublicKeyInfo, PEM (`-----BEGIN PUBLIC KEY-----`).
    pub pem: String,
}

/// The public key before a rotation, still signing until `valid_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviousPublicKey {
    #[serde(flatten)]
    pub key: PublicKey,
    pub valid_until: DateTime<Utc>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or for its notification to be enabled).
    Pending,
    Succeeded,
    /// Out of attempts, or refused for good (410 Gone): the dead letters.
    Failed,
    /// Given up without an endpoint failure: the event left the log before it
    /// could be sent, or (`format: cdevents`) it has no CDEvents form.
    Cancelled,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
        DeliveryStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        DeliveryStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One delivery of one event to one notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryOut {
    /// Also the `webhook-id` of every attempt.
    pub id: String,
    pub event_id: String,
    pub event_seq: u64,
    pub status: DeliveryStatus,
    /// Attempts made, over every round of redelivery.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One page of deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryOut>,
    /// Pass back as `cursor` for the next (older) page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A notification's health over the last 24 hours
/// (`…/notification/{name}/health`): its attempts in that time and its
/// deliveries pending and failed now, counted exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NotificationHealthOut {
    /// The start of the window: attempts made at or after it are counted.
    pub since: DateTime<Utc>,
    /// Attempts made in the window (failed, retried or successful).
    pub attempts: u64,
    /// How many of them succeeded.
    pub succeeded: u64,
    /// `succeeded / attempts`, from 0 to 1; absent without an attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<f64>,
    /// The 95th percentile of the attempts' latencies (nearest rank), in
    /// milliseconds; absent without an attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_latency_ms: Option<i64>,
    /// Deliveries waiting to be sent (or sent again).
    pub pending: u64,
    /// Deliveries that gave up, until redelivered or purged.
    pub failed: u64,
}

/// The query string of a delivery listing (`…/deliveries`): what the client
/// sends and the server reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// `pending`, `succeeded`, `failed` or `cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Page size (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptOut {
    /// 1 for the first attempt of the delivery.
    pub n: u32,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

/// One delivery with every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryDetail {
    pub delivery: DeliveryOut,
    pub attempts: Vec<AttemptOut>,
}

/// How many failed deliveries were queued again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RedeliveredOut {
    pub redelivered: u64,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// A 2xx answer.
    Success,
    /// Any other answer.
    HttpError,
    /// No complete answer within the timeout.
    Timeout,
    /// No connection, or the connection failed.
    ConnectError,
    /// The address is not public and private targets are not allowed.
    Refused,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Success => "success",
            OutcomeKind::HttpError => "http_error",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::ConnectError => "connect_error",
            OutcomeKind::Refused => "refused",
        }
    }
}

/// How the endpoint took a signed ping (`…/test`); nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PingOut {
    pub outcome: OutcomeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Milliseconds.
    pub latency: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

/// Which of a project's notifications an example event would be delivered
/// to (`POST …/notification/preview`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviewOut {
    /// The example event's type.
    pub event_type: String,
    /// Every notification of the project, by name.
    pub notifications: Vec<PreviewMatch>,
}

/// Whether one notification would get a delivery for the example event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviewMatch {
    pub name: String,
    pub matches: bool,
    /// The filters with an expression matching the event type (none when
    /// the notification has no filter: it takes every event).
    #[serde(default)]
    pub filters: Vec<String>,
    /// Why not, when it does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
