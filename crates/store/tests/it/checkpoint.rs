use crate::wait_until;
use cds_events_store::{CheckpointOptions, Checkpointer, ConnOptions, open};
use std::time::Duration;

/// A database at `path` whose WAL holds a table `t` of `rows` rows of 200
/// bytes, never checkpointed by the connection returned.
fn table_of_rows(path: &std::path::Path, rows: u32) -> rusqlite::Connection {
    let conn = open(path, &ConnOptions::default()).expect("open");
    conn.pragma_update(None, "wal_autocheckpoint", 0)
        .expect("no inline checkpoints");
    conn.execute_batch(&format!(
        "CREATE TABLE t (v TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO t SELECT printf('%0200d', i) FROM n;"
    ))
    .expect("rows");
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_pages_reach_the_database_file_without_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let _conn = table_of_rows(&path, 2000);
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

/// The WAL's file keeps its size once it has grown: what it holds, not its
/// size, decides a restart. A restart holds the writer back while a reader
/// is on the WAL, so a restart at every pass would stall every write while
/// a long read runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_wal_file_that_holds_little_does_not_hold_the_writer_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    // Grow the WAL file to ~2 MiB, then let a checkpoint start it over.
    let conn = table_of_rows(&path, 8000);
    conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
        .expect("restart");
    let wal = cds_events_store::wal_path(&path);
    let max_wal_bytes = 256 * 1024;
    assert!(std::fs::metadata(&wal).expect("wal").len() > 4 * max_wal_bytes);
    let restart_wait = Duration::from_secs(2);
    let ckpt = Checkpointer::spawn(
        &path,
        "test-checkpoint",
        CheckpointOptions {
            interval: Duration::from_millis(5),
            max_wal_bytes,
            restart_wait,
            ..CheckpointOptions::default()
        },
    )
    .expect("spawn");
    // A reader holds a snapshot on the WAL for the whole test.
    conn.execute("INSERT INTO t VALUES ('x')", [])
        .expect("write");
    let reader = open(&path, &ConnOptions::default()).expect("reader");
    reader.execute_batch("BEGIN").expect("begin");
    let _: i64 = reader
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .expect("read");
    // Small writes, far below max_wal_bytes all together: none waits.
    for i in 0..50 {
        let started = std::time::Instant::now();
        conn.execute("INSERT INTO t VALUES (?1)", [i.to_string()])
            .expect("write");
        assert!(
            started.elapsed() < restart_wait / 2,
            "write {i} waited {:?} for a checkpoint",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    reader.execute_batch("COMMIT").expect("end the read");
    ckpt.stop().await;
}
