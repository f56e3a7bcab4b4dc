//! The SQLite [`NotificationStore`]: `webhooks.db` in the data directory
//! (notifications with their headers and secrets sealed, deliveries,
//! attempts, the outbox and the dispatcher's position).
//!
//! The plumbing is the store crate's (`cds_events_store`): one writer thread
//! makes every change ([`writer`] says what each command does, and groups
//! attempt results into one transaction); a small pool of read-only
//! connections serves the workers' pages of due deliveries and the listings,
//! concurrently with it (WAL readers never block the writer). Here is the
//! SQL: the layout ([`schema`]), the notification rows ([`notifications`]),
//! the deliveries ([`deliveries`]), the claims and their leases
//! ([`claims`]) and the outbox ([`outbox`]). One process owns the file, so
//! it is always the one that leads: [`NotificationStore::lead`] hands the
//! lead to one holder at a time within the process. SQLite's
//! errors become [`WebhooksError`]s here and nowhere else; nothing outside
//! this folder names `rusqlite`.

mod claims;
mod deliveries;
mod health;
mod notifications;
mod outbox;
mod schema;
mod writer;

use super::{
    Attempt, AttemptResult, Claim, Claimed, Delivery, DeliveryId, Edit, Health, Lead, Mirror,
    NewDelivery, NotificationId, NotificationRecord, NotificationStore, OutboxEntry, Purged,
    RecordAck, StoreOptions,
};
use crate::crypto::{KeySource, Keyring};
use crate::error::{WebhooksError, io_err};
use crate::model::{Actor, DeliveryStatus};
use async_trait::async_trait;
use cds_events_log::Seq;
use cds_events_model::ProjectKey;
use cds_events_store::{ReaderPool, Writer};
use rusqlite::Connection;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use writer::{Cmd, WriterCtx};

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "webhooks.db";

const READERS: usize = 4;

/// `webhooks.db`, its writer thread and its readers.
#[derive(Debug)]
pub struct SqliteStore {
    writer: Writer<WriterCtx>,
    readers: ReaderPool,
    epoch: String,
    /// One lead at a time.
    lead: Arc<Semaphore>,
    /// The last lead's term.
    terms: AtomicI64,
}

/// For `?` in this folder's SQL; the driver's error is kept, boxed.
impl From<rusqlite::Error> for WebhooksError {
    fn from(e: rusqlite::Error) -> Self {
        cds_events_store::Error::from(e).into()
    }
}

impl SqliteStore {
    /// Opens (creating) `data_dir/webhooks.db`, re-seals values written
    /// under a previous key, tells `mirror` of every stored notification and
    /// starts the writer thread.
    pub fn open(
        data_dir: &Path,
        keyring: Keyring,
        mirror: Arc<dyn Mirror>,
        options: StoreOptions,
    ) -> Result<SqliteStore, WebhooksError> {
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let path = data_dir.join(DB_FILE);
        let mut conn = cds_events_store::open(&path, &schema::writer_options())?;
        schema::migrate(&conn)?;
        let epoch = match schema::EPOCH.get(&conn)? {
            Some(e) => e,
            None => {
                let e = super::random_epoch();
                schema::EPOCH.set(&conn, &e)?;
                e
            }
        };
        let resealed = notifications::reseal(&mut conn, &keyring, false)?;
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
        let mut live = HashSet::new();
        for n in notifications::load_all(&conn, &keyring)? {
            live.insert(n.id);
            mirror.put(n)?;
        }
        let pending = deliveries::count_pending(&conn)?;
        let mut ctx = WriterCtx {
            conn,
            keyring,
            mirror,
            live,
            disable_after_ms: crate::time::millis(options.disable_after),
            term: 0,
            leases: Default::default(),
            pending: 0,
        };
        ctx.add_pending(pending);
        Ok(SqliteStore {
            writer: Writer::spawn("cds-events-webhooks-writer", 8192, ctx)?,
            readers: ReaderPool::new(&path, READERS, schema::reader_options()),
            epoch,
            lead: Arc::new(Semaphore::new(1)),
            terms: AtomicI64::new(0),
        })
    }

    /// Runs `f` on the writer thread.
    async fn call<T, F>(&self, f: F) -> Result<T, WebhooksError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriterCtx) -> Result<T, WebhooksError> + Send + 'static,
    {
        self.writer
            .request(|reply| {
                Cmd::Call(Box::new(move |ctx: &mut WriterCtx| {
                    let _ = reply.send(f(ctx));
                }))
            })
            .await
    }

    /// Runs `f` on a read connection, off the async runtime.
    async fn read<T, F>(&self, f: F) -> Result<T, WebhooksError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, WebhooksError> + Send + 'static,
    {
        self.readers.with(f).await
    }
}

#[async_trait]
impl NotificationStore for SqliteStore {
    fn epoch(&self) -> &str {
        &self.epoch
    }

    async fn create_notification(
        &self,
        n: NotificationRecord,
        limit: usize,
        actor: &Actor,
    ) -> Result<NotificationRecord, WebhooksError> {
        let actor = actor.clone();
        self.call(move |ctx| ctx.create_notification(n, limit, &actor))
            .await
    }

    async fn update_notification(
        &self,
        project: &ProjectKey,
        name: &str,
        edit: Edit,
        actor: &Actor,
    ) -> Result<NotificationRecord, WebhooksError> {
        let (project, name, actor) = (project.to_owned(), name.to_owned(), actor.clone());
        self.call(move |ctx| ctx.update_notification(&project, &name, edit, &actor))
            .await
    }

    async fn delete_notification(
        &self,
        project: &ProjectKey,
        name: &str,
        actor: &Actor,
    ) -> Result<(), WebhooksError> {
        let (project, name, actor) = (project.to_owned(), name.to_owned(), actor.clone());
        self.call(move |ctx| ctx.delete_notification(&project, &name, &actor))
            .await
    }

    async fn position(&self) -> Result<Option<Seq>, WebhooksError> {
        self.read(deliveries::position).await
    }

    async fn start_position(&self, head: Seq) -> Result<Seq, WebhooksError> {
        self.call(move |ctx| deliveries::start_position(&ctx.conn, head))
            .await
    }

    async fn lead(&self, _instance: &str) -> Result<Lead, WebhooksError> {
        let held = Arc::clone(&self.lead)
            .acquire_owned()
            .await
            .map_err(|_| WebhooksError::Closed)?;
        let term = self.terms.fetch_add(1, Ordering::AcqRel) + 1;
        self.call(move |ctx| {
            ctx.term = term;
            Ok(())
        })
        .await?;
        // Never lost: no other process shares the file.
        Ok(Lead::new(term, CancellationToken::new(), held))
    }

    async fn create_deliveries(
        &self,
        lead: &Lead,
        batch: Vec<NewDelivery>,
        position: Seq,
    ) -> Result<(), WebhooksError> {
        let term = lead.term();
        let r = self
            .writer
            .request(|reply| Cmd::Deliveries {
                term,
                batch,
                position,
                reply,
            })
            .await;
        if matches!(r, Err(WebhooksError::LostLead)) {
            lead.lose();
        }
        r
    }

    async fn claim(&self, claim: Claim) -> Result<Claimed, WebhooksError> {
        self.call(move |ctx| ctx.claim(&claim)).await
    }

    async fn renew(
        &self,
        claimant: &str,
        ids: Vec<DeliveryId>,
        until: i64,
    ) -> Result<(), WebhooksError> {
        let claimant = claimant.to_owned();
        self.call(move |ctx| {
            ctx.renew(&claimant, &ids, until);
            Ok(())
        })
        .await
    }

    async fn release(&self, claimant: &str, ids: Vec<DeliveryId>) -> Result<(), WebhooksError> {
        let claimant = claimant.to_owned();
        self.call(move |ctx| {
            ctx.release(&claimant, &ids);
            Ok(())
        })
        .await
    }

    async fn record(&self, result: AttemptResult) -> Result<RecordAck, WebhooksError> {
        self.writer.request_grouped(|reply| (result, reply)).await
    }

    async fn list_deliveries(
        &self,
        notification: NotificationId,
        statuses: Vec<DeliveryStatus>,
        before: Option<DeliveryId>,
        limit: usize,
    ) -> Result<Vec<Delivery>, WebhooksError> {
        self.read(move |c| deliveries::list(c, notification, &statuses, before, limit))
            .await
    }

    async fn delivery(
        &self,
        notification: NotificationId,
        id: DeliveryId,
    ) -> Result<Option<(Delivery, Vec<Attempt>)>, WebhooksError> {
        self.read(move |c| deliveries::with_attempts(c, notification, id))
            .await
    }

    async fn redeliver(
        &self,
        notification: NotificationId,
        id: DeliveryId,
    ) -> Result<Option<Delivery>, WebhooksError> {
        self.call(move |ctx| ctx.redeliver(notification, id)).await
    }

    async fn redeliver_failed_since(
        &self,
        notification: NotificationId,
        since: i64,
    ) -> Result<u64, WebhooksError> {
        self.call(move |ctx| ctx.redeliver_failed_since(notification, since))
            .await
    }

    async fn purge_step(&self, finished_before: i64) -> Result<Purged, WebhooksError> {
        self.call(move |ctx| deliveries::purge_step(&mut ctx.conn, finished_before))
            .await
    }

    async fn health(
        &self,
        notification: NotificationId,
        since: i64,
    ) -> Result<Health, WebhooksError> {
        self.read(move |c| health::health(c, notification, since))
            .await
    }

    async fn pending(&self) -> Result<u64, WebhooksError> {
        self.call(|ctx| Ok(ctx.pending.max(0) as u64)).await
    }

    async fn retention_hold(&self) -> Result<Option<Seq>, WebhooksError> {
        self.read(deliveries::retention_hold).await
    }

    async fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, WebhooksError> {
        self.read(move |c| outbox::page(c, limit)).await
    }

    async fn remove_from_outbox(&self, ids: Vec<i64>) -> Result<(), WebhooksError> {
        self.call(move |ctx| outbox::remove(&ctx.conn, &ids)).await
    }

    async fn rotate_key(&self) -> Result<usize, WebhooksError> {
        self.call(|ctx| ctx.rotate_key()).await
    }

    async fn close(&self) -> Result<(), WebhooksError> {
        Ok(self.writer.close().await?)
    }
}
