//! Project notifications (CDS "notifications", i.e. webhooks): delivered at
//! least once, signed (Standard Webhooks), retried on a schedule, isolated
//! per endpoint.
//!
//! Data flows one way: the [`dispatcher`] follows the event log and records a
//! delivery for every (event, matching notification) pair, durably, with its
//! log position in the same transaction; one [`worker`] per notification
//! sends its due deliveries and records every attempt; while ingest saturates
//! the machine, [`cds_events_log::pacing`] paces both. Nothing here is called
//! by the ingest path, and this crate knows nothing of HTTP routes: the
//! server maps [`Webhooks`]' methods to them and [`WebhooksError`] to
//! statuses.
//!
//! Storage is `webhooks.db` (SQLite, WAL) in the data directory; headers and
//! signing secrets are encrypted at rest ([`crypto`]).

mod cache;
pub mod config;
pub mod crypto;
mod dispatcher;
pub mod error;
mod hold;
pub mod model;
mod registry;
mod send;
pub mod signing;
pub mod ssrf;
mod store;
mod time;
mod worker;

pub use config::WebhooksConfig;
pub use error::WebhooksError;
pub use model::{
    Actor, AttemptOut, Created, DeliveryOut, DeliveryPage, DeliveryStatus, MASK, NotificationAuth,
    NotificationFilter, NotificationIn, NotificationOut, PreviousSecret, SecretOut,
};
pub use send::{AttemptOutcome, MAX_RETRY_AFTER, OutcomeKind};
pub use store::DB_FILE;

use cds_events_log::{EventLog, NewEvent, Seq};
use cds_events_model::{EventType, NotificationEvent, Payload};
use chrono::{DateTime, Utc};
use registry::{Fields, Notification, Registry};
use serde::Serialize;
use signing::SigningSecret;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use store::Due;
use time::now_ms;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Event bodies kept in memory for fresh deliveries.
const EVENT_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// How often finished deliveries and deleted notifications' rows are purged.
const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// How often events left in the outbox are tried again.
const OUTBOX_RETRY: std::time::Duration = std::time::Duration::from_secs(5);
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

pub(crate) struct Inner {
    pub(crate) config: WebhooksConfig,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) store: store::Store,
    pub(crate) registry: Arc<Registry>,
    pub(crate) sender: send::Sender,
    pub(crate) cache: cache::EventCache,
    /// Log reads in flight from this engine: at most one, so that a backlog
    /// being sent never holds more than one of the log's reader connections
    /// that queries and streams also wait for.
    pub(crate) log_reads: tokio::sync::Semaphore,
    /// Ingest first: paces the dispatcher and the workers while the machine
    /// is saturated and events are being ingested.
    pub(crate) pressure: cds_events_log::pacing::Pacing,
    /// One outbox flush at a time.
    outbox_flush: tokio::sync::Mutex<()>,
    running: Mutex<Option<(TaskTracker, CancellationToken)>>,
}

/// One delivery with its attempts.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryDetail {
    pub delivery: DeliveryOut,
    pub attempts: Vec<AttemptOut>,
}

impl Webhooks {
    /// Opens (creating) `data_dir/webhooks.db` and the keyring, re-encrypting
    /// values written under a previous master key. Nothing is sent until
    /// [`Webhooks::run`].
    pub fn open(
        data_dir: &Path,
        log: Arc<dyn EventLog>,
        config: WebhooksConfig,
    ) -> Result<Webhooks, WebhooksError> {
        if config.retry_schedule.is_empty() {
            return Err(WebhooksError::invalid(
                "retry_schedule",
                "needs at least one entry (the delay before the first attempt)",
            ));
        }
        std::fs::create_dir_all(data_dir).map_err(error::io_err(data_dir))?;
        let keyring =
            crypto::Keyring::load(data_dir, config.key.as_deref(), &config.previous_keys)?;
        let registry = Arc::new(Registry::default());
        let disable_after_ms = time::millis(config.disable_after);
        let store = store::Store::open(data_dir, keyring, Arc::clone(&registry), disable_after_ms)?;
        let sender = send::Sender::new(&config)?;
        Ok(Webhooks {
            inner: Arc::new(Inner {
                config,
                log,
                store,
                registry,
                sender,
                cache: cache::EventCache::new(EVENT_CACHE_BYTES),
                log_reads: tokio::sync::Semaphore::new(1),
                pressure: cds_events_log::pacing::Pacing::new(
                    "webhook deliveries",
                    "cds_events_webhook_yield_rate",
                ),
                outbox_flush: tokio::sync::Mutex::new(()),
                running: Mutex::new(None),
            }),
        })
    }

    /// Runs the dispatcher and one worker per notification until `shutdown`
    /// is cancelled, then waits for them: attempts in flight are abandoned
    /// (and sent again at the next start), results already received are
    /// recorded before this returns.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), WebhooksError> {
        let tracker = TaskTracker::new();
        {
            let mut running = self.inner.lock_running();
            if running.is_some() {
                return Err(WebhooksError::Unsupported(
                    "webhooks are already running".into(),
                ));
            }
            *running = Some((tracker.clone(), shutdown.clone()));
        }
        self.inner.start_workers();
        tracker.spawn(dispatcher::run(Arc::clone(&self.inner), shutdown.clone()));
        if self.inner.config.yield_to_ingest {
            let inner = Arc::clone(&self.inner);
            let shutdown = shutdown.clone();
            let policy = cds_events_log::pacing::Policy {
                cpu: inner.config.yield_cpu,
                floor: inner.config.yield_rate,
            };
            tracker.spawn(async move {
                cds_events_log::pacing::control(
                    &inner.pressure,
                    policy,
                    inner.log.as_ref(),
                    shutdown,
                )
                .await
            });
        }
        tracker.spawn({
            let me = self.clone();
            let shutdown = shutdown.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(PURGE_INTERVAL) => {}
                    }
                    match me.purge().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deliveries = n, "webhook deliveries purged"),
                        Err(e) => tracing::warn!(error = %e, "webhook delivery purge failed"),
                    }
                }
            }
        });
        // What a crash or a failing log left in the outbox, then a retry
        // every few seconds.
        tracker.spawn({
            let inner = Arc::clone(&self.inner);
            let shutdown = shutdown.clone();
            async move {
                loop {
                    inner.flush_outbox().await;
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(OUTBOX_RETRY) => {}
                    }
                }
            }
        });
        shutdown.cancelled().await;
        self.inner.lock_running().take();
        tracker.close();
        tracker.wait().await;
        self.inner.registry.reset_workers();
        Ok(())
    }

    /// Finishes queued writes and closes `webhooks.db` (call after
    /// [`Webhooks::run`] returned). Every later call fails with
    /// [`WebhooksError::Closed`].
    pub async fn close(&self) -> Result<(), WebhooksError> {
        self.inner.store.close().await
    }

    /// The project's notifications, by name.
    pub async fn list(&self, project: &str) -> Result<Vec<NotificationOut>, WebhooksError> {
        Ok(self
            .inner
            .registry
            .list(project)
            .iter()
            .map(|n| n.out())
            .collect())
    }

    pub async fn get(&self, project: &str, name: &str) -> Result<NotificationOut, WebhooksError> {
        Ok(self.inner.find(project, name)?.out())
    }

    /// Creates a notification with a new signing secret, returned this once.
    pub async fn create(
        &self,
        project: &str,
        input: NotificationIn,
        actor: &Actor,
    ) -> Result<Created, WebhooksError> {
        model::validate_project(project)?;
        let v = model::validate(input)?;
        let headers = model::resolve_masked(v.headers, &Default::default())?;
        let secret = SigningSecret::generate();
        let text = secret.expose().to_owned();
        let fields = Fields {
            id: 0,
            uid: uuid::Uuid::now_v7().to_string(),
            project: project.to_owned(),
            name: v.name,
            url: v.url.to_string(),
            filters: v.filters,
            headers,
            secret,
            previous: None,
            enabled: v.enabled.unwrap_or(true),
            ordered: v.ordered.unwrap_or(false),
            disabled_reason: None,
            failing_since: None,
            last_modified: now_ms(),
        };
        let limit = self.inner.config.max_per_project;
        let actor = actor.clone();
        let out = self
            .inner
            .store
            .call(move |ctx| {
                // Checked on the writer, where creations are serialized.
                if ctx.registry.list(&fields.project).len() >= limit {
                    return Err(WebhooksError::TooMany {
                        project: fields.project.clone(),
                        limit,
                    });
                }
                let mut n = build(fields)?;
                let tx = ctx.conn.transaction()?;
                n.id = store::write_notification(&tx, &ctx.keyring, &n.fields())?;
                let out = n.out();
                store::outbox_put(
                    &tx,
                    &notification_event(EventType::NotificationCreated, &out, &actor)?,
                )?;
                tx.commit()?;
                ctx.registry.put(n);
                Ok(out)
            })
            .await?;
        self.inner.start_workers();
        self.inner.flush_outbox().await;
        Ok(Created {
            notification: out,
            secret: text,
        })
    }

    /// Replaces a notification's name, URL, filters, headers and flags. A
    /// header value `***` keeps the stored value; `enabled`/`ordered` left
    /// out keep theirs. Enabling clears the failure state.
    pub async fn update(
        &self,
        project: &str,
        name: &str,
        input: NotificationIn,
        actor: &Actor,
    ) -> Result<NotificationOut, WebhooksError> {
        let v = model::validate(input)?;
        let (out, ()) = self
            .inner
            .change(project, name, actor, move |f| {
                f.headers = model::resolve_masked(v.headers, &f.headers)?;
                f.name = v.name;
                f.url = v.url.to_string();
                f.filters = v.filters;
                f.ordered = v.ordered.unwrap_or(f.ordered);
                set_enabled_fields(f, v.enabled.unwrap_or(f.enabled));
                Ok(())
            })
            .await?;
        Ok(out)
    }

    /// Deletes a notification with its deliveries and their attempts.
    pub async fn delete(
        &self,
        project: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<(), WebhooksError> {
        let (project_s, name_s, actor) = (project.to_owned(), name.to_owned(), actor.clone());
        self.inner
            .store
            .call(move |ctx| {
                let cur = ctx
                    .registry
                    .by_name(&project_s, &name_s)
                    .ok_or_else(|| not_found(&project_s, &name_s))?;
                let event = notification_event(EventType::NotificationDeleted, &cur.out(), &actor)?;
                store::delete_notification(ctx, cur.id, &event)?;
                ctx.registry.remove(cur.id);
                Ok(())
            })
            .await?;
        self.inner.flush_outbox().await;
        Ok(())
    }

    /// Enables (clearing the failure state; pending deliveries resume) or
    /// disables (pending deliveries wait) a notification.
    pub async fn set_enabled(
        &self,
        project: &str,
        name: &str,
        enabled: bool,
        actor: &Actor,
    ) -> Result<NotificationOut, WebhooksError> {
        let (out, ()) = self
            .inner
            .change(project, name, actor, move |f| {
                set_enabled_fields(f, enabled);
                Ok(())
            })
            .await?;
        Ok(out)
    }

    /// The signing secrets a receiver should accept now.
    pub async fn secret(&self, project: &str, name: &str) -> Result<SecretOut, WebhooksError> {
        let n = self.inner.find(project, name)?;
        Ok(secret_out(&n.secret, n.previous.as_ref(), now_ms()))
    }

    /// Replaces the signing secret. The previous one stays valid (requests
    /// carry both signatures) for `secret_overlap`.
    pub async fn rotate_secret(
        &self,
        project: &str,
        name: &str,
        actor: &Actor,
    ) -> Result<SecretOut, WebhooksError> {
        let overlap = time::millis(self.inner.config.secret_overlap);
        let (_, secret) = self
            .inner
            .change(project, name, actor, move |f| {
                let now = now_ms();
                f.previous = Some((f.secret.clone(), now + overlap));
                f.secret = SigningSecret::generate();
                Ok(secret_out(&f.secret, f.previous.as_ref(), now))
            })
            .await?;
        Ok(secret)
    }

    /// A page of the notification's deliveries, newest first, optionally of
    /// one status. `cursor` is the `next_cursor` of the previous page.
    pub async fn deliveries(
        &self,
        project: &str,
        name: &str,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<DeliveryPage, WebhooksError> {
        let n = self.inner.find(project, name)?;
        let before =
            match cursor {
                Some(c) => self.inner.store.delivery_row(c).ok_or_else(|| {
                    WebhooksError::invalid("cursor", "not a cursor of this listing")
                })?,
                None => i64::MAX,
            };
        let limit = limit.clamp(1, MAX_PAGE);
        let statuses: Vec<DeliveryStatus> = match status {
            Some(s) => vec![s],
            None => DeliveryStatus::ALL.to_vec(),
        };
        let id = n.id;
        let mut rows = self
            .inner
            .store
            .read(move |c| store::list_deliveries(c, id, &statuses, before, limit + 1))
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more {
            rows.last().map(|r| self.inner.store.delivery_uid(r.id))
        } else {
            None
        };
        Ok(DeliveryPage {
            deliveries: rows.into_iter().map(|r| r.out(&self.inner.store)).collect(),
            next_cursor,
        })
    }

    /// One delivery and every attempt made for it.
    pub async fn delivery(
        &self,
        project: &str,
        name: &str,
        delivery_id: &str,
    ) -> Result<DeliveryDetail, WebhooksError> {
        let n = self.inner.find(project, name)?;
        let row = self.inner.delivery_row(delivery_id)?;
        let nid = n.id;
        let (d, attempts) = self
            .inner
            .store
            .read(move |c| {
                // One snapshot: the row and its attempts agree.
                let tx = c.unchecked_transaction()?;
                let d = store::get_delivery(&tx, nid, row)?;
                let a = match &d {
                    Some(d) => store::list_attempts(&tx, d)?,
                    None => Vec::new(),
                };
                tx.finish()?;
                Ok((d, a))
            })
            .await?;
        let d = d.ok_or_else(|| WebhooksError::NotFound(format!("delivery {delivery_id}")))?;
        Ok(DeliveryDetail {
            delivery: d.out(&self.inner.store),
            attempts,
        })
    }

    /// Sends a delivery again: back to pending, due now, with a fresh attempt
    /// budget; its attempt history is kept and its `webhook-id` is the same.
    pub async fn redeliver(
        &self,
        project: &str,
        name: &str,
        delivery_id: &str,
    ) -> Result<DeliveryOut, WebhooksError> {
        let n = self.inner.find(project, name)?;
        let row = self.inner.delivery_row(delivery_id)?;
        let nid = n.id;
        let d = self
            .inner
            .store
            .call(move |ctx| {
                let now = now_ms();
                let Some(before) = store::get_delivery(&ctx.conn, nid, row)? else {
                    return Ok(None);
                };
                let tx = ctx.conn.transaction()?;
                store::keep_success_as_attempt(&tx, nid, row)?;
                tx.execute(
                    "UPDATE deliveries SET status = 'pending', tries = 0, next_attempt_at = ?3, updated_at = ?3
                     WHERE id = ?1 AND notification_id = ?2",
                    rusqlite::params![row, nid, now],
                )?;
                tx.commit()?;
                if before.status != DeliveryStatus::Pending.as_str() {
                    ctx.add_pending(1);
                }
                store::get_delivery(&ctx.conn, nid, row)
            })
            .await?
            .ok_or_else(|| WebhooksError::NotFound(format!("delivery {delivery_id}")))?;
        self.inner.registry.wake(nid);
        Ok(d.out(&self.inner.store))
    }

    /// Redelivers every failed delivery created since `since`; returns how
    /// many.
    pub async fn redeliver_failed_since(
        &self,
        project: &str,
        name: &str,
        since: DateTime<Utc>,
    ) -> Result<u64, WebhooksError> {
        let n = self.inner.find(project, name)?;
        let nid = n.id;
        let since = since.timestamp_millis();
        let count = self
            .inner
            .store
            .call(move |ctx| {
                let now = now_ms();
                let n = ctx.conn.execute(
                    "UPDATE deliveries SET status = 'pending', tries = 0, next_attempt_at = ?3, updated_at = ?3
                     WHERE notification_id = ?1 AND status = 'failed' AND created_at >= ?2",
                    rusqlite::params![nid, since, now],
                )?;
                ctx.add_pending(n as i64);
                Ok(n as u64)
            })
            .await?;
        if count > 0 {
            self.inner.registry.wake(nid);
        }
        Ok(count)
    }

    /// Deletes finished deliveries older than
    /// [`WebhooksConfig::keep_deliveries`] and every delivery of deleted
    /// notifications, in small transactions with a pause between them so
    /// that attempt results interleave. Runs every minute while running;
    /// returns how many deliveries went.
    pub async fn purge(&self) -> Result<u64, WebhooksError> {
        let keep = time::millis(self.inner.config.keep_deliveries);
        let mut total = 0;
        loop {
            let before = now_ms() - keep;
            let (n, more) = self
                .inner
                .store
                .call(move |ctx| store::purge_step(&mut ctx.conn, before))
                .await?;
            total += n;
            if !more {
                return Ok(total);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Deliveries waiting to be sent (the
    /// `cds_events_webhook_deliveries_pending` gauge).
    pub async fn pending(&self) -> Result<u64, WebhooksError> {
        self.inner
            .store
            .call(|ctx| Ok(ctx.pending.max(0) as u64))
            .await
    }

    /// The oldest event the engine still needs from the log (retention must
    /// keep it and every later one): the first event the dispatcher has not
    /// read yet, or the event of the oldest pending delivery of an enabled
    /// notification, whichever comes first. A disabled notification holds
    /// nothing: its deliveries pending past the retention are cancelled when
    /// it is enabled again, and dead letters can be redelivered only while
    /// their event is kept.
    pub async fn retention_hold(&self) -> Result<Option<Seq>, WebhooksError> {
        let enabled: Vec<i64> = self
            .inner
            .registry
            .all()
            .iter()
            .filter(|n| n.enabled)
            .map(|n| n.id)
            .collect();
        self.inner
            .store
            .read(move |c| store::retention_hold(c, &enabled))
            .await
    }

    /// Sends a signed ping (type `Ping`, not stored) to the endpoint now,
    /// whether the notification is enabled or not, and returns the outcome.
    pub async fn test(&self, project: &str, name: &str) -> Result<AttemptOutcome, WebhooksError> {
        let n = self.inner.find(project, name)?;
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
        Ok(self.inner.sender.send(&n, &msg_id, body.as_bytes()).await)
    }

    /// Rotates the file-managed master key: a new key is written to the
    /// keyring file beside the old one, every sealed value is re-encrypted
    /// in one transaction, then the old key is dropped from the file. With
    /// a configured key this is refused: set a new `key` and move the old one
    /// into `previous_keys`.
    pub async fn rotate_key(&self) -> Result<(), WebhooksError> {
        self.inner
            .store
            .call(|ctx| {
                let rotated = ctx.keyring.rotated()?;
                // From here on new values are sealed with the new key, even
                // if re-sealing fails (the old key stays in the file then,
                // and the next start finishes the job).
                ctx.keyring = rotated;
                let n = store::reseal(&mut ctx.conn, &ctx.keyring, true)?;
                ctx.keyring = ctx.keyring.pruned()?;
                tracing::info!(values = n, "webhooks master key rotated");
                Ok(())
            })
            .await
    }
}

fn build(f: Fields) -> Result<Notification, WebhooksError> {
    let uid = f.uid.clone();
    Notification::build(f).map_err(|problem| WebhooksError::Compile { uid, problem })
}

/// The Notification event of a change, as the service's own.
pub(crate) fn notification_event(
    t: EventType,
    out: &NotificationOut,
    actor: &Actor,
) -> Result<cds_events_model::FullEvent, WebhooksError> {
    let payload = Payload::from_value(out).map_err(|source| WebhooksError::Encode {
        what: "the event payload",
        source,
    })?;
    NotificationEvent {
        payload: Some(payload),
        project_key: out.project_key.clone(),
        notification: out.name.clone(),
        user_id: actor.user_id.clone(),
        username: actor.username.clone(),
        ..Default::default()
    }
    .into_event(t)
    .map_err(|e| WebhooksError::invalid(e.field.unwrap_or_default(), e.message))
}

fn not_found(project: &str, name: &str) -> WebhooksError {
    WebhooksError::NotFound(format!("notification {name} of project {project}"))
}

fn set_enabled_fields(f: &mut Fields, enabled: bool) {
    if enabled && !f.enabled {
        f.disabled_reason = None;
        f.failing_since = None;
    }
    f.enabled = enabled;
}

/// The secrets to accept at `now`: the current one, and the previous one
/// while its overlap lasts.
fn secret_out(
    secret: &SigningSecret,
    previous: Option<&(SigningSecret, i64)>,
    now: i64,
) -> SecretOut {
    SecretOut {
        secret: secret.expose().to_owned(),
        previous: previous
            .filter(|(_, until)| *until > now)
            .map(|(s, until)| PreviousSecret {
                secret: s.expose().to_owned(),
                valid_until: time::to_datetime(*until),
            }),
    }
}

impl Inner {
    fn lock_running(&self) -> std::sync::MutexGuard<'_, Option<(TaskTracker, CancellationToken)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the workers of notifications that have none, when running.
    fn start_workers(self: &Arc<Self>) {
        let running = self.lock_running();
        let Some((tracker, shutdown)) = running.as_ref() else {
            return;
        };
        for handle in self.registry.take_unstarted() {
            tracker.spawn(worker::run(Arc::clone(self), handle, shutdown.clone()));
        }
    }

    fn find(&self, project: &str, name: &str) -> Result<Arc<Notification>, WebhooksError> {
        self.registry
            .by_name(project, name)
            .ok_or_else(|| not_found(project, name))
    }

    fn delivery_row(&self, delivery_id: &str) -> Result<i64, WebhooksError> {
        self.store
            .delivery_row(delivery_id)
            .ok_or_else(|| WebhooksError::NotFound(format!("delivery {delivery_id}")))
    }

    /// Applies `f` to a notification's fields on the writer thread, stores
    /// and indexes the result; answers it with what `f` returned.
    async fn change<F, T>(
        &self,
        project: &str,
        name: &str,
        actor: &Actor,
        f: F,
    ) -> Result<(NotificationOut, T), WebhooksError>
    where
        F: FnOnce(&mut Fields) -> Result<T, WebhooksError> + Send + 'static,
        T: Send + 'static,
    {
        let (project, name, actor) = (project.to_owned(), name.to_owned(), actor.clone());
        let r = self
            .store
            .call(move |ctx| {
                let cur = ctx
                    .registry
                    .by_name(&project, &name)
                    .ok_or_else(|| not_found(&project, &name))?;
                let mut fields = cur.fields();
                let answer = f(&mut fields)?;
                fields.last_modified = now_ms();
                let n = build(fields)?;
                let out = n.out();
                let tx = ctx.conn.transaction()?;
                store::write_notification(&tx, &ctx.keyring, &n.fields())?;
                store::outbox_put(
                    &tx,
                    &notification_event(EventType::NotificationUpdated, &out, &actor)?,
                )?;
                tx.commit()?;
                ctx.registry.put(n);
                Ok((out, answer))
            })
            .await?;
        self.flush_outbox().await;
        Ok(r)
    }

    /// Appends the events waiting in the outbox to the log, oldest first,
    /// and removes them. Every notification change writes its event there
    /// in the change's own transaction, so a crash or a failing log between
    /// the change and the append loses nothing: this runs after each change,
    /// at start and every few seconds. The log ignores an event id it
    /// already has, so an append repeated after a crash stores nothing twice.
    pub(crate) async fn flush_outbox(&self) {
        let _one = self.outbox_flush.lock().await;
        loop {
            let rows = match self.store.read(|c| store::outbox_page(c, 256)).await {
                Ok(rows) if rows.is_empty() => return,
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the notification events outbox");
                    return;
                }
            };
            let mut events = Vec::with_capacity(rows.len());
            for (_, json) in &rows {
                match cds_events_model::decode_stored(json) {
                    Ok(e) => events.push(NewEvent::from(e)),
                    Err(e) => {
                        tracing::error!(error = %e, "an outbox event does not decode; dropped")
                    }
                }
            }
            if let Err(e) = self.log.append(events).await {
                tracing::warn!(error = %e, "cannot append notification events; they stay in the outbox");
                return;
            }
            let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
            if let Err(e) = self
                .store
                .call(move |ctx| store::outbox_remove(&ctx.conn, &ids))
                .await
            {
                tracing::warn!(error = %e, "cannot clear the notification events outbox");
                return;
            }
        }
    }

    /// After a failure disabled a notification: announce it.
    pub(crate) async fn after_auto_disable(&self, id: i64) {
        let Some(n) = self.registry.get(id) else {
            return;
        };
        tracing::warn!(
            project_key = %n.project,
            notification = %n.name,
            reason = n.disabled_reason.as_deref().unwrap_or(""),
            "webhook notification disabled"
        );
        // Its NotificationUpdated was written with the change.
        self.flush_outbox().await;
    }

    /// An event's JSON: from the cache, or else from the log (`None` when the
    /// log no longer has it).
    pub(crate) async fn event_body(
        &self,
        seq: i64,
        event_id: &str,
    ) -> Result<Option<Arc<str>>, WebhooksError> {
        if let Some(b) = self.cache.get(seq) {
            return Ok(Some(b));
        }
        let _permit = self.log_reads.acquire().await;
        Ok(self.log.get(event_id).await?.map(|e| e.json))
    }

    /// Sets the bodies of a page of deliveries: from the cache, the rest in
    /// one read of the log (a backlog larger than the cache would otherwise
    /// cost one log read per delivery). Those left without (a failed read,
    /// an event purged) are looked up again when sent.
    pub(crate) async fn fill_bodies<'a>(&self, page: impl Iterator<Item = &'a mut Due>) {
        let mut missing: Vec<&'a mut Due> = Vec::new();
        for d in page.filter(|d| d.body.is_none()) {
            match self.cache.get(d.seq) {
                Some(b) => d.body = Some(b),
                None => missing.push(d),
            }
        }
        if missing.is_empty() {
            return;
        }
        let seqs = missing.iter().map(|d| Seq(d.seq as u64)).collect();
        let read = {
            let _permit = self.log_reads.acquire().await;
            self.log.read_seqs(seqs).await
        };
        match read {
            Ok(events) => {
                let mut events = events.into_iter().peekable();
                for d in missing {
                    if let Some(e) = events.next_if(|e| e.seq.0 as i64 == d.seq) {
                        d.body = Some(e.json);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read a page of event bodies"),
        }
    }
}
