//! The token store while its PostgreSQL is away, on a private server
//! ([`TempCluster`]; stopping the machine's would fail other tests): a
//! look-up that cannot be made is an error to retry, never "unknown token".

use cds_events_auth::postgres::PgTokens;
use cds_events_auth::{AuthError, TokenStore};
use cds_events_store::pg::PgOptions;
use cds_events_store::pg::testing::TempCluster;
use std::sync::Arc;
use std::time::Duration;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_look_up_or_a_ticket_while_the_database_is_away_is_unavailable_not_unknown() {
    let cluster = Arc::new(blocking(TempCluster::start).await.expect("a test cluster"));
    let options = PgOptions {
        pool_size: 2,
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::new(cluster.url())
    };
    let backend = PgTokens::open(&options).await.expect("open");
    let store = TokenStore::with_backend(Arc::new(backend), Duration::from_secs(30))
        .await
        .expect("store");
    // A token this instance's copy does not hold: looked up, not found.
    let elsewhere = "cdse_madeelsewhere_0123456789";
    assert!(matches!(
        store.authenticate_or_look_up(elsewhere).await,
        Ok(None)
    ));
    assert!(matches!(
        store.redeem_ticket("cdst_unknown").await,
        Ok(None)
    ));

    let c = Arc::clone(&cluster);
    blocking(move || c.stop()).await.expect("stop");
    let away = store.authenticate_or_look_up(elsewhere).await;
    assert!(matches!(away, Err(AuthError::Unavailable(_))), "{away:?}");
    let away = store.redeem_ticket("cdst_unknown").await;
    assert!(matches!(away, Err(AuthError::Unavailable(_))), "{away:?}");

    let c = Arc::clone(&cluster);
    blocking(move || c.start_again()).await.expect("start");
    let mut tries = 0;
    loop {
        match store.authenticate_or_look_up(elsewhere).await {
            Ok(found) => {
                assert!(found.is_none());
                break;
            }
            Err(AuthError::Unavailable(_)) if tries < 10 => tries += 1,
            Err(e) => panic!("after {tries} tries: {e:?}"),
        }
    }
}
