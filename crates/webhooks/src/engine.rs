//! The engine: the state every part of the service shares ([`Inner`]), how
//! it opens, and the tasks it runs until shutdown (the lead, under which
//! the dispatcher and the purge run; one worker per notification; the
//! renewal of this instance's leases; CPU pacing and the outbox retry).
//!
//! It owns the lifetimes of those tasks and nothing else: what a change of a
//! notification does is in `notifications`, the delivery listings in
//! `deliveries`, and every read or write of `webhooks.db` goes through
//! `store`. It never runs SQL.

use crate::config::WebhooksConfig;
use crate::error::{WebhooksError, io_err};
use crate::leases::Held;
use crate::registry::{Notification, Registry};
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Mirror, NotificationStore, StoreOptions};
use crate::{cache, crypto, lead, leases, send, worker};
use cds_events_log::EventLog;
use cds_events_log::pacing::{Pacing, Policy};
use cds_events_model::ProjectKey;
use cds_events_store::pg::PgOptions;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Event bodies kept in memory for fresh deliveries.
const EVENT_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// The instance name of an engine over SQLite: one process owns the file.
const LOCAL: &str = "local";
/// How often events left in the outbox are tried again.
const OUTBOX_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) struct Inner {
    pub(crate) config: WebhooksConfig,
    /// This instance among those sharing the store: the name its lead and
    /// its claims go by.
    pub(crate) instance: String,
    /// The deliveries this instance's workers claimed and have not
    /// finished: their leases are renewed while they run.
    pub(crate) held: Held,
    /// Whether this instance leads (runs the dispatcher and the purge).
    pub(crate) leading: AtomicBool,
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) store: Arc<dyn NotificationStore>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) sender: send::Sender,
    pub(crate) cache: cache::EventCache,
    /// Log reads in flight from this engine: at most one, so that a backlog
    /// being sent never holds more than one of the log's reader connections
    /// that queries and streams also wait for.
    pub(crate) log_reads: tokio::sync::Semaphore,
    /// Ingest first: paces the dispatcher and the workers while the machine
    /// is saturated and events are being ingested.
    pub(crate) pressure: Pacing,
    /// One outbox flush at a time.
    pub(crate) outbox_flush: tokio::sync::Mutex<()>,
    running: Mutex<Option<(TaskTracker, CancellationToken)>>,
}

impl Inner {
    /// Opens (creating) `data_dir/webhooks.db` and the keyring, re-encrypting
    /// values written under a previous master key.
    pub(crate) fn open(
        data_dir: &Path,
        log: Arc<dyn EventLog>,
        config: WebhooksConfig,
    ) -> Result<Inner, WebhooksError> {
        check(&config)?;
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let keyring =
            crypto::Keyring::load(data_dir, config.key.as_deref(), &config.previous_keys)?;
        let registry = Arc::new(Registry::default());
        // The store tells the registry of every stored notification now,
        // and of every change from then on.
        let mirror: Arc<dyn Mirror> = registry.clone();
        let store = SqliteStore::open(data_dir, keyring, mirror, store_options(&config))?;
        Inner::assemble(config, LOCAL, log, Arc::new(store), registry)
    }

    /// Opens the store in a PostgreSQL database (creating its tables),
    /// which other instances may share: the master key must then come from
    /// the configuration, the same on every instance, and `instance` names
    /// this one among them.
    pub(crate) async fn open_postgres(
        database: &PgOptions,
        instance: &str,
        log: Arc<dyn EventLog>,
        config: WebhooksConfig,
    ) -> Result<Inner, WebhooksError> {
        check(&config)?;
        let key = config.key.as_deref().ok_or_else(|| {
            WebhooksError::Key(
                "webhooks.key must be set when notifications are stored in PostgreSQL: \
                 every instance seals and opens them with that key (base64 of 32 bytes, \
                 the same on every instance)"
                    .into(),
            )
        })?;
        let keyring = crypto::Keyring::configured(key, &config.previous_keys)?;
        let registry = Arc::new(Registry::default());
        let mirror: Arc<dyn Mirror> = registry.clone();
        let store = PgStore::open(database, keyring, mirror, store_options(&config)).await?;
        Inner::assemble(config, instance, log, Arc::new(store), registry)
    }

    /// The engine over an open store, which tells `registry` of its
    /// notifications.
    fn assemble(
        config: WebhooksConfig,
        instance: &str,
        log: Arc<dyn EventLog>,
        store: Arc<dyn NotificationStore>,
        registry: Arc<Registry>,
    ) -> Result<Inner, WebhooksError> {
        let sender = send::Sender::new(&config)?;
        Ok(Inner {
            config,
            instance: instance.to_owned(),
            held: Held::default(),
            leading: AtomicBool::new(false),
            log,
            store,
            registry,
            sender,
            cache: cache::EventCache::new(EVENT_CACHE_BYTES),
            log_reads: tokio::sync::Semaphore::new(1),
            pressure: Pacing::new("webhook deliveries", "cds_events_webhook_yield_rate"),
            outbox_flush: tokio::sync::Mutex::new(()),
            running: Mutex::new(None),
        })
    }

    /// See [`crate::Webhooks::run`].
    pub(crate) async fn run(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> Result<(), WebhooksError> {
        let tracker = TaskTracker::new();
        {
            let mut running = self.lock_running();
            if running.is_some() {
                return Err(WebhooksError::Unsupported(
                    "webhooks are already running".into(),
                ));
            }
            *running = Some((tracker.clone(), shutdown.clone()));
        }
        self.start_workers();
        // And the workers of notifications added later, here or (heard
        // through the store) on another instance.
        tracker.spawn({
            let inner = Arc::clone(self);
            let shutdown = shutdown.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = inner.registry.added() => inner.start_workers(),
                    }
                }
            }
        });
        // The dispatcher and the purge, while this instance leads.
        tracker.spawn(lead::run(Arc::clone(self), shutdown.clone()));
        tracker.spawn(leases::renew(Arc::clone(self), shutdown.clone()));
        if self.config.yield_to_ingest {
            let inner = Arc::clone(self);
            let shutdown = shutdown.clone();
            let policy = Policy {
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
        // What a crash or a failing log left in the outbox, then a retry
        // every few seconds.
        tracker.spawn({
            let inner = Arc::clone(self);
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
        self.lock_running().take();
        tracker.close();
        tracker.wait().await;
        self.registry.reset_workers();
        Ok(())
    }

    /// Whether this instance leads now.
    pub(crate) fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, Option<(TaskTracker, CancellationToken)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the workers of notifications that have none, when running.
    pub(crate) fn start_workers(self: &Arc<Self>) {
        let running = self.lock_running();
        let Some((tracker, shutdown)) = running.as_ref() else {
            return;
        };
        for handle in self.registry.take_unstarted() {
            tracker.spawn(worker::run(Arc::clone(self), handle, shutdown.clone()));
        }
    }

    /// The notification `name` of `project`, as in memory.
    pub(crate) fn find(
        &self,
        project: &ProjectKey,
        name: &str,
    ) -> Result<Arc<Notification>, WebhooksError> {
        self.registry
            .by_name(project, name)
            .ok_or_else(|| WebhooksError::no_notification(project, name))
    }
}

/// What the configuration must hold whatever the store.
fn check(config: &WebhooksConfig) -> Result<(), WebhooksError> {
    if config.retry_schedule.is_empty() {
        return Err(WebhooksError::invalid(
            "retry_schedule",
            "needs at least one entry (the delay before the first attempt)",
        ));
    }
    if config.lease < std::time::Duration::from_millis(100) {
        return Err(WebhooksError::invalid(
            "lease",
            "must be at least 100ms (a claim is renewed every third of it)",
        ));
    }
    Ok(())
}

fn store_options(config: &WebhooksConfig) -> StoreOptions {
    StoreOptions {
        disable_after: config.disable_after,
    }
}
