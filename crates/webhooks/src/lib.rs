//! Project notifications (CDS "notifications", i.e. webhooks): delivered at
//! least once, signed (Standard Webhooks), retried on a schedule, isolated
//! per endpoint.
//!
//! Data flows one way: the [`dispatcher`] follows the event log and records a
//! delivery for every (event, matching notification) pair, durably, with its
//! log position in the same transaction; one [`worker`] per notification
//! claims its due deliveries, sends them and records every attempt; while
//! ingest saturates the machine, [`cds_events_log::pacing`] paces both.
//! Several instances may share a PostgreSQL store: the one holding the
//! store's lead runs the dispatcher ([`lead`]), every instance runs
//! workers, and each delivery is leased to the instance that claimed it
//! while its attempt runs ([`leases`]). Nothing here is called
//! by the ingest path, and this crate knows nothing of HTTP routes: the
//! server maps [`Webhooks`]' methods to them and [`WebhooksError`] to
//! statuses.
//!
//! Storage is a [`store::NotificationStore`]: `webhooks.db` (SQLite, WAL)
//! in the data directory ([`store::sqlite`], [`Webhooks::open`]) or tables
//! in a PostgreSQL database that several instances may share
//! ([`store::postgres`], [`Webhooks::open_postgres`]); headers and signing
//! secrets are encrypted at rest ([`crypto`]).
//!
//! This file is the facade: each method of [`Webhooks`] is one call into the
//! module that owns it (`engine`, `notifications`, `deliveries`, `outbox`,
//! `keys`, `bodies`).

mod bodies;
mod cache;
pub mod config;
pub mod crypto;
mod deliveries;
mod dispatcher;
mod engine;
pub mod error;
mod hold;
mod keys;
mod lead;
mod leases;
pub mod model;
mod notifications;
mod outbox;
mod outgoing;
mod preview;
mod registry;
mod send;
pub mod signing;
pub mod ssrf;
pub mod store;
mod time;
mod worker;

pub use config::WebhooksConfig;
pub use error::{CompileError, WebhooksError};
pub use model::{
    Actor, AttemptOut, CreatedNotificationOut, DeliveryDetail, DeliveryOut, DeliveryPage,
    DeliveryStatus, MASK, NotificationAuth, NotificationFilter, NotificationHealthOut,
    NotificationIn, NotificationOut, OrderedBy, PreviewMatch, PreviewOut, PreviousPublicKey,
    PreviousSecret, PublicKey, PublicKeyOut, SecretOut, SignatureScheme,
};
pub use send::{AttemptOutcome, MAX_RETRY_AFTER, OutcomeKind};
pub use store::sqlite::DB_FILE;

use cds_events_log::{EventLog, Seq};
use cds_events_model::{FullEvent, ProjectKey};
use cds_events_store::pg::PgOptions;
use chrono::{DateTime, Utc};
use engine::Inner;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Most deliveries one listing page returns.
pub const MAX_PAGE: usize = 1000;

/// The webhooks service. Cheap to clone; every clone is the same service.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("registry", &self.inner.registry)
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Opens (creating) `data_dir/webhooks.db` and the keyring, re-encrypting
    /// values written under a previous master key (off the async workers).
    /// Nothing is sent until [`Webhooks::run`], but every event appended
    /// from now on is delivered: the very first open stores the log's head
    /// as the dispatcher's position.
    pub async fn open(
        data_dir: &Path,
        log: Arc<dyn EventLog>,
        config: WebhooksConfig,
    ) -> Result<Webhooks, WebhooksError> {
        let dir = data_dir.to_owned();
        let inner = tokio::task::spawn_blocking(move || Inner::open(&dir, log, config))
            .await
            .map_err(|e| WebhooksError::Backend(Box::new(e)))??;
        Webhooks::started(inner).await
    }

    /// Opens the store in the PostgreSQL database `database` (creating its
    /// tables; several instances may share it). `instance` names this
    /// instance among them, uniquely (its lead and its claims go by it). The
    /// master key must be configured (`key`, the same on every instance):
    /// without it this is a [`WebhooksError::Key`]. Nothing is sent until
    /// [`Webhooks::run`].
    pub async fn open_postgres(
        database: &PgOptions,
        instance: &str,
        log: Arc<dyn EventLog>,
        config: WebhooksConfig,
    ) -> Result<Webhooks, WebhooksError> {
        Webhooks::started(Inner::open_postgres(database, instance, log, config).await?).await
    }

    /// The engine over its open store, whose dispatcher position is set to
    /// the log's head if it never had one (see
    /// [`NotificationStore::start_position`](store::NotificationStore::start_position)).
    async fn started(inner: Inner) -> Result<Webhooks, WebhooksError> {
        let head = *inner.log.head().borrow();
        inner.store.start_position(head).await?;
        Ok(Webhooks {
            inner: Arc::new(inner),
        })
    }

    /// Runs until `shutdown` is cancelled: one worker per notification,
    /// and, whenever this instance holds the store's lead (one instance
    /// among those sharing it; always, with SQLite), the dispatcher and the
    /// purge. Then waits for them: attempts in flight are abandoned (their
    /// claims released, so another instance sends them at once, or this one
    /// at its next start), results already received are recorded before
    /// this returns.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), WebhooksError> {
        self.inner.run(shutdown).await
    }

    /// This instance's name among those sharing the store (`local` with
    /// SQLite).
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Whether this instance holds the store's lead now: its dispatcher
    /// turns events into deliveries and its purge runs (exactly one
    /// instance at a time, within seconds of the last holder's death).
    pub fn is_leader(&self) -> bool {
        self.inner.is_leader()
    }

    /// Finishes queued writes and closes the store (call after
    /// [`Webhooks::run`] returned). Every later call fails with
    /// [`WebhooksError::Closed`].
    pub async fn close(&self) -> Result<(), WebhooksError> {
        self.inner.store.close().await
    }

    /// The project's notifications, by name.
    pub async fn list(&self, project: &ProjectKey) -> Result<Vec<NotificationOut>, WebhooksError> {
        Ok(self.inner.list(project))
    }

    pub async fn get(
        &self,
        project: &ProjectKey,
        name: &str,
    ) -> Result<NotificationOut, WebhooksError> {
        Ok(self.inner.find(project, name)?.out())
    }

    /// Creates a notification with a new signing key (a `whsec_` secret, or
    /// an Ed25519 key pair with `signature: ed25519`); what receivers
    /// verify with is returned (for Ed25519, the public key only).
    pub async fn create(
        &self,
        project: &ProjectKey,
        input: NotificationIn,
        actor: &Actor,
    ) -> Result<CreatedNotificationOut, WebhooksError> {
        self.inner.create(project, input, actor).await
    }

    /// Replaces a notification's name, URL, filters, headers and flags. A
    /// header value `***` keeps the stored value; `enabled`/`ordered` left
    /// out keep theirs. Enabling clears the failure state.
    pub async fn update(
        &self,
        project: &ProjectKey,
        name: &str,
        input: NotificationIn,
        actor: &Actor,
    ) -> Result<NotificationOut, WebhooksError> {
        self.inner.update(project, name, input, actor).await
    }

    /// Which of the project's notifications `event` would be delivered to
    /// if it were ingested now, and why not for the others. Sends and
    /// stores nothing. An event of another project matches none (the HTTP
    /// route refuses it).
    pub fn preview(&self, project: &ProjectKey, event: &FullEvent) -> PreviewOut {
        self.inner.preview(project, event)
    }

    /// Deletes a notification with its deliveries and their attempts.
    pub async fn delete(
        &self,
        project: &ProjectKey,
        name: &str,
        actor: &Actor,
    ) -> Result<(), WebhooksError> {
        self.inner.delete(project, name, actor).await
    }

    /// Enables (clearing the failure state; pending deliveries resume) or
    /// disables (pending deliveries wait) a notification.
    pub async fn set_enabled(
        &self,
        project: &ProjectKey,
        name: &str,
        enabled: bool,
        actor: &Actor,
    ) -> Result<NotificationOut, WebhooksError> {
        self.inner.set_enabled(project, name, enabled, actor).await
    }

    /// The signing secrets a receiver should accept now (for `ed25519`,
    /// the public keys: a private key is never returned).
    pub async fn secret(
        &self,
        project: &ProjectKey,
        name: &str,
    ) -> Result<SecretOut, WebhooksError> {
        self.inner.secret(project, name)
    }

    /// An `ed25519` notification's public key(s), what receivers verify
    /// its `v1a,` signatures with; [`WebhooksError::Unsupported`] for a
    /// symmetric one.
    pub async fn public_key(
        &self,
        project: &ProjectKey,
        name: &str,
    ) -> Result<PublicKeyOut, WebhooksError> {
        self.inner.public_key(project, name)
    }

    /// Replaces the signing key with a new one of the same scheme. The
    /// previous one stays valid (requests carry both signatures) for
    /// `secret_overlap`.
    pub async fn rotate_secret(
        &self,
        project: &ProjectKey,
        name: &str,
        actor: &Actor,
    ) -> Result<SecretOut, WebhooksError> {
        self.inner.rotate_secret(project, name, actor).await
    }

    /// A page of the notification's deliveries, newest first, optionally of
    /// one status. `cursor` is the `next_cursor` of the previous page.
    pub async fn deliveries(
        &self,
        project: &ProjectKey,
        name: &str,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<DeliveryPage, WebhooksError> {
        self.inner
            .deliveries(project, name, status, cursor, limit)
            .await
    }

    /// The notification's health over the last 24 hours: attempts, success
    /// rate, 95th percentile latency, deliveries pending and failed.
    pub async fn health(
        &self,
        project: &ProjectKey,
        name: &str,
    ) -> Result<NotificationHealthOut, WebhooksError> {
        self.inner.health(project, name).await
    }

    /// One delivery and every attempt made for it.
    pub async fn delivery(
        &self,
        project: &ProjectKey,
        name: &str,
        delivery_id: &str,
    ) -> Result<DeliveryDetail, WebhooksError> {
        self.inner.delivery(project, name, delivery_id).await
    }

    /// Sends a delivery again: back to pending, due now, with a fresh attempt
    /// budget; its attempt history is kept and its `webhook-id` is the same.
    pub async fn redeliver(
        &self,
        project: &ProjectKey,
        name: &str,
        delivery_id: &str,
    ) -> Result<DeliveryOut, WebhooksError> {
        self.inner.redeliver(project, name, delivery_id).await
    }

    /// Redelivers every failed delivery created since `since`; returns how
    /// many.
    pub async fn redeliver_failed_since(
        &self,
        project: &ProjectKey,
        name: &str,
        since: DateTime<Utc>,
    ) -> Result<u64, WebhooksError> {
        self.inner
            .redeliver_failed_since(project, name, since)
            .await
    }

    /// Deletes finished deliveries older than
    /// [`WebhooksConfig::keep_deliveries`] and every delivery of deleted
    /// notifications, in small transactions with a pause between them so
    /// that attempt results interleave. Runs every minute while this
    /// instance leads; returns how many deliveries went.
    pub async fn purge(&self) -> Result<u64, WebhooksError> {
        self.inner.purge().await
    }

    /// Deliveries waiting to be sent (the
    /// `cds_events_webhook_deliveries_pending` gauge).
    pub async fn pending(&self) -> Result<u64, WebhooksError> {
        self.inner.store.pending().await
    }

    /// The oldest event the engine still needs from the log (retention must
    /// keep it and every later one): the first event the dispatcher has not
    /// read yet, or the event of the oldest pending delivery of an enabled
    /// notification, whichever comes first. A disabled notification holds
    /// nothing: its deliveries pending past the retention are cancelled when
    /// it is enabled again, and dead letters can be redelivered only while
    /// their event is kept.
    pub async fn retention_hold(&self) -> Result<Option<Seq>, WebhooksError> {
        self.inner.store.retention_hold().await
    }

    /// Sends a signed ping (type `Ping`, not stored) to the endpoint now,
    /// whether the notification is enabled or not, and returns the outcome.
    pub async fn test(
        &self,
        project: &ProjectKey,
        name: &str,
    ) -> Result<AttemptOutcome, WebhooksError> {
        self.inner.test(project, name).await
    }

    /// Rotates the file-managed master key: a new key is written to the
    /// keyring file beside the old one, every sealed value is re-encrypted
    /// in one transaction, then the old key is dropped from the file. With
    /// a configured key this is refused: set a new `key` and move the old one
    /// into `previous_keys`.
    pub async fn rotate_key(&self) -> Result<(), WebhooksError> {
        self.inner.rotate_key().await
    }
}
