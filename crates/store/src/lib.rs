//! Storage plumbing shared by every SQLite store of cds-events: the event
//! log (`events.db`), the webhooks store (`webhooks.db`) and the token store
//! (`auth.db`).
//!
//! What lives here is the part that does not depend on what is stored:
//! - [`conn`]: opening a connection with the house pragmas (WAL, synchronous
//!   level, cache, busy timeout...), read-write or read-only;
//! - [`ReaderPool`]: a bounded set of read-only connections, each use run off
//!   the async runtime;
//! - [`Writer`]: the one thread that owns the read-write connection and
//!   group-commits the commands a [`Handler`] defines;
//! - [`Schema`]: the current layout plus versioned migrations, refusing a
//!   database newer than the build;
//! - [`MetaKey`]: typed values in the `meta` key/value table;
//! - [`Checkpointer`]: WAL checkpoints on their own thread.
//!
//! [`pg`] is the same for PostgreSQL: a connection pool, migrations under an
//! advisory lock, `LISTEN`, and throw-away databases for tests.
//!
//! This crate must never know a table of its users (other than `meta`, which
//! is its own) nor decide what a command does: the users bring their SQL and
//! their commands, this crate brings the threads, the connections and the
//! order.

mod checkpoint;
pub mod conn;
mod error;
pub mod meta;
pub mod pg;
mod readers;
mod schema;
mod writer;

pub use checkpoint::{CheckpointOptions, Checkpointer};
pub use conn::{ConnOptions, Synchronous, open, open_read_only, wal_path};
pub use error::Error;
pub use meta::MetaKey;
pub use readers::ReaderPool;
pub use schema::{Migration, Schema, Step};
pub use writer::{Handler, Reply, Writer};
