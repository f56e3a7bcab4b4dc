//! The SQLite schema and connection settings.

use rusqlite::Connection;

/// Sequence numbers are grouped in blocks of `1 << ZONE_SHIFT` for the zone map.
pub(crate) const ZONE_SHIFT: u32 = 12;

pub(crate) const SCHEMA_VERSION: i64 = 1;

/// Why each index exists:
/// - `events_id`: idempotent append and get-by-id;
/// - `events_project_type`: project (+ type) pages in sequence order;
/// - `events_type`: type pages across projects;
/// - `events_run`: everything about one workflow run;
/// - `zones`: per block of sequence numbers, the min and max event time, so a
///   `since`/`until` bound becomes a sequence range instead of a scan.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    project_key TEXT,
    ts INTEGER NOT NULL,
    vcs_name TEXT,
    repository TEXT,
    workflow TEXT,
    workflow_run_id TEXT,
    run_job_id TEXT,
    job_id TEXT,
    user_id TEXT,
    username TEXT,
    region TEXT,
    hatchery TEXT,
    status TEXT,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_id ON events(id);
CREATE INDEX IF NOT EXISTS events_project_type ON events(project_key, type, seq);
CREATE INDEX IF NOT EXISTS events_type ON events(type, seq);
CREATE INDEX IF NOT EXISTS events_run ON events(workflow_run_id, seq) WHERE workflow_run_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS zones (
    block INTEGER PRIMARY KEY,
    min_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS consumers (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
";

/// Settings common to the writer and the readers.
pub(crate) fn configure(
    conn: &Connection,
    synchronous: &str,
    cache_kib: i64,
) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(())
}

pub(crate) fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    use rusqlite::OptionalExtension;
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

pub(crate) fn meta_set(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(rusqlite::params![key, value])?;
    Ok(())
}
