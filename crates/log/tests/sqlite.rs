//! The conformance suite on the SQLite backend, plus SQLite-specific checks.

use async_trait::async_trait;
use cds_events_log::conformance::{Harness, event, follow_cursors, project};
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_log::{EventLog, NewEvent, Order, Query};
use cds_events_model::{EventFilter, EventType, Timestamp};
use std::sync::Arc;

struct Sqlite {
    dir: tempfile::TempDir,
    recent_bytes: usize,
}

impl Sqlite {
    fn new() -> Self {
        Self::keeping(SqliteOptions::default().recent_bytes)
    }

    /// Keeps `recent_bytes` of the newest events in memory for `read_after`.
    fn keeping(recent_bytes: usize) -> Self {
        Sqlite {
            dir: tempfile::tempdir().expect("tempdir"),
            recent_bytes,
        }
    }
}

#[async_trait]
impl Harness for Sqlite {
    async fn open(&self) -> Arc<dyn EventLog> {
        let opts = SqliteOptions {
            recent_bytes: self.recent_bytes,
            ..SqliteOptions::default()
        };
        Arc::new(SqliteLog::open(self.dir.path(), opts).expect("open"))
    }
}

cds_events_log::conformance_tests!(Sqlite::new());

/// Every read from the database: what the newest events kept in memory
/// answer must be what the database would.
mod without_recent_events {
    use super::*;
    cds_events_log::conformance_tests!(Sqlite::keeping(0));
}

/// Only a few events kept: reads start on both sides of the boundary.
mod keeping_a_few_recent_events {
    use super::*;
    cds_events_log::conformance_tests!(Sqlite::keeping(4096));
}

/// The common filters are served by the blocks' postings or a range of
/// sequence numbers, never by a scan of the table:
/// the plans are printed here so a reader can see them (`--nocapture`).
#[tokio::test]
async fn common_filters_use_indexes() {
    let h = Sqlite::new();
    let log = SqliteLog::open(h.dir.path(), SqliteOptions::default()).expect("open");
    log.append(
        (0..100)
            .map(|i| NewEvent::from(event(EventType::RunJobEnded, "P", i)))
            .collect(),
    )
    .await
    .expect("append");
    let types = |s: &str| Some(cds_events_model::parse_types(s).expect("types"));
    let since = Some(Timestamp::from_unix_nanos(50_000_000_000));
    let cases = [
        (
            "project + type prefix + since",
            EventFilter {
                scopes: vec![project("P")],
                types: types("RunJob*"),
                since,
                ..Default::default()
            },
        ),
        (
            "project",
            EventFilter {
                scopes: vec![project("P")],
                ..Default::default()
            },
        ),
        (
            "type",
            EventFilter {
                types: types("RunJobEnded"),
                ..Default::default()
            },
        ),
        (
            "workflow run",
            EventFilter {
                workflow_run_id: Some("r".into()),
                ..Default::default()
            },
        ),
        (
            "since only",
            EventFilter {
                since,
                ..Default::default()
            },
        ),
    ];
    let cases: Vec<(&str, EventFilter, &str)> = cases
        .into_iter()
        .zip([
            "block_streams",
            "block_streams",
            "block_streams",
            "block_runs",
            "INTEGER PRIMARY KEY",
        ])
        .map(|((name, f), idx)| (name, f, idx))
        .collect();
    for (name, filter, index) in cases {
        let plan = log
            .explain(Query {
                filter,
                ..Query::default()
            })
            .await
            .expect("explain");
        println!("{name}:\n  {}", plan.join("\n  "));
        assert!(
            plan.iter().all(|s| !s.starts_with("SCAN")),
            "{name}: a scan in {plan:?}"
        );
        assert!(
            plan.iter()
                .any(|s| s.starts_with("SEARCH") && s.contains(index)),
            "{name}: {index} unused in {plan:?}"
        );
    }
    log.close().await.expect("close");
}

/// A walk that runs out of time answers what it found with a cursor where it
/// stopped; following the cursors still yields every match exactly once.
#[tokio::test]
async fn a_walk_out_of_budget_resumes_where_it_stopped() {
    let h = Sqlite::new();
    let opts = SqliteOptions {
        query_budget: std::time::Duration::ZERO,
        ..SqliteOptions::default()
    };
    let log = SqliteLog::open(h.dir.path(), opts).expect("open");
    let evs: Vec<NewEvent> = (0..50_000)
        .map(|i| {
            NewEvent::from(event(
                if i % 1000 == 0 {
                    EventType::ProjectCreated
                } else {
                    EventType::RunJobEnded
                },
                "P",
                i,
            ))
        })
        .collect();
    log.append(evs).await.expect("append");
    let filter = EventFilter {
        types: Some(cds_events_model::parse_types("ProjectCreated").expect("t")),
        ..Default::default()
    };
    let mut got = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = log
            .query(Query {
                filter: filter.clone(),
                cursor,
                limit: 100,
                ..Query::default()
            })
            .await
            .expect("query");
        pages += 1;
        got.extend(page.events.iter().map(|e| e.seq.0));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(pages > 1, "the zero budget cut the walk");
    assert_eq!(got, (0..50).map(|i| i * 1000 + 1).collect::<Vec<u64>>());
    log.close().await.expect("close");
}

/// `events.db` as the builds before the store crate wrote it: the layout of
/// schema version 1 and its meta rows (here after a purge emptied the table).
fn previous_build_db(dir: &std::path::Path, version: i64) {
    let conn = rusqlite::Connection::open(dir.join(cds_events_log::sqlite::DB_FILE)).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE streams (id INTEGER PRIMARY KEY, project_key TEXT NOT NULL,
                               type TEXT NOT NULL, UNIQUE (project_key, type));
         CREATE INDEX streams_type ON streams(type);
         CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, stream INTEGER NOT NULL,
                              ts INTEGER NOT NULL, run INTEGER, body TEXT NOT NULL);
         CREATE UNIQUE INDEX events_id ON events(id);
         CREATE INDEX events_block_stream ON events(seq >> 14, stream);
         CREATE INDEX events_block_run ON events(seq >> 14, run) WHERE run IS NOT NULL;
         CREATE TABLE zones (block INTEGER PRIMARY KEY, min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL);
         CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
         CREATE TABLE consumers (name TEXT PRIMARY KEY, seq INTEGER NOT NULL, updated_at INTEGER NOT NULL);
         INSERT INTO streams(project_key, type) VALUES ('P', 'ProjectCreated');
         INSERT INTO meta VALUES ('last_seq', 41);
         INSERT INTO consumers VALUES ('sink', 40, 0);",
    )
    .expect("previous layout");
    conn.execute("INSERT INTO meta VALUES ('schema_version', ?1)", [version])
        .expect("version");
}

#[tokio::test]
async fn a_database_of_the_previous_build_opens_and_continues() {
    let h = Sqlite::new();
    previous_build_db(h.dir.path(), 1);
    let log = SqliteLog::open(h.dir.path(), SqliteOptions::default()).expect("open");
    assert_eq!(*log.head().borrow(), cds_events_log::Seq(41));
    assert_eq!(
        log.consumer_position("sink").await.expect("position"),
        Some(cds_events_log::Seq(40))
    );
    let appended = log
        .append(vec![NewEvent::from(event(
            EventType::ProjectCreated,
            "P",
            1,
        ))])
        .await
        .expect("append");
    assert_eq!(appended[0].seq, cds_events_log::Seq(42));
    log.close().await.expect("close");
    let log = SqliteLog::open(h.dir.path(), SqliteOptions::default()).expect("reopen");
    assert_eq!(*log.head().borrow(), cds_events_log::Seq(42));
    log.close().await.expect("close");
}

/// Version 1 kept a unique index on the id; version 2 finds ids by a hash
/// within each sequence block. The stored ids are hashed once at open and
/// stay unique: a retry of a stored event is still a duplicate.
#[tokio::test]
async fn a_version_1_log_with_events_keeps_its_ids_unique() {
    let h = Sqlite::new();
    previous_build_db(h.dir.path(), 1);
    let stored = event(EventType::ProjectCreated, "P", 1);
    {
        let conn = rusqlite::Connection::open(h.dir.path().join(cds_events_log::sqlite::DB_FILE))
            .expect("open");
        conn.execute(
            "INSERT INTO events(seq, id, stream, ts, body) VALUES (41, ?1, 1, 0, ?2)",
            rusqlite::params![stored.id, stored.to_json()],
        )
        .expect("a stored event");
    }
    let log = SqliteLog::open(h.dir.path(), SqliteOptions::default()).expect("open");
    let got = log.get(&stored.id).await.expect("get").expect("found");
    assert_eq!(got.seq, cds_events_log::Seq(41));
    let retry = log
        .append(vec![NewEvent::from(stored.clone())])
        .await
        .expect("append");
    assert_eq!((retry[0].seq.0, retry[0].duplicate), (41, true));
    log.close().await.expect("close");
}

#[tokio::test]
async fn a_database_of_a_newer_build_is_refused_naming_it() {
    let h = Sqlite::new();
    previous_build_db(h.dir.path(), 4);
    let e = SqliteLog::open(h.dir.path(), SqliteOptions::default()).expect_err("refused");
    match &e {
        cds_events_log::LogError::SchemaTooNew { path, found, known } => {
            assert_eq!(path.file_name(), Some(std::ffi::OsStr::new("events.db")));
            assert_eq!((*found, *known), (4, 3));
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(
        e.to_string()
            .contains("events.db has schema version 4, this build knows 3"),
        "{e}"
    );
}

/// Version 2 found rows through SQLite indexes led by the block number;
/// version 3 through the blocks' postings. A version-2 log (made here from a
/// current one: same rows, the indexes instead of the postings) gets its
/// full blocks' postings at open and answers as before.
#[tokio::test]
async fn a_version_2_log_gets_its_postings_and_answers_alike() {
    let h = Sqlite::new();
    let evs: Vec<_> = (0..40_000i64)
        .map(|i| {
            let mut e = event(EventType::RunJobEnded, ["A", "B"][(i % 2) as usize], i);
            e.workflow_run_id = format!("run-{}", i % 5);
            e
        })
        .collect();
    let filters = [
        EventFilter {
            scopes: vec![project("B")],
            ..Default::default()
        },
        EventFilter {
            workflow_run_id: Some("run-3".into()),
            ..Default::default()
        },
    ];
    let log = SqliteLog::open(h.dir.path(), SqliteOptions::default()).expect("open");
    log.append(evs.iter().cloned().map(NewEvent::from).collect())
        .await
        .expect("append");
    let mut before = Vec::new();
    for f in &filters {
        before.push(follow_cursors(&log, f, Order::Asc, 1000).await);
    }
    log.close().await.expect("close");
    {
        let conn = rusqlite::Connection::open(h.dir.path().join(cds_events_log::sqlite::DB_FILE))
            .expect("open");
        conn.execute_batch(
            "DROP TABLE block_streams; DROP TABLE block_runs; DROP TABLE block_ids;
             DELETE FROM meta WHERE key = 'sealed_below';
             UPDATE meta SET value = 2 WHERE key = 'schema_version';
             CREATE INDEX events_block_stream ON events(seq >> 14, stream);
             CREATE INDEX events_block_run ON events(seq >> 14, run) WHERE run IS NOT NULL;
             CREATE INDEX events_block_idh ON events(seq >> 14, idh);",
        )
        .expect("the version-2 layout");
    }
    let log = SqliteLog::open(h.dir.path(), SqliteOptions::default()).expect("reopen");
    for ((f, want), n) in filters.iter().zip(&before).zip([20_000, 8_000]) {
        assert_eq!(want.len(), n, "{f:?} before");
        assert_eq!(
            &follow_cursors(&log, f, Order::Asc, 1000).await,
            want,
            "{f:?}"
        );
    }
    for i in [0usize, 39_999] {
        let got = log.get(&evs[i].id).await.expect("get").expect("found");
        assert_eq!(got.seq.0, i as u64 + 1);
        let retry = log
            .append(vec![NewEvent::from(evs[i].clone())])
            .await
            .expect("retry");
        assert!(retry[0].duplicate, "event {i} is still known");
    }
    log.close().await.expect("close");
    let conn = rusqlite::Connection::open(h.dir.path().join(cds_events_log::sqlite::DB_FILE))
        .expect("open");
    let indexes: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'events_block%'",
        )
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(
        indexes.is_empty(),
        "the version-2 indexes are gone: {indexes:?}"
    );
    let sealed: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'sealed_below'",
            [],
            |r| r.get(0),
        )
        .expect("sealed_below");
    assert_eq!(sealed, 2, "blocks 0 and 1 are full, 2 is the newest");
}

/// The cost of the overview's count over a log of 1M events spread over a
/// day (`--ignored --nocapture` prints it; see BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fills a log of 1M events; run by hand for the figure"]
async fn count_over_a_million_events() {
    let (day, hour) =
        cds_events_log::conformance::count_a_day_of_events(&Sqlite::new(), 1_000_000).await;
    println!(
        "sqlite, 1M events over 24 h: whole day by hour {day:?}, last hour by minute {hour:?}"
    );
}
