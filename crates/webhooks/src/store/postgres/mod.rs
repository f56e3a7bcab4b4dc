//! The PostgreSQL [`NotificationStore`]: notifications (headers and secrets
//! sealed), deliveries, attempts, the outbox and the dispatcher's position
//! in tables `webhook_*` of a database that several instances may share.
//!
//! The plumbing is the store crate's (`cds_events_store::pg`): a pool of
//! connections, the layout applied under an advisory lock ([`schema`]), and
//! a `LISTEN` connection. Here is the SQL: the notification rows
//! ([`notifications`]), the deliveries and the outbox ([`deliveries`]),
//! the lead ([`lead`]), claims and leases ([`claims`]), attempt results
//! committed in groups ([`record`]), and how the mirror follows the
//! database ([`follow`]).
//!
//! How the trait's promises hold on a shared database:
//! - **One transaction per change and its consequences**, as on SQLite: a
//!   notification change with its outbox event; a batch of deliveries with
//!   the position; an automatic disabling with its event.
//! - **The cap and unique names**: a creation takes
//!   `pg_advisory_xact_lock(PROJECT_LOCK, hashtext(project))` before
//!   counting, so creations in one project are serialized across every
//!   instance (creations in other projects do not wait); names are also a
//!   unique constraint, which a rename runs into. A lock per project was
//!   chosen over SERIALIZABLE: no retry loop, and nothing else pays for it.
//! - **Nothing for a deleted notification**: a batch of deliveries and a
//!   group of results first lock the rows of their notifications
//!   (`FOR KEY SHARE`, which only a deletion waits for) and leave out the
//!   missing ones, so a deletion commits before them or after them, never
//!   in between.
//! - **The mirror in commit order**: this instance's changes run, commit
//!   and tell the mirror under one lock (the `Ordered` state); other
//!   instances' changes are announced by `pg_notify` in their transaction
//!   and read back by [`follow`] under the same lock, which tells the
//!   mirror only what differs from what it was last told.
//! - **One dispatcher**: the lead is a session-level advisory lock on a
//!   connection of its own, which dies with its session; each holder takes
//!   the next term, and a batch of deliveries moves the position only under
//!   the latest term ([`lead`]).
//! - **Each attempt by one instance**: claims of a notification are
//!   serialized by a transaction-level advisory lock, rows picked
//!   `FOR UPDATE SKIP LOCKED` and leased to the claimant until a result,
//!   a release or the lease's end ([`claims`]); new deliveries are
//!   announced on [`schema::DUE_CHANNEL`] so that every instance's workers
//!   claim them.
//! - **Sealed at rest** with the keyring the store was opened with. On a
//!   shared database every instance must have the same key: the facade
//!   requires a configured one (`Keyring::configured`). A file-managed ring
//!   works for one instance and can be rotated ([`NotificationStore::rotate_key`]);
//!   a configured one is rotated by changing the configuration (the README
//!   says how), and `rotate_key` refuses it.
//!
//! PostgreSQL's errors become [`WebhooksError`]s here and nowhere else: the
//! database away ([`cds_events_store::Error::is_unavailable`]) is
//! [`WebhooksError::Unavailable`], anything else [`WebhooksError::Backend`].
//! Nothing outside this folder names `tokio_postgres`.

mod claims;
mod deliveries;
mod follow;
mod health;
mod lead;
mod notifications;
mod record;
mod schema;

use super::{
    Attempt, AttemptResult, Claim, Claimed, Delivery, DeliveryId, Edit, Health, Lead, Mirror,
    NewDelivery, NotificationId, NotificationRecord, NotificationStore, OutboxEntry, Purged,
    RecordAck, StoreOptions,
};
use crate::crypto::{KeySource, Keyring};
use crate::error::WebhooksError;
use crate::model::{Actor, DeliveryStatus};
use async_trait::async_trait;
use cds_events_log::Seq;
use cds_events_model::ProjectKey;
use cds_events_store::pg::deadpool_postgres::Object;
use cds_events_store::pg::{PgOptions, PgPool, tokio_postgres};
use follow::Ordered;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// For `?` in this folder's SQL; the driver's error is kept, boxed, and the
/// database away is told apart.
impl From<tokio_postgres::Error> for WebhooksError {
    fn from(e: tokio_postgres::Error) -> Self {
        cds_events_store::Error::from(e).into()
    }
}

/// What the store's parts share: the pool, the ordered state, the mirror.
pub(super) struct Shared {
    pool: PgPool,
    /// For the connections of its own that the lead takes.
    options: PgOptions,
    /// The keyring and what the mirror was last told: every change that
    /// tells the mirror holds it from its transaction's start to the telling.
    ordered: tokio::sync::Mutex<Ordered>,
    mirror: Arc<dyn Mirror>,
    disable_after_ms: i64,
}

impl Shared {
    /// A connection from the pool.
    async fn conn(&self) -> Result<Object, WebhooksError> {
        Ok(self.pool.get().await?)
    }
}

/// A webhooks store in a PostgreSQL database, which other instances may
/// share.
pub struct PgStore {
    shared: Arc<Shared>,
    epoch: String,
    recorder: record::Recorder,
    follower: follow::Follower,
    closed: AtomicBool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's Debug shows no URL (it may hold a password).
        f.debug_struct("PgStore")
            .field("pool", &self.shared.pool)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, creates or migrates the `webhooks` tables (once, however
    /// many instances start together), re-seals values written under a
    /// previous key, tells `mirror` of every stored notification, then
    /// follows the changes other instances make.
    pub async fn open(
        options: &PgOptions,
        keyring: Keyring,
        mirror: Arc<dyn Mirror>,
        store_options: StoreOptions,
    ) -> Result<PgStore, WebhooksError> {
        let pool = PgPool::connect(options).await?;
        schema::LAYOUT.apply(&pool).await?;
        let epoch = {
            let conn = pool.get().await?;
            conn.execute(
                "INSERT INTO webhook_state (epoch) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&super::random_epoch()],
            )
            .await?;
            conn.query_one("SELECT epoch FROM webhook_state", &[])
                .await?
                .try_get(0)?
        };
        let resealed = {
            let mut conn = pool.get().await?;
            let tx = conn.transaction().await?;
            let n = notifications::reseal(&tx, &keyring, false).await?;
            tx.commit().await?;
            n
        };
        if resealed > 0 {
            tracing::info!(
                values = resealed,
                "re-sealed webhook secrets under the current key"
            );
        }
        let keyring = if keyring.has_previous() && matches!(keyring.source, KeySource::File(_)) {
            // Every value is under the current key now (an interrupted
            // rotation is finished here).
            keyring.pruned()?
        } else {
            keyring
        };
        let mut ordered = Ordered::new(keyring);
        {
            let conn = pool.get().await?;
            let all = notifications::load_all(&**conn, &ordered.keyring).await?;
            ordered.open(mirror.as_ref(), all)?;
        }
        let shared = Arc::new(Shared {
            pool,
            options: options.clone(),
            ordered: tokio::sync::Mutex::new(ordered),
            mirror,
            disable_after_ms: crate::time::millis(store_options.disable_after),
        });
        Ok(PgStore {
            recorder: record::Recorder::spawn(Arc::clone(&shared)),
            follower: follow::Follower::spawn(Arc::clone(&shared), options.clone()),
            shared,
            epoch,
            closed: AtomicBool::new(false),
        })
    }

    /// The store, unless closed.
    fn open_shared(&self) -> Result<&Shared, WebhooksError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(WebhooksError::Closed);
        }
        Ok(&self.shared)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Not closed: at least stop following.
        self.follower.stop();
    }
}

#[async_trait]
impl NotificationStore for PgStore {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    async fn create_notification(
        &self,
        n: NotificationRecord,
        limit: usize,
        actor: &Actor,
    ) -> Result<NotificationRecord, WebhooksError> {
        self.open_shared()?
            .create_notification(n, limit, actor)
            .await
    }

    async fn update_notification(
        &self,
        project: &ProjectKey,
        name: &str,
        edit: Edit,
        actor: &Actor,
    ) -> Result<NotificationRecord, WebhooksError> {
        self.open_shared()?
            .update_notification(project, name, edit, actor)
            .await
    }

    async fn delete_notification(
        &self,
        project: &ProjectKey,
        name: &str,
        actor: &Actor,
    ) -> Result<(), WebhooksError> {
        self.open_shared()?
            .delete_notification(project, name, actor)
            .await
    }

    async fn position(&self) -> Result<Option<Seq>, WebhooksError> {
        self.open_shared()?.position().await
    }

    async fn start_position(&self, head: Seq) -> Result<Seq, WebhooksError> {
        self.open_shared()?.start_position(head).await
    }

    async fn lead(&self, instance: &str) -> Result<Lead, WebhooksError> {
        self.open_shared()?.lead(instance).await
    }

    async fn create_deliveries(
        &self,
        lead: &Lead,
        batch: Vec<NewDelivery>,
        position: Seq,
    ) -> Result<(), WebhooksError> {
        self.open_shared()?
            .create_deliveries(lead, batch, position)
            .await
    }

    async fn claim(&self, claim: Claim) -> Result<Claimed, WebhooksError> {
        self.open_shared()?.claim(&claim).await
    }

    async fn renew(
        &self,
        claimant: &str,
        ids: Vec<DeliveryId>,
        until: i64,
    ) -> Result<(), WebhooksError> {
        let ids: Vec<i64> = ids.iter().map(|d| d.0).collect();
        self.open_shared()?.renew(claimant, &ids, until).await
    }

    async fn release(&self, claimant: &str, ids: Vec<DeliveryId>) -> Result<(), WebhooksError> {
        let ids: Vec<i64> = ids.iter().map(|d| d.0).collect();
        self.open_shared()?.release(claimant, &ids).await
    }

    async fn record(&self, result: AttemptResult) -> Result<RecordAck, WebhooksError> {
        self.open_shared()?;
        self.recorder.record(result).await
    }

    async fn list_deliveries(
        &self,
        notification: NotificationId,
        statuses: Vec<DeliveryStatus>,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhooksError> {
        self.open_shared()?
            .list_deliveries(notification, &statuses, before, limit)
            .await
    }

    async fn delivery(
        &self,
        notification: NotificationId,
        id: DeliveryId,
    ) -> Result<Option<(Delivery, Vec<Attempt>)>, WebhooksError> {
        self.open_shared()?.delivery(notification, id).await
    }

    async fn redeliver(
        &self,
        notification: NotificationId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, WebhooksError> {
        self.open_shared()?.redeliver(notification, id).await
    }

    async fn redeliver_failed_since(
        &self,
        notification: NotificationId,
        since: i64,
    ) -> Result<u64, WebhooksError> {
        self.open_shared()?
            .redeliver_failed_since(notification, since)
            .await
    }

    async fn purge_step(&self, finished_before: i64) -> Result<Purged, WebhooksError> {
        self.open_shared()?.purge_step(finished_before).await
    }

    async fn health(
        &self,
        notification: NotificationId,
        since: i64,
    ) -> Result<Health, WebhooksError> {
        self.open_shared()?.health(notification, since).await
    }

    async fn pending(&self) -> Result<u64, WebhooksError> {
        self.open_shared()?.pending().await
    }

    async fn retention_hold(&self) -> Result<Option<Seq>, WebhooksError> {
        self.open_shared()?.retention_hold().await
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, WebhooksError> {
        self.open_shared()?.outbox(limit).await
    }

    async fn remove_from_outbox(&self, ids: Vec<i64>) -> Result<(), WebhooksError> {
        self.open_shared()?.remove_from_outbox(&ids).await
    }

    async fn rotate_key(&self) -> Result<usize, WebhooksError> {
        self.open_shared()?.rotate_key().await
    }

    async fn close(&self) -> Result<(), WebhooksError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Err(WebhooksError::Closed);
        }
        // Results already queued are still recorded.
        self.recorder.close().await;
        self.follower.close().await;
        self.shared.pool.close();
        Ok(())
    }
}
