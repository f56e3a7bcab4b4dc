//! Opening the stores the configuration names: the embedded SQLite stores
//! of the data directory (the default), or PostgreSQL, shared by every
//! instance (`storage.postgres_url`).

use crate::ServerError;
use crate::config::Config;
use cds_events_auth::TokenStore;
use cds_events_auth::postgres::PgTokens;
use cds_events_log::postgres::{PgLog, PgLogOptions};
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_log::{EventLog, LogError};
use cds_events_webhooks::Webhooks;
use std::sync::Arc;

/// Opens (creating, migrating) the event log.
pub async fn open_log(config: &Config) -> Result<Arc<dyn EventLog>, ServerError> {
    if let Some(pg) = config.storage.postgres() {
        let log = PgLog::open(&pg, PgLogOptions::default()).await?;
        return Ok(Arc::new(log));
    }
    let opts = SqliteOptions {
        durability: config.storage.durability,
        readers: config.storage.readers,
        recent_bytes: config.storage.recent_cache_mib << 20,
        reader_mmap_bytes: i64::from(config.storage.reader_mmap_mib) << 20,
        ..SqliteOptions::default()
    };
    let data_dir = config.data_dir.clone();
    // SQLite opens, checks and migrates synchronously: off the async workers.
    let log = tokio::task::spawn_blocking(move || SqliteLog::open(&data_dir, opts))
        .await
        .map_err(|e| LogError::Backend(Box::new(e)))??;
    Ok(Arc::new(log))
}

/// Opens the notifications store and its engine (nothing is sent until
/// `run`); on PostgreSQL, `instance` names this process among those sharing
/// it (its lead and its claims go by it).
pub async fn open_webhooks(
    config: &Config,
    instance: &str,
    log: Arc<dyn EventLog>,
) -> Result<Webhooks, ServerError> {
    let mut wc = config.webhooks.clone();
    wc.cloudevents_source = config.cloudevents_source();
    if let Some(pg) = config.storage.postgres() {
        return Ok(Webhooks::open_postgres(&pg, instance, log, wc).await?);
    }
    Ok(Webhooks::open(&config.data_dir, log, wc).await?)
}

/// Opens the token store (tokens, the audit trail, tickets).
pub async fn open_auth(config: &Config) -> Result<TokenStore, ServerError> {
    let ttl = config.auth.ticket_ttl;
    if let Some(pg) = config.storage.postgres() {
        let backend = PgTokens::open(&pg).await?;
        return Ok(TokenStore::with_backend(Arc::new(backend), ttl).await?);
    }
    Ok(TokenStore::open(&config.data_dir, ttl).await?)
}

/// Creates or upgrades every store's tables, then closes them: what
/// `cds-events migrate` runs before a rolling upgrade (each store also
/// migrates when it opens; on PostgreSQL under an advisory lock, so several
/// instances starting together migrate once). Answers the backend's name.
pub async fn migrate(config: &Config) -> Result<&'static str, ServerError> {
    let log = open_log(config).await?;
    // Opened, never run: it takes no lead and claims nothing.
    let webhooks = open_webhooks(config, "migrate", Arc::clone(&log)).await?;
    open_auth(config).await?;
    webhooks.close().await?;
    log.close().await?;
    Ok(config.storage.backend())
}
