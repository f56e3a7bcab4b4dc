//! Where notifications, deliveries, attempts, the dispatcher's log position
//! and the outbox of Notification events are kept: the
//! [`NotificationStore`] trait, its conformance suite ([`conformance`]) and
//! its backends, one folder each ([`sqlite`] and [`postgres`], running the
//! same suite).
//!
//! The engine holds a store as `Arc<dyn NotificationStore>` and names what
//! it wants done; how it is done (SQL, transactions, a writer thread) stays
//! inside the backend. A backend's own errors become
//! [`WebhooksError::Backend`] inside the backend: no driver type crosses
//! this trait.
//!
//! What every backend must hold to (the suite checks each):
//! - a change and its consequences are one transaction: a notification
//!   change with its Notification event in the outbox; a batch of
//!   deliveries with the dispatcher's position; an automatic disabling
//!   with its event;
//! - the [`Mirror`] it is given hears of every committed notification
//!   change in commit order, and never of one that was not committed;
//! - the per-project cap and the unique names hold under concurrent
//!   creations (on every instance sharing the storage), and a result or a
//!   batch for a notification deleted meanwhile changes nothing;
//! - header values and secrets are sealed at rest with the keyring it was
//!   opened with, and never logged;
//! - one [`Lead`] at a time among the instances sharing the storage, and
//!   the dispatcher's writes only under the latest one;
//! - a claimed delivery is leased to its claimant: no one else claims it
//!   until its result is recorded, it is released, or its lease ends; the
//!   leases of a notification never exceed the claim's `max_leased`, and an
//!   ordered notification's next delivery is not claimed while an earlier
//!   one is pending, nor, ordered per key, while an earlier one of its key
//!   is (other keys are not held back).
//!
//! A store must never send anything, read the log, or decide a retry: it
//! records what the engine decided.

pub mod conformance;
pub mod postgres;
mod records;
pub mod sqlite;

use crate::error::WebhooksError;
use crate::model::{Actor, DeliveryStatus};
use async_trait::async_trait;
/// The one lead type of the project: the sinks' leads are the same.
pub use cds_events_log::Lead;
use cds_events_log::Seq;
use cds_events_model::ProjectKey;
pub use records::{
    Attempt, AttemptResult, Claim, Claimed, Delivery, DeliveryId, Due, Health, NewDelivery,
    NotificationId, NotificationRecord, OutboxEntry, Purged, RecordAck, p95,
};
pub(crate) use records::{stored_format, stored_ordered_by, stored_project};
use std::time::Duration;

/// The storage plumbing's errors (both backends'): a database that is away
/// is told apart, so that the server can answer "retry later".
impl From<cds_events_store::Error> for WebhooksError {
    fn from(e: cds_events_store::Error) -> Self {
        use cds_events_store::Error;
        match e {
            Error::Closed => WebhooksError::Closed,
            Error::Full(msg) => WebhooksError::Full(msg),
            Error::SchemaTooNew { path, found, known } => {
                WebhooksError::SchemaTooNew { path, found, known }
            }
            other if other.is_unavailable() => WebhooksError::Unavailable(Box::new(other)),
            other => WebhooksError::Backend(Box::new(other)),
        }
    }
}

/// Most deliveries (with their attempts) one [`NotificationStore::purge_step`]
/// deletes: a purge never holds the writer that attempt results wait for
/// longer than one such chunk.
pub const PURGE_CHUNK: u64 = 1000;

/// A change to a notification, applied by the store to the notification as
/// it is stored, under its write lock: what the change keeps comes from
/// there, never from a copy read earlier. An error leaves everything as it
/// was.
pub type Edit = Box<dyn FnOnce(&mut NotificationRecord) -> Result<(), WebhooksError> + Send>;

/// The engine's notifications in memory, which a store keeps in step with
/// its commits: told of every stored notification at open, then of every
/// committed change, in commit order, from the one place the store orders
/// its writes. It must not call back into the store.
pub trait Mirror: Send + Sync {
    /// A notification as it now is (opened, created or changed). An error
    /// (one that cannot be used, a row edited by hand) fails the store's
    /// open; after a commit it is only logged.
    fn put(&self, n: NotificationRecord) -> Result<(), WebhooksError>;

    /// A notification was deleted.
    fn remove(&self, id: NotificationId);

    /// A notification started failing at `since`, or (`None`) succeeded
    /// again.
    fn failing_since(&self, id: NotificationId, since: Option<i64>);

    /// These notifications have deliveries due now (created by whichever
    /// instance leads): their workers claim again. Told after the commit;
    /// a store shared by several instances tells every instance's mirror,
    /// and may tell it of every notification now and then, in case a
    /// message was lost.
    fn due(&self, notifications: &[NotificationId]);
}

/// What the store decides by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// A failure at least this long after a notification started failing
    /// disables it.
    pub disable_after: Duration,
}

/// Notifications, deliveries, attempts, the dispatcher's position and the
/// outbox. Shared as `Arc<dyn NotificationStore>`.
#[async_trait]
pub trait NotificationStore: Send + Sync + 'static {
    /// Random, fixed when the store was created: part of every public
    /// delivery id, so that ids from a recreated store never collide with
    /// earlier ones.
    fn epoch(&self) -> &str;

    // Notifications. Each change writes its Notification event (by `actor`)
    // to the outbox in its own transaction, then tells the mirror.

    /// Stores a new notification (`n.id` is ignored) with its
    /// NotificationCreated, unless its project already has `limit`
    /// ([`WebhooksError::TooMany`]) or a notification of that name
    /// ([`WebhooksError::AlreadyExists`]). Returns it with its id.
    async fn create_notification(
        &self,
        n: NotificationRecord,
        limit: usize,
        actor: &Actor,
    ) -> Result<NotificationRecord, WebhooksError>;

    /// Applies `edit` to the notification `name` of `project` and stores the
    /// result with its NotificationUpdated; returns it.
    /// [`WebhooksError::NotFound`] when there is none,
    /// [`WebhooksError::AlreadyExists`] when renamed onto another.
    async fn update_notification(
        &self,
        project: &ProjectKey,
        name: &str,
        edit: Edit,
        actor: &Actor,
    ) -> Result<NotificationRecord, WebhooksError>;

    /// Deletes the notification `name` of `project` with its
    /// NotificationDeleted. Its deliveries stop counting as pending at once
    /// and are deleted later by [`NotificationStore::purge_step`].
    async fn delete_notification(
        &self,
        project: &ProjectKey,
        name: &str,
        actor: &Actor,
    ) -> Result<(), WebhooksError>;

    // The dispatcher, on the instance that leads.

    /// Waits until `instance` holds the lead of this storage (one holder at
    /// a time among every instance sharing it), and returns it. The lead
    /// ends when dropped, or is lost (its holder's connection to the
    /// storage gone), which [`Lead::lost`] tells.
    async fn lead(&self, instance: &str) -> Result<Lead, WebhooksError>;

    /// The last log position the dispatcher turned into deliveries.
    async fn position(&self) -> Result<Option<Seq>, WebhooksError>;

    /// The stored position, after storing `head` as the position when none
    /// was ever stored (the engine's very first open), so that events
    /// appended after the open are never taken for history. Needs no lead:
    /// it only fills an empty place, the first caller wins and every later
    /// one gets what is stored.
    async fn start_position(&self, head: Seq) -> Result<Seq, WebhooksError>;

    /// Creates a batch's deliveries (due now) and moves the position to
    /// `position`, in one transaction: after a crash both happened or
    /// neither did. Deliveries of a notification deleted meanwhile are left
    /// out. Refused ([`WebhooksError::LostLead`], nothing written, `lead`
    /// marked lost) unless `lead` is the latest lead. Then tells the mirror
    /// (every instance's) which notifications have new deliveries.
    async fn create_deliveries(
        &self,
        lead: &Lead,
        batch: Vec<NewDelivery>,
        position: Seq,
    ) -> Result<(), WebhooksError>;

    // The workers, on every instance.

    /// Leases the notification's deliveries to send now to
    /// `claim.claimant` until `claim.until`: pending ones that are due and
    /// that no one holds, by due time (then id), as many as `claim.want`
    /// and the free part of `claim.max_leased` allow; or, when `ordered`,
    /// the oldest pending one if it is due and no one holds it (else none);
    /// or, when `per_key`, as unordered among the pending ones that are the
    /// oldest pending of their key (`NewDelivery::order_key`).
    /// No one else gets a delivery while its lease lasts: until a result for
    /// it is recorded, it is released, or `now` passes the lease's end.
    async fn claim(&self, claim: Claim) -> Result<Claimed, WebhooksError>;

    /// Moves the end of `claimant`'s leases on these deliveries to `until`
    /// (those it still holds: a lease another claimant took over after it
    /// ended stays theirs).
    async fn renew(
        &self,
        claimant: &str,
        ids: Vec<DeliveryId>,
        until: i64,
    ) -> Result<(), WebhooksError>;

    /// Ends `claimant`'s leases on these deliveries (attempts it will not
    /// make): anyone may claim them at once.
    async fn release(&self, claimant: &str, ids: Vec<DeliveryId>) -> Result<(), WebhooksError>;

    /// Records an attempt's result: the delivery's new state and the
    /// attempt; the notification's failure state (cleared by a success, set
    /// by the first failure, told to the mirror); and, for a failure at
    /// least `disable_after` after it started failing, the notification
    /// disabled with its NotificationUpdated (by the system). The
    /// claimant's lease on the delivery ends. Results arriving together may
    /// share a transaction.
    async fn record(&self, result: AttemptResult) -> Result<RecordAck, WebhooksError>;

    // The API.

    /// A notification's deliveries of the given statuses with an id below
    /// `before` (all when `None`), newest first, at most `limit`, read in
    /// one snapshot: a delivery changing status meanwhile is listed once.
    async fn list_deliveries(
        &self,
        notification: NotificationId,
        statuses: Vec<DeliveryStatus>,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhooksError>;

    /// One delivery of a notification with every attempt made for it, in
    /// order, read in one snapshot.
    async fn delivery(
        &self,
        notification: NotificationId,
        id: DeliveryId,
    ) -> Result<Option<(Delivery, Vec<Attempt>)>, WebhooksError>;

    /// Puts a delivery back to pending, due now, with a fresh attempt budget
    /// (its attempts are kept, its id too); returns it as it now is, `None`
    /// when the notification has no such delivery.
    async fn redeliver(
        &self,
        notification: NotificationId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, WebhooksError>;

    /// Redelivers every failed delivery of a notification created at or
    /// after `since`; returns how many.
    async fn redeliver_failed_since(
        &self,
        notification: NotificationId,
        since: i64,
    ) -> Result<u64, WebhooksError>;

    /// The notification's [`Health`]: its attempts made at or after `since`
    /// (failed ones, successes, and successes kept from before a
    /// redelivery) and its deliveries pending and failed now, in one
    /// snapshot. Costs one index range over the deliveries changed since
    /// `since`, not a scan of the notification's history.
    async fn health(
        &self,
        notification: NotificationId,
        since: i64,
    ) -> Result<Health, WebhooksError>;

    /// One small transaction of clean-up: up to [`PURGE_CHUNK`] deliveries
    /// of a deleted notification, or else of those finished (not pending)
    /// and created before `finished_before`.
    async fn purge_step(&self, finished_before: i64) -> Result<Purged, WebhooksError>;

    /// Deliveries pending, those of deleted notifications left out.
    async fn pending(&self) -> Result<u64, WebhooksError>;

    /// The oldest log position still needed: the one after the dispatcher's
    /// position, or the event of the oldest pending delivery of an enabled
    /// notification if that comes first; `None` before any position.
    async fn retention_hold(&self) -> Result<Option<Seq>, WebhooksError>;

    // The outbox.

    /// The oldest events of the outbox, at most `limit`, oldest first.
    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, WebhooksError>;

    /// Removes events from the outbox (once they are in the log).
    async fn remove_from_outbox(&self, ids: Vec<i64>) -> Result<(), WebhooksError>;

    // Keys and life.

    /// Rotates the file-managed master key: the new key is written beside
    /// the old one, every sealed value is re-sealed with it in one
    /// transaction, then the old key leaves the file; no write seals a value
    /// in between. Returns how many values were re-sealed. A key from the
    /// configuration is refused ([`WebhooksError::Unsupported`], saying how
    /// to rotate it): the configuration changes instead.
    async fn rotate_key(&self) -> Result<usize, WebhooksError>;

    /// Finishes queued writes and closes the store; every later call fails
    /// with [`WebhooksError::Closed`].
    async fn close(&self) -> Result<(), WebhooksError>;
}

/// A new store's epoch: 8 random lowercase letters and digits.
fn random_epoch() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}
