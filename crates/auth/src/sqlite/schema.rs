//! The SQLite schema of `auth.db` and its connection settings.

use cds_events_store::{ConnOptions, Schema};

/// Version 1 is the layout the store had before it recorded versions: a
/// database without one is at 1 (written at its first open by this build).
pub(super) const LAYOUT: Schema = Schema {
    create: SCHEMA,
    version: 1,
    unversioned: 1,
    migrations: &[],
};

/// Every change is synced before it is answered (a revocation must survive
/// a power loss); the defaults otherwise.
pub(super) fn options() -> ConnOptions {
    ConnOptions::default()
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    grants TEXT NOT NULL,
    hash BLOB NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    created_by TEXT,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
";
