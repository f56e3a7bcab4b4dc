//! The token store's conformance suite on the SQLite backend.

use async_trait::async_trait;
use cds_events_auth::TokenBackend;
use cds_events_auth::conformance::Harness;
use cds_events_auth::sqlite::SqliteTokens;
use std::sync::Arc;

/// A private data directory, removed with the harness.
struct Sqlite(tempfile::TempDir);

#[async_trait]
impl Harness for Sqlite {
    async fn open(&self) -> Arc<dyn TokenBackend> {
        Arc::new(SqliteTokens::open(self.0.path()).expect("open"))
    }
}

cds_events_auth::conformance_tests!(Sqlite(tempfile::tempdir().expect("tempdir")));
