//! Versioned layouts: the current one, and the steps that bring an older
//! database up to it.

use crate::Error;
use crate::meta::{self, SCHEMA_VERSION};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::path::PathBuf;

/// A store's layout.
///
/// [`Schema::apply`] runs on every open: `create` (idempotent statements,
/// `CREATE … IF NOT EXISTS`, of the current layout) makes a new database
/// whole; then a database written by an earlier build is brought to
/// `version` by its [`Migration`]s, one version at a time, each in a
/// transaction with the new version number; a database from a newer build is
/// refused.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The current layout, as statements that leave existing tables alone.
    pub create: &'static str,
    /// The version `create` describes.
    pub version: i64,
    /// The version of a database that has tables but no version written
    /// (one made before its store recorded versions).
    pub unversioned: i64,
    /// The steps, each from one version to the next.
    pub migrations: &'static [Migration],
}

/// One step: from version `from` to `from + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub from: i64,
    pub step: Step,
}

/// What a step does, inside the transaction that also records the new
/// version.
#[derive(Clone, Copy)]
pub enum Step {
    /// Statements run as one batch.
    Sql(&'static str),
    /// Code, for what SQL alone cannot say (rewriting values...).
    Run(fn(&Transaction<'_>) -> Result<(), Error>),
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Sql(sql) => f.debug_tuple("Sql").field(sql).finish(),
            Step::Run(_) => f.write_str("Run(..)"),
        }
    }
}

impl Schema {
    /// Creates what is missing, migrates, and records the version. Returns
    /// the version the database was at (`None`: none was written).
    pub fn apply(&self, conn: &Connection) -> Result<Option<i64>, Error> {
        let fresh: bool = !conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table')",
            [],
            |r| r.get(0),
        )?;
        conn.execute_batch(self.create)?;
        conn.execute_batch(meta::CREATE)?;
        let found = SCHEMA_VERSION.get(conn)?;
        let mut version = match found {
            Some(v) => v,
            // `create` just made every table of the current layout.
            None if fresh => self.version,
            None => self.unversioned,
        };
        if version > self.version {
            return Err(Error::SchemaTooNew {
                path: path_of(conn),
                found: version,
                known: self.version,
            });
        }
        while version < self.version {
            let step = self
                .migrations
                .iter()
                .find(|m| m.from == version)
                .ok_or_else(|| Error::NoMigration {
                    path: path_of(conn),
                    found: version,
                })?;
            step.run(conn).map_err(|e| Error::Migration {
                path: path_of(conn),
                from: version,
                source: Box::new(e),
            })?;
            tracing::info!(from = version, to = version + 1, "schema migrated");
            version += 1;
        }
        if found.is_none() {
            SCHEMA_VERSION.set(conn, &version)?;
        }
        Ok(found)
    }
}

impl Migration {
    fn run(&self, conn: &Connection) -> Result<(), Error> {
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
        match self.step {
            Step::Sql(sql) => tx.execute_batch(sql)?,
            Step::Run(f) => f(&tx)?,
        }
        SCHEMA_VERSION.set(&tx, &(self.from + 1))?;
        tx.commit()?;
        Ok(())
    }
}

/// The file a connection is on, for messages.
fn path_of(conn: &Connection) -> PathBuf {
    match conn.path() {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(":memory:"),
    }
}
