use crate::wait_until;
use cds_events_store::{CheckpointOptions, Checkpointer, ConnOptions, open};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_pages_reach_the_database_file_without_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let conn = open(&path, &ConnOptions::default()).expect("open");
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .expect("no inline checkpoints");
    conn.execute_batch(
        "CREATE TABLE t (v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO t SELECT printf('%0200d', i) FROM n;",
    )
    .expect("rows");
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let before = size();
    let ckpt = Checkpointer::spawn(
        &path,
        "test-checkpoint",
        CheckpointOptions {
            interval: Duration::from_millis(5),
            ..CheckpointOptions::default()
        },
    )
    .expect("spawn");
    wait_until("the rows are copied into the database file", || {
        size() > before + 100 * 1024
    })
    .await;
    ckpt.stop().await;
}
