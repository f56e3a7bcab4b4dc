//! `webhooks.db`: notifications (headers and secrets sealed), deliveries,
//! attempts and the dispatcher's log position.
//!
//! The plumbing is the store crate's (`cds_events_store`): one writer thread
//! makes every change ([`writer`] says what each command does); a small pool
//! of read-only connections serves the workers' pages of due deliveries and
//! the listings, concurrently with it (WAL readers never block the writer).
//! Here is the SQL: the layout ([`schema`]), the notification rows
//! ([`notifications`]), the deliveries ([`deliveries`]) and the outbox
//! ([`outbox`]). SQLite's errors become [`WebhooksError`]s here and nowhere
//! else.

mod deliveries;
mod notifications;
mod outbox;
mod schema;
pub(crate) mod writer;

use crate::crypto::Keyring;
use crate::error::{WebhooksError, io_err};
use crate::registry::{Notification, Registry};
use cds_events_log::Seq;
use cds_events_store::{ReaderPool, Writer};
pub(crate) use deliveries::DeliveryRow;
use notifications::reseal;
pub(crate) use notifications::{Announce, Edit};
use outbox::outbox_put;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use writer::Cmd;
pub(crate) use writer::{AttemptRecord, NewDelivery, RecordAck, WriterCtx};

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "webhooks.db";

const READERS: usize = 4;

#[derive(Debug)]
pub(crate) struct Store {
    writer: Writer<WriterCtx>,
    readers: ReaderPool,
    /// Random, fixed at creation: part of every public delivery id, so that
    /// ids from a recreated database never collide with earlier ones.
    epoch: String,
}

impl From<cds_events_store::Error> for WebhooksError {
    fn from(e: cds_events_store::Error) -> Self {
        use cds_events_store::Error;
        match e {
            Error::Closed => WebhooksError::Closed,
            Error::SchemaTooNew { path, found, known } => {
                WebhooksError::SchemaTooNew { path, found, known }
            }
            other => WebhooksError::Backend(Box::new(other)),
        }
    }
}

/// For `?` in this crate's SQL; the driver's error is kept, boxed.
impl From<rusqlite::Error> for WebhooksError {
    fn from(e: rusqlite::Error) -> Self {
        cds_events_store::Error::from(e).into()
    }
}

/// A due (or, for ordered notifications, next) delivery.
#[derive(Debug, Clone)]
pub(crate) struct Due {
    pub id: i64,
    pub seq: i64,
    pub event_id: String,
    pub attempts: i64,
    pub tries: i64,
    pub next_attempt_at: i64,
    /// The event's JSON, when fetched with its page.
    pub body: Option<Arc<str>>,
}

impl Store {
    /// Opens (creating) the database, re-seals values written under a
    /// previous key, loads every notification into `registry` and starts the
    /// writer thread.
    pub(crate) fn open(
        data_dir: &Path,
        keyring: Keyring,
        registry: Arc<Registry>,
        disable_after_ms: i64,
    ) -> Result<Store, WebhooksError> {
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let path = data_dir.join(DB_FILE);
        let mut conn = cds_events_store::open(&path, &schema::writer_options())?;
        schema::migrate(&conn)?;
        let epoch = match schema::EPOCH.get(&conn)? {
            Some(e) => e,
            None => {
                let e = random_epoch();
                schema::EPOCH.set(&conn, &e)?;
                e
            }
        };
        let resealed = reseal(&mut conn, &keyring, false)?;
        if resealed > 0 {
            tracing::info!(
                values = resealed,
                "re-sealed webhook secrets under the current key"
            );
        }
        let keyring = if keyring.has_previous()
            && matches!(keyring.source, crate::crypto::KeySource::File(_))
        {
            // Every value is under the current key now (an interrupted
            // rotation is finished here).
            keyring.pruned()?
        } else {
            keyring
        };
        for f in notifications::load_all(&conn, &keyring)? {
            let uid = f.uid.clone();
            let n = Notification::build(f)
                .map_err(|problem| WebhooksError::Compile { uid, problem })?;
            registry.put(n);
        }
        // Rows of deleted notifications waiting for the purge are not pending.
        let pending: i64 = conn.query_row(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'
             AND notification_id NOT IN (SELECT notification_id FROM purge_queue)",
            [],
            |r| r.get(0),
        )?;
        let mut ctx = WriterCtx {
            conn,
            keyring,
            registry,
            disable_after_ms,
            pending: 0,
        };
        ctx.add_pending(pending);
        Ok(Store {
            writer: Writer::spawn("cds-events-webhooks-writer", 8192, ctx)?,
            readers: ReaderPool::new(&path, READERS, schema::reader_options()),
            epoch,
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

    /// Stores the dispatcher's position alone (no delivery to create).
    pub(crate) async fn set_position(&self, position: Seq) -> Result<(), WebhooksError> {
        self.insert_deliveries(Vec::new(), position.0 as i64).await
    }

    pub(crate) async fn insert_deliveries(
        &self,
        rows: Vec<NewDelivery>,
        position: i64,
    ) -> Result<(), WebhooksError> {
        self.writer
            .request(|reply| Cmd::Deliveries {
                rows,
                position,
                reply,
            })
            .await
    }

    pub(crate) async fn record(&self, rec: AttemptRecord) -> Result<RecordAck, WebhooksError> {
        self.writer.request_grouped(|reply| (rec, reply)).await
    }

    /// Finishes queued writes and closes the database.
    pub(crate) async fn close(&self) -> Result<(), WebhooksError> {
        Ok(self.writer.close().await?)
    }

    pub(crate) async fn position(&self) -> Result<Option<i64>, WebhooksError> {
        self.read(|c| Ok(schema::POSITION.get(c)?)).await
    }

    /// The public id of a delivery (also its `webhook-id`).
    pub(crate) fn delivery_uid(&self, id: i64) -> String {
        format!("msg_{}{id}", self.epoch)
    }

    /// The row id of a public delivery id of this database.
    pub(crate) fn delivery_row(&self, uid: &str) -> Option<i64> {
        uid.strip_prefix("msg_")?
            .strip_prefix(self.epoch.as_str())?
            .parse()
            .ok()
    }
}

fn random_epoch() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}
