//! The connection pool.

use crate::Error;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Timeouts};
use std::time::Duration;
use tokio_postgres::NoTls;

/// How to reach the database and how many connections to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// A libpq-style URL or key/value string
    /// (`postgres://user@host:5432/db`, `host=… dbname=…`).
    pub url: String,
    /// Most connections this pool opens.
    pub pool_size: usize,
    /// Statements running longer are cancelled by the server (`None`: no
    /// limit).
    pub statement_timeout: Option<Duration>,
    /// How long opening a connection (or waiting for a free one) may take.
    pub connect_timeout: Duration,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            pool_size: 16,
            statement_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// The driver's configuration: the URL with the timeouts applied.
    pub fn config(&self) -> Result<tokio_postgres::Config, Error> {
        let mut config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| Error::Config(e.to_string()))?;
        config.connect_timeout(self.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("cds-events");
        }
        // Every statement is planned with its parameters, each time. Our
        // tables start empty and grow by millions of rows between two
        // ANALYZEs; a generic plan cached while a table was small (a
        // sequential scan) stayed on its connection for good: an id lookup
        // of the log took seconds on a million rows. Planning these
        // statements costs far less than one such scan.
        let mut options = "-c plan_cache_mode=force_custom_plan".to_owned();
        if let Some(t) = self.statement_timeout {
            options.push_str(&format!(" -c statement_timeout={}", t.as_millis()));
        }
        config.options(options);
        Ok(config)
    }
}

/// A pool of connections to one database. Cheap to clone (shared).
#[derive(Clone)]
pub struct PgPool {
    pool: Pool,
    options: PgOptions,
}

impl std::fmt::Debug for PgPool {
    // The URL may carry a password: only the pool's shape is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("size", &self.options.pool_size)
            .field("status", &self.pool.status())
            .finish()
    }
}

impl PgPool {
    /// Builds the pool and opens one connection, so that a wrong URL or a
    /// server that is down is reported at start.
    pub async fn connect(options: &PgOptions) -> Result<PgPool, Error> {
        let manager = Manager::from_config(
            options.config()?,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeouts = Timeouts {
            wait: Some(options.connect_timeout),
            create: Some(options.connect_timeout),
            recycle: Some(options.connect_timeout),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .timeouts(timeouts)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        let pool = PgPool {
            pool,
            options: options.clone(),
        };
        drop(pool.get().await?);
        Ok(pool)
    }

    /// A connection from the pool (opened if none is free and the pool is
    /// not full; waits up to the connect timeout otherwise). Returned to the
    /// pool when dropped.
    pub async fn get(&self) -> Result<Object, Error> {
        self.pool.get().await.map_err(Error::from)
    }

    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    /// Closes the pool: later `get`s fail, connections in use close when
    /// returned.
    pub fn close(&self) {
        self.pool.close();
    }
}
