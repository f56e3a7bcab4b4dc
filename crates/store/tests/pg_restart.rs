//! The pool and the listener across a restart of PostgreSQL, on a private
//! server ([`TempCluster`]): the machine's is shared with other tests.

use cds_events_store::pg::testing::TempCluster;
use cds_events_store::pg::{Listener, PgOptions, PgPool};
use std::sync::Arc;
use std::time::Duration;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

async fn select_one(pool: &PgPool) -> Result<i32, cds_events_store::Error> {
    let conn = pool.get().await?;
    Ok(conn.query_one("SELECT 1", &[]).await?.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_recovers_by_itself_after_the_server_restarts() {
    let cluster = Arc::new(blocking(TempCluster::start).await.expect("a test cluster"));
    let mut options = PgOptions::new(cluster.url());
    options.pool_size = 4;
    options.connect_timeout = Duration::from_secs(2);
    let pool = PgPool::connect(&options).await.expect("connect");
    // Four connections opened, then idle in the pool when the server goes.
    let held: Vec<_> = futures_four(&pool).await;
    drop(held);
    assert_eq!(select_one(&pool).await.expect("up"), 1);

    let c = Arc::clone(&cluster);
    blocking(move || c.stop()).await.expect("stop");
    for _ in 0..3 {
        let e = select_one(&pool).await.expect_err("the server is down");
        assert!(e.is_unavailable(), "away is unavailable: {e:?}");
    }

    let c = Arc::clone(&cluster);
    blocking(move || c.start_again()).await.expect("start");
    // Each connection the pool held died with the server: at most one
    // failure each, every one of them an outage, then it works again with
    // nobody having reset the pool.
    let mut failures = 0;
    let answer = loop {
        match select_one(&pool).await {
            Ok(one) => break one,
            Err(e) => {
                assert!(e.is_unavailable(), "a dead pooled connection: {e:?}");
                failures += 1;
                assert!(failures <= options.pool_size, "the pool does not recover");
            }
        }
    };
    assert_eq!(answer, 1);
    // And it keeps working: no broken connection is handed out any more.
    for _ in 0..8 {
        assert_eq!(select_one(&pool).await.expect("recovered"), 1);
    }
}

async fn futures_four(pool: &PgPool) -> Vec<cds_events_store::pg::deadpool_postgres::Object> {
    let mut out = Vec::new();
    for _ in 0..4 {
        out.push(pool.get().await.expect("a connection"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_ends_when_the_server_stops_and_a_new_one_hears_after_the_restart() {
    let cluster = Arc::new(blocking(TempCluster::start).await.expect("a test cluster"));
    let options = PgOptions::new(cluster.url());
    let mut listener = Listener::open(&options, &["faults"]).await.expect("listen");
    let c = Arc::clone(&cluster);
    blocking(move || c.restart()).await.expect("restart");
    let ended = tokio::time::timeout(Duration::from_secs(20), listener.recv())
        .await
        .expect("the listener notices the restart");
    assert_eq!(ended, None, "a lost connection ends the listener");

    let mut again = Listener::open(&options, &["faults"])
        .await
        .expect("listen again");
    let pool = PgPool::connect(&options).await.expect("connect");
    pool.get()
        .await
        .expect("conn")
        .batch_execute("NOTIFY faults, 'back'")
        .await
        .expect("notify");
    let heard = tokio::time::timeout(Duration::from_secs(20), again.recv())
        .await
        .expect("heard")
        .expect("a notification");
    assert_eq!(heard.payload, "back");
}
