//! PostgreSQL plumbing shared by every PostgreSQL store of cds-events (the
//! log, the webhooks store, the token store), beside the SQLite plumbing of
//! the rest of this crate.
//!
//! - [`PgOptions`] and [`PgPool`]: a bounded pool of connections to one
//!   database, each with the statement timeout set;
//! - [`PgSchema`]: a component's layout and its versioned migrations, applied
//!   at start under an advisory lock, so that several instances starting
//!   together migrate once;
//! - [`Listener`]: one dedicated connection that `LISTEN`s on channels (the
//!   log's head, a store's "something changed");
//! - [`testing::TempDatabase`]: a throw-away database per test;
//!   [`testing::TempCluster`]: a throw-away server for tests that stop it.
//!
//! As with SQLite, this module knows no table of its users, except
//! `cds_events_schema`, where each component's version is kept.

mod cluster;
mod listen;
mod lock;
mod pool;
mod schema;
pub mod testing;

pub use deadpool_postgres;
pub use listen::{Listener, Notification};
pub use lock::LockSession;
pub use pool::{PgOptions, PgPool};
pub use schema::{PgMigration, PgSchema};
pub use tokio_postgres;

/// Whether an error means "the server is away or restarting, try again":
/// the connection is gone, or SQLSTATE class 08 (connection exception), 53
/// (insufficient resources: too many connections, disk full) or one of
/// 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now). A
/// statement cancelled by its timeout (57014) is not an outage.
pub fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            matches!(&code[..2], "08" | "53") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        // No SQLSTATE: the connection itself failed (refused, reset, timed
        // out: an I/O error), or else the client refused something before
        // or after the server had its say (a parameter or a column of
        // another type, `query_one` finding no row), which a retry does not
        // cure.
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}
