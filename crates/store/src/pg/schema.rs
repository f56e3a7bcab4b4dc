//! Versioned layouts on PostgreSQL, migrated once however many instances
//! start together.

use super::PgPool;
use crate::Error;
use std::path::PathBuf;

/// The advisory lock key every migration takes (any fixed 64-bit number
/// other users of the database are unlikely to pick: "cdsevmig").
const MIGRATION_LOCK: i64 = 0x6364_7365_766d_6967;

/// A component's layout (`component` is the log, the webhooks store, the
/// token store…), kept in one database with the others'.
///
/// [`PgSchema::apply`] runs at every start, in one transaction holding a
/// transaction-level advisory lock: a second instance starting at the same
/// time waits, then finds the work done. A new database gets `create` (the
/// current layout) and `version`; an older one its migrations, in order; a
/// newer one is refused.
#[derive(Debug, Clone, Copy)]
pub struct PgSchema {
    /// The component's name in `cds_events_schema`.
    pub component: &'static str,
    /// The current layout, run when the component has no version yet.
    pub create: &'static str,
    /// The version `create` describes.
    pub version: i64,
    /// The steps, each from one version to the next.
    pub migrations: &'static [PgMigration],
}

/// One step: from version `from` to `from + 1`.
#[derive(Debug, Clone, Copy)]
pub struct PgMigration {
    pub from: i64,
    pub sql: &'static str,
}

const VERSIONS: &str = "CREATE TABLE IF NOT EXISTS cds_events_schema (
    component TEXT PRIMARY KEY,
    version BIGINT NOT NULL
)";

impl PgSchema {
    /// Creates or migrates the component's tables. Returns the version the
    /// database was at (`None`: the component was new there).
    pub async fn apply(&self, pool: &PgPool) -> Result<Option<i64>, Error> {
        let mut conn = pool.get().await?;
        let tx = conn.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(VERSIONS).await?;
        let found: Option<i64> = tx
            .query_opt(
                "SELECT version FROM cds_events_schema WHERE component = $1",
                &[&self.component],
            )
            .await?
            .map(|r| r.get(0));
        let place = || PathBuf::from(format!("postgresql:{}", self.component));
        match found {
            None => {
                tx.batch_execute(self.create).await?;
            }
            Some(v) if v > self.version => {
                return Err(Error::SchemaTooNew {
                    path: place(),
                    found: v,
                    known: self.version,
                });
            }
            Some(mut v) => {
                while v < self.version {
                    let step =
                        self.migrations
                            .iter()
                            .find(|m| m.from == v)
                            .ok_or(Error::NoMigration {
                                path: place(),
                                found: v,
                            })?;
                    tx.batch_execute(step.sql)
                        .await
                        .map_err(|e| Error::Migration {
                            path: place(),
                            from: v,
                            source: Box::new(e.into()),
                        })?;
                    v += 1;
                }
            }
        }
        tx.execute(
            "INSERT INTO cds_events_schema (component, version) VALUES ($1, $2)
             ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            &[&self.component, &self.version],
        )
        .await?;
        tx.commit().await?;
        Ok(found)
    }
}
