//! Throw-away databases for tests that run against a real PostgreSQL.
//!
//! The server is the one of `CDS_EVENTS_TEST_POSTGRES` (a URL to a database
//! the test may create databases from), by default the machine's
//! `postgres://postgres@127.0.0.1:5432/postgres`. Each [`TempDatabase`] is a
//! new database with a random name, dropped (with its connections) when the
//! value is dropped.
//!
//! A test that stops or restarts the server runs its own instead, a
//! [`TempCluster`]: restarting the shared one would fail every other test
//! running meanwhile.

pub use super::cluster::TempCluster;

use super::PgOptions;
use crate::Error;
use tokio_postgres::NoTls;

/// Where test databases are made.
pub fn admin_url() -> String {
    std::env::var("CDS_EVENTS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of its own for one test; dropped on drop.
#[derive(Debug)]
pub struct TempDatabase {
    name: String,
    url: String,
}

impl TempDatabase {
    /// Creates `cds_events_test_<random>` on the test server.
    pub async fn create() -> Result<TempDatabase, Error> {
        let admin = admin_url();
        let name = format!("cds_events_test_{:016x}", rand_u64());
        let (client, connection) = tokio_postgres::connect(&admin, NoTls).await?;
        let driver = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        drop(client);
        let _ = driver.await;
        let mut config: tokio_postgres::Config = admin
            .parse()
            .map_err(|e: tokio_postgres::Error| Error::Config(e.to_string()))?;
        config.dbname(&name);
        let url = url_of(&config);
        Ok(TempDatabase { name, url })
    }

    /// A URL to this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Options to this database with the house defaults.
    pub fn options(&self) -> PgOptions {
        PgOptions::new(self.url.clone())
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        // Drop runs inside a test's runtime or outside any: a thread of its
        // own with its own small runtime works in both.
        let name = self.name.clone();
        let admin = admin_url();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&admin, NoTls).await.ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// A key/value connection string for `config` (which holds what the admin
/// URL gave, with another database name).
fn url_of(config: &tokio_postgres::Config) -> String {
    let mut parts = Vec::new();
    for host in config.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(h) => parts.push(format!("host={h}")),
            tokio_postgres::config::Host::Unix(p) => parts.push(format!("host={}", p.display())),
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(pw) = config.get_password() {
        parts.push(format!("password={}", String::from_utf8_lossy(pw)));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={db}"));
    }
    parts.join(" ")
}

/// A random number from the standard library's per-process random keys and
/// the clock (no dependency for 64 bits of uniqueness).
pub(super) fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}
