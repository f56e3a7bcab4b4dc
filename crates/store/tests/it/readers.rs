use cds_events_store::{ConnOptions, Error, ReaderPool, open};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

fn db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let conn = open(&path, &ConnOptions::default()).expect("open");
    conn.execute_batch("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (7);")
        .expect("table");
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_runs_at_most_its_size_at_once() {
    let (_dir, path) = db();
    let pool = ReaderPool::new(&path, 2, ConnOptions::default());
    let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Each use waits for a second one to be running: two at once are
    // allowed (or this never ends), and the counter shows never three.
    let pair = Arc::new(Barrier::new(2));
    let uses = (0..6).map(|_| {
        let (pool, now, most, pair) = (pool.clone(), now.clone(), most.clone(), pair.clone());
        tokio::spawn(async move {
            pool.with(move |c| {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                pair.wait();
                let a: i64 = c.query_row("SELECT a FROM t", [], |r| r.get(0))?;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Error>(a)
            })
            .await
        })
    });
    let all = tokio::time::timeout(Duration::from_secs(30), async {
        let mut out = Vec::new();
        for u in uses.collect::<Vec<_>>() {
            out.push(u.await.expect("task").expect("read"));
        }
        out
    })
    .await
    .expect("two uses at once are allowed");
    assert_eq!(all, vec![7; 6]);
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn pooled_connections_cannot_write() {
    let (_dir, path) = db();
    let pool = ReaderPool::new(&path, 1, ConnOptions::default());
    let r = pool
        .with(|c| Ok::<_, Error>(c.execute("INSERT INTO t VALUES (8)", [])?))
        .await;
    assert!(r.is_err(), "a reader wrote");
}

#[tokio::test]
async fn a_closed_pool_refuses_new_uses() {
    let (_dir, path) = db();
    let pool = ReaderPool::new(&path, 1, ConnOptions::default());
    pool.with(|_| Ok::<_, Error>(())).await.expect("open");
    pool.close();
    let r = pool.with(|_| Ok::<_, Error>(())).await;
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
}

#[tokio::test]
async fn readers_map_the_file_when_asked_and_read_the_same_rows() {
    let (_dir, path) = db();
    let mapped = ReaderPool::new(
        &path,
        1,
        ConnOptions {
            mmap_bytes: Some(64 << 20),
            ..ConnOptions::default()
        },
    );
    let read = |c: &rusqlite::Connection| -> Result<(i64, i64), Error> {
        let size: i64 = c.query_row("PRAGMA mmap_size", [], |r| r.get(0))?;
        let a: i64 = c.query_row("SELECT a FROM t", [], |r| r.get(0))?;
        Ok((size, a))
    };
    assert_eq!(mapped.with(read).await.expect("mapped"), (64 << 20, 7));
    let plain = ReaderPool::new(&path, 1, ConnOptions::default());
    assert_eq!(plain.with(read).await.expect("plain"), (0, 7));
}
