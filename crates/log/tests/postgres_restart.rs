//! The PostgreSQL log across a restart of its server, on a private server
//! ([`TempCluster`]; restarting the machine's would fail other tests).

use cds_events_log::conformance::event;
use cds_events_log::postgres::{PgLog, PgLogOptions};
use cds_events_log::{EventLog, LogError, NewEvent, Seq};
use cds_events_model::EventType;
use cds_events_store::pg::PgOptions;
use cds_events_store::pg::testing::TempCluster;
use std::sync::Arc;
use std::time::Duration;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn one(p: &str) -> Vec<NewEvent> {
    vec![NewEvent::from(event(EventType::RunJobEnded, p, 1))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_busy_while_the_server_is_away_and_every_instance_recovers() {
    let cluster = Arc::new(blocking(TempCluster::start).await.expect("a test cluster"));
    let options = PgOptions {
        pool_size: 4,
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::new(cluster.url())
    };
    let a = PgLog::open(&options, PgLogOptions::default())
        .await
        .expect("a");
    // B hears A's commits only through LISTEN (its poll is an hour away):
    // its listener must come back by itself after the restart.
    let deaf = PgLogOptions {
        head_poll: Duration::from_secs(3600),
        ..PgLogOptions::default()
    };
    let b = PgLog::open(&options, deaf).await.expect("b");
    let first = a.append(one("P")).await.expect("append");
    assert_eq!(first[0].seq, Seq(1));

    let c = Arc::clone(&cluster);
    blocking(move || c.stop()).await.expect("stop");
    let away = a.append(one("P")).await.expect_err("the server is down");
    assert!(matches!(away, LogError::Busy(_)), "{away:?}");
    let away = b
        .read_after(Seq(0), 10)
        .await
        .expect_err("the server is down");
    assert!(matches!(away, LogError::Busy(_)), "{away:?}");

    let c = Arc::clone(&cluster);
    blocking(move || c.start_again()).await.expect("start");
    // The log was told nothing: its writer and pool reconnect on their own.
    // Until then every failure is `Busy`, never another error.
    let mut tries = 0;
    let second = loop {
        match a.append(one("P")).await {
            Ok(r) => break r,
            Err(LogError::Busy(_)) if tries < 10 => tries += 1,
            Err(e) => panic!("after {tries} tries: {e:?}"),
        }
    };
    // Nothing of the refused appends was stored: the numbers go on.
    assert_eq!(second[0].seq, Seq(2));
    let mut head = b.head();
    tokio::time::timeout(Duration::from_secs(30), head.wait_for(|h| *h >= Seq(2)))
        .await
        .expect("B hears A's commit after the restart")
        .expect("head open");
    let all: Vec<u64> = b
        .read_after(Seq(0), 10)
        .await
        .expect("read")
        .iter()
        .map(|e| e.seq.0)
        .collect();
    assert_eq!(all, vec![1, 2]);
}
