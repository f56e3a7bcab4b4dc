//! The `meta` key/value table: small facts about a database (its schema
//! version, and whatever a user keeps there), each read and written with
//! its type.

use crate::Error;
use rusqlite::types::{FromSql, ToSql};
use rusqlite::{Connection, OptionalExtension};
use std::fmt;
use std::marker::PhantomData;

/// Creates the table where it is missing. A user may declare `meta` in its
/// own layout (older ones did, with a typed `value` column); all this crate
/// needs is `key TEXT PRIMARY KEY, value`.
pub(crate) const CREATE: &str = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);";

/// The version of the layout a database is at (see [`crate::Schema`]).
pub const SCHEMA_VERSION: MetaKey<i64> = MetaKey::new("schema_version");

/// A key of the `meta` table whose value is a `T`.
pub struct MetaKey<T> {
    name: &'static str,
    // A key holds no `T`; `fn() -> T` keeps it `Send`, `Sync` and `Copy`
    // whatever `T` is.
    value: PhantomData<fn() -> T>,
}

impl<T> MetaKey<T> {
    pub const fn new(name: &'static str) -> Self {
        MetaKey {
            name,
            value: PhantomData,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl<T: FromSql + ToSql> MetaKey<T> {
    /// The value, or `None` when it was never set.
    pub fn get(&self, conn: &Connection) -> Result<Option<T>, Error> {
        Ok(conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([self.name], |r| r.get(0))
            .optional()?)
    }

    /// Sets the value (in the caller's transaction, if there is one).
    pub fn set(&self, conn: &Connection, value: &T) -> Result<(), Error> {
        conn.prepare_cached(
            "INSERT INTO meta(key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        )?
        .execute(rusqlite::params![self.name, value])?;
        Ok(())
    }
}

impl<T> Clone for MetaKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for MetaKey<T> {}

impl<T> fmt::Debug for MetaKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MetaKey").field(&self.name).finish()
    }
}
