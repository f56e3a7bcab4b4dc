//! The notification store's conformance suite on the SQLite backend.

use async_trait::async_trait;
use cds_events_webhooks::crypto::Keyring;
use cds_events_webhooks::store::conformance::Harness;
use cds_events_webhooks::store::sqlite::SqliteStore;
use cds_events_webhooks::store::{Mirror, NotificationStore, StoreOptions};
use std::sync::Arc;

/// A private data directory, removed with the harness.
struct Sqlite(tempfile::TempDir);

#[async_trait]
impl Harness for Sqlite {
    async fn open(
        &self,
        mirror: Arc<dyn Mirror>,
        options: StoreOptions,
    ) -> Arc<dyn NotificationStore> {
        // The generated key file, as a server without a configured key.
        let keyring = Keyring::load(self.0.path(), None, &[]).expect("keyring");
        Arc::new(SqliteStore::open(self.0.path(), keyring, mirror, options).expect("open"))
    }
}

cds_events_webhooks::conformance_tests!(Sqlite(tempfile::tempdir().expect("tempdir")));
