//! The service configuration: one struct, defaults, loaded from a TOML file,
//! then `CDS_EVENTS_…` environment variables, then command-line flags (each
//! overriding the one before).

use cds_events_log::sqlite::Durability;
use cds_events_model::Limits;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod mask;
pub use mask::mask_password;

/// Everything `cds-events serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Where the embedded log (and later, keys and tokens) live.
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    pub retention: RetentionConfig,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub http: HttpConfig,
    pub stream: StreamConfig,
    /// Project notifications (webhooks): timeouts, retries, safety, keys.
    pub webhooks: cds_events_webhooks::WebhooksConfig,
    /// How long in-flight requests get to finish after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Events in from a running CDS through its Redis (`event:ui`); off
    /// unless `bridge.cds_redis_url` is set.
    pub bridge: cds_events_bridge::BridgeConfig,
    /// CloudEvents output: the base of every event's `source` attribute
    /// (`cloudevents.source`, default `/cds-events`; set it to the public
    /// URL of the service).
    pub cloudevents: cds_events_model::cloudevents::CloudEventsConfig,
    /// Events out to brokers: one `[[sinks]]` table per sink (none by
    /// default). See `crates/sinks/README.md`.
    pub sinks: Vec<cds_events_sinks::SinkConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `power-loss` (fsync every commit) or `process-crash` (survives the
    /// process being killed; the OS flushes later).
    pub durability: Durability,
    /// Read connections serving queries concurrently (SQLite).
    pub readers: usize,
    /// MiB of the newest events kept in memory, from which the consumers
    /// that follow the head (live streams, webhooks, sinks) read instead of
    /// the database (SQLite). 0 turns it off.
    pub recent_cache_mib: usize,
    /// MiB of the event log's file each read connection reads through a
    /// memory map instead of `pread` calls (SQLite; at most 2047, SQLite's
    /// cap; 0 turns it off). Pages read this way count in the process's
    /// resident memory as file pages (`RssFile`), once per connection.
    pub reader_mmap_mib: u32,
    /// Keep everything instances share (the log, notifications and
    /// deliveries, tokens, the audit trail, tickets) in this PostgreSQL
    /// database instead of the data directory, so that any number of
    /// instances can serve together. A libpq URL
    /// (`postgres://user:password@host:5432/db`) or key/value string. Unset:
    /// embedded SQLite.
    pub postgres_url: Option<String>,
    /// Most PostgreSQL connections each store of this instance opens.
    pub postgres_pool_size: usize,
    /// PostgreSQL cancels a statement running longer than this.
    #[serde(with = "humantime_serde")]
    pub postgres_statement_timeout: Duration,
}

impl StorageConfig {
    /// The PostgreSQL connection settings, when PostgreSQL is configured.
    pub fn postgres(&self) -> Option<cds_events_store::pg::PgOptions> {
        self.postgres_url.as_ref().map(|url| {
            let mut o = cds_events_store::pg::PgOptions::new(url.clone());
            o.pool_size = self.postgres_pool_size;
            o.statement_timeout = Some(self.postgres_statement_timeout);
            o
        })
    }

    /// Which backend the stores use: `sqlite` or `postgresql`.
    pub fn backend(&self) -> &'static str {
        if self.postgres_url.is_some() {
            "postgresql"
        } else {
            "sqlite"
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest request body, bytes (over it: 413).
    pub max_body_bytes: usize,
    /// Most events in one request (over it: 413).
    pub max_batch_events: usize,
    /// Per-event bounds: nesting depth, string and id sizes.
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Page size when the request gives none.
    pub default_limit: usize,
    /// Largest page a request may ask for.
    pub max_limit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Delete events older than this (by event timestamp). Unset: keep forever.
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Keep at most this many events. Unset: no bound.
    pub max_events: Option<u64>,
    /// How often the purge runs.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Events deleted per purge transaction (small, so ingest never waits long).
    pub batch: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Serve `/mon/metrics` without a token (otherwise: an admin token).
    pub public_metrics: bool,
    /// How long a ticket from `POST /v2/auth/ticket` stays valid.
    #[serde(with = "humantime_serde")]
    pub ticket_ttl: Duration,
    /// How long a console session (`POST /v2/auth/session`) lasts at most;
    /// it ends earlier with its token.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Events per second each token may publish (unset: no limit).
    pub publish_rate: Option<u32>,
    /// Events a token may publish at once above its rate (default: one second's worth).
    pub publish_burst: Option<u32>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            public_metrics: false,
            ticket_ttl: Duration::from_secs(30),
            session_ttl: Duration::from_secs(8 * 3600),
            publish_rate: None,
            publish_burst: None,
        }
    }
}

/// Serve HTTPS when both are given (PEM files).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// PEM file of CA certificates: every client must then present a
    /// certificate one of them signed (mutual TLS); unset, none is asked.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request head (request line and headers), bytes; over it the
    /// connection gets 431.
    pub max_header_bytes: usize,
    /// A client that sends no complete request head within this (or, just
    /// connected, nothing at all) is dropped.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A client that takes none of the bytes sent to it for this long (a
    /// stream reader that stopped reading) is dropped.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_header_bytes: 16 * 1024,
            header_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// Live streams (SSE, websockets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Live events queued per connection before it counts as lagging and
    /// catches up from the log instead.
    pub queue: usize,
    /// A connection further behind than this many events is told where to
    /// resume and closed, rather than caught up.
    pub max_catchup: u64,
    /// Comment line sent on an idle SSE stream.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// Websocket ping interval.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// A websocket peer that has sent nothing (not even a pong) for this long,
    /// or that has not taken a write for this long, is closed as dead.
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// A `/v2/ws` connection that has set no filter after this long is closed.
    #[serde(with = "humantime_serde")]
    pub filter_timeout: Duration,
    /// Open streaming connections (SSE and websockets together) at most;
    /// beyond it new ones get 503 with `Retry-After`.
    pub max_connections: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            queue: 1024,
            max_catchup: 1_000_000,
            heartbeat: Duration::from_secs(15),
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(60),
            filter_timeout: Duration::from_secs(60),
            max_connections: 16_384,
        }
    }
}

impl StreamConfig {
    pub fn feed_options(&self) -> cds_events_hub::FeedOptions {
        cds_events_hub::FeedOptions {
            queue: self.queue,
            max_catchup: self.max_catchup,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8090".into(),
            data_dir: PathBuf::from("./cds-events-data"),
            storage: StorageConfig::default(),
            ingest: IngestConfig::default(),
            query: QueryConfig::default(),
            retention: RetentionConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            http: HttpConfig::default(),
            stream: StreamConfig::default(),
            webhooks: cds_events_webhooks::WebhooksConfig::default(),
            shutdown_grace: Duration::from_secs(30),
            bridge: cds_events_bridge::BridgeConfig::default(),
            cloudevents: Default::default(),
            sinks: Vec::new(),
        }
    }
}

/// SQLite's largest memory map on Linux (`SQLITE_MAX_MMAP_SIZE`, just under
/// 2 GiB): a larger `storage.reader_mmap_mib` would be cut silently.
const MAX_READER_MMAP_MIB: u32 = 2047;

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            durability: Durability::default(),
            readers: 4,
            recent_cache_mib: 32,
            reader_mmap_mib: MAX_READER_MMAP_MIB,
            postgres_url: None,
            postgres_pool_size: 16,
            postgres_statement_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 32 * 1024 * 1024,
            max_batch_events: 10_000,
            limits: Limits::default(),
        }
    }
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            default_limit: 100,
            max_limit: 1000,
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age: None,
            max_events: None,
            interval: Duration::from_secs(60),
            batch: 1000,
        }
    }
}

/// Taken from the environment as is: figment would read `123456` or
/// `true` as a number or a boolean, and `007` as 7.
const BRIDGE_PASSWORD_ENV: &str = "CDS_EVENTS_BRIDGE__PASSWORD";

fn is_raw_env_key(key: &str) -> bool {
    key.to_ascii_lowercase().replace("__", ".") == "bridge.password"
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// The checked base of CloudEvents `source` attributes (checked at load;
    /// the default if a hand-built configuration holds a bad one).
    pub fn cloudevents_source(&self) -> cds_events_model::cloudevents::Source {
        self.cloudevents.source().unwrap_or_default()
    }

    /// Loads defaults ← `file` (if given) ← environment (`CDS_EVENTS_…`,
    /// `__` between nested keys: `CDS_EVENTS_STORAGE__DURABILITY`) ← `flags`
    /// (a partial configuration from the command line).
    pub fn load(
        file: Option<&Path>,
        flags: Serialized<serde_json::Value>,
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(
            Env::prefixed("CDS_EVENTS_")
                .split("__")
                .filter(|k| Config::is_env_key(k.as_str()) && !is_raw_env_key(k.as_str())),
        );
        fig = fig.merge(flags);
        let mut config: Config = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        // The documented switch for private webhook targets, outside the
        // `webhooks.` nesting so that it reads as the warning it is.
        if let Ok(p) = std::env::var(BRIDGE_PASSWORD_ENV) {
            config.bridge.password = Some(p);
        }
        if let Ok(v) = std::env::var("CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE") {
            config.webhooks.allow_private = matches!(v.trim(), "1" | "true" | "yes");
        }
        config.validate()?;
        Ok(config)
    }

    /// Environment variables that belong to other parts of the tool (the CLI's
    /// token, say) are not configuration keys of the server.
    fn is_env_key(key: &str) -> bool {
        // Figment hands the filter the key before lowercasing (`STORAGE.DURABILITY`).
        let top = key
            .split(['.'])
            .next()
            .unwrap_or(key)
            .split("__")
            .next()
            .unwrap_or(key)
            .to_ascii_lowercase();
        matches!(
            top.as_str(),
            "listen"
                | "data_dir"
                | "storage"
                | "ingest"
                | "query"
                | "retention"
                | "auth"
                | "tls"
                | "http"
                | "stream"
                | "webhooks"
                | "shutdown_grace"
                | "bridge"
                | "cloudevents"
        )
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.query.max_limit == 0
            || self.query.default_limit == 0
            || self.query.default_limit > self.query.max_limit
        {
            return Err(ConfigError(
                "query.default_limit must be between 1 and query.max_limit".into(),
            ));
        }
        if self.ingest.max_batch_events == 0 || self.ingest.max_body_bytes == 0 {
            return Err(ConfigError("ingest limits must be positive".into()));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError("tls.cert and tls.key go together".into()));
        }
        if self.tls.client_ca.is_some() && self.tls.cert.is_none() {
            return Err(ConfigError(
                "tls.client_ca needs tls.cert and tls.key".into(),
            ));
        }
        if self.auth.publish_rate == Some(0) || self.auth.publish_burst == Some(0) {
            return Err(ConfigError(
                "auth.publish_rate and auth.publish_burst must be positive when set".into(),
            ));
        }
        if self.storage.reader_mmap_mib > MAX_READER_MMAP_MIB {
            return Err(ConfigError(format!(
                "storage.reader_mmap_mib is at most {MAX_READER_MMAP_MIB} (SQLite maps no more)"
            )));
        }
        if self.http.max_header_bytes < 8192 {
            return Err(ConfigError(
                "http.max_header_bytes must be at least 8192".into(),
            ));
        }
        if let Some(url) = &self.storage.postgres_url {
            if url.trim().is_empty() {
                return Err(ConfigError(
                    "storage.postgres_url is empty (leave it unset for embedded SQLite)".into(),
                ));
            }
            if let Err(e) = url.parse::<cds_events_store::pg::tokio_postgres::Config>() {
                // The driver's message never repeats the URL.
                return Err(ConfigError(format!(
                    "storage.postgres_url is not a PostgreSQL URL: {e}"
                )));
            }
            if self.storage.postgres_pool_size == 0 {
                return Err(ConfigError(
                    "storage.postgres_pool_size must be positive".into(),
                ));
            }
        }
        if let Err(e) = self.cloudevents.source() {
            return Err(ConfigError(e.to_string()));
        }
        if self.retention.batch == 0 {
            return Err(ConfigError("retention.batch must be positive".into()));
        }
        let s = &self.stream;
        if s.ping_interval.is_zero() || s.ping_timeout <= s.ping_interval {
            return Err(ConfigError(
                "stream.ping_timeout must be longer than stream.ping_interval (both positive)"
                    .into(),
            ));
        }
        if s.heartbeat.is_zero() || s.filter_timeout.is_zero() || s.queue == 0 {
            return Err(ConfigError(
                "stream.heartbeat, stream.filter_timeout and stream.queue must be positive".into(),
            ));
        }
        if s.max_connections == 0 {
            return Err(ConfigError(
                "stream.max_connections must be positive".into(),
            ));
        }
        let w = &self.webhooks;
        if w.timeout.is_zero() || w.retry_schedule.is_empty() || w.max_in_flight_per_endpoint == 0 {
            return Err(ConfigError(
                "webhooks.timeout, webhooks.retry_schedule and webhooks.max_in_flight_per_endpoint must be positive / non-empty".into(),
            ));
        }
        if !(0.0..=1.0).contains(&w.jitter) {
            return Err(ConfigError(
                "webhooks.jitter is a fraction between 0 and 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&w.yield_cpu) {
            return Err(ConfigError(
                "webhooks.yield_cpu is a fraction between 0 and 1".into(),
            ));
        }
        if w.yield_rate == 0 {
            return Err(ConfigError(
                "webhooks.yield_rate must be positive (deliveries per second while yielding)"
                    .into(),
            ));
        }
        self.bridge
            .validate()
            .map_err(|e| ConfigError(e.to_string()))?;
        let mut names = std::collections::BTreeSet::new();
        for sink in &self.sinks {
            sink.validate().map_err(|e| ConfigError(e.to_string()))?;
            // The bridge would read back what the sink publishes, forever.
            if let (cds_events_sinks::SinkKind::Redis(r), Some(bridge)) =
                (&sink.kind, &self.bridge.cds_redis_url)
                && r.loops_with(bridge, &self.bridge.channel)
            {
                return Err(ConfigError(format!(
                    "sinks[{}]: publishes on {:?} of the Redis the bridge subscribes to; it would loop",
                    sink.name, self.bridge.channel
                )));
            }
            if !names.insert(sink.name.as_str()) {
                return Err(ConfigError(format!(
                    "sinks: two sinks are named {:?}",
                    sink.name
                )));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML (`cds-events config`), safe to
    /// paste in a ticket: tokens live in the token store, the bootstrap
    /// token comes from `CDS_EVENTS_ADMIN_TOKEN` and is never part of it, TLS
    /// keys are given by path, a password in `storage.postgres_url` is
    /// masked, and so is the bridge's Redis password (in its URL; the
    /// `bridge.password` field is left out), and so are the sinks'
    /// credentials (in their URLs; `password` and `token` are left out).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.storage.postgres_url = shown.storage.postgres_url.as_deref().map(mask_password);
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
