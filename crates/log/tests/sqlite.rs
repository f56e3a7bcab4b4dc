//! The conformance suite on the SQLite backend, plus SQLite-specific checks.

use async_trait::async_trait;
use cds_events_log::conformance::{Harness, event};
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_log::{EventLog, NewEvent, Query};
use cds_events_model::{EventFilter, EventType, Timestamp};
use std::sync::Arc;

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Self {
        Sqlite {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
}

#[async_trait]
impl Harness for Sqlite {
    async fn open(&self) -> Arc<dyn EventLog> {
        Arc::new(SqliteLog::open(self.dir.path(), SqliteOptions::default()).expect("open"))
    }
}

cds_events_log::conformance_tests!(Sqlite::new());

/// The common filters are served by an index, never by a scan of the table:
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
                projects: vec!["P".into()],
                types: types("RunJob*"),
                since,
                ..Default::default()
            },
        ),
        (
            "project",
            EventFilter {
                projects: vec!["P".into()],
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
    for (name, filter) in cases {
        let plan = log
            .explain(Query {
                filter,
                ..Query::default()
            })
            .await
            .expect("explain");
        println!("{name}:\n  {}", plan.join("\n  "));
        for step in &plan {
            let scans_table = step.starts_with("SCAN e")
                || (step.starts_with("SCAN events")
                    && !step.contains("INTEGER PRIMARY KEY")
                    && !step.contains("INDEX"));
            assert!(!scans_table, "{name}: full scan in plan {plan:?}");
        }
        assert!(
            plan.iter().any(|s| s.contains("USING INDEX")
                || s.contains("USING COVERING INDEX")
                || s.contains("PRIMARY KEY")),
            "{name}: {plan:?}"
        );
    }
    log.close().await.expect("close");
}
