//! The token store on PostgreSQL (`CDS_EVENTS_TEST_POSTGRES`, each test in a
//! database of its own): the conformance suite, then several instances
//! sharing one database.

use async_trait::async_trait;
use cds_events_auth::conformance::Harness;
use cds_events_auth::postgres::PgTokens;
use cds_events_auth::{
    AuthError, Bootstrap, Grant, NewAuditEntry, Principal, SecretHash, StoredToken, TokenBackend,
    TokenInfo, TokenStore,
};
use cds_events_store::pg::testing::TempDatabase;
use cds_events_store::pg::{PgOptions, PgPool};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A database of its own, dropped with the harness.
struct Postgres(TempDatabase);

#[async_trait]
impl Harness for Postgres {
    async fn open(&self) -> Arc<dyn TokenBackend> {
        Arc::new(PgTokens::open(&self.0.options()).await.expect("open"))
    }
}

cds_events_auth::conformance_tests!(Postgres(
    TempDatabase::create().await.expect("test database")
));

const ADMIN: &str = "an-admin-token-long-enough";

/// One cds-events instance's token store over the shared database.
async fn instance(db: &TempDatabase) -> TokenStore {
    let backend = PgTokens::open(&db.options()).await.expect("open");
    TokenStore::with_backend(Arc::new(backend), Duration::from_secs(60))
        .await
        .expect("token store")
}

/// Two instances on one new database, bootstrapped by the first; the admin.
async fn two_instances() -> (TempDatabase, TokenStore, TokenStore, Arc<Principal>) {
    let db = TempDatabase::create().await.expect("test database");
    let (a, b) = (instance(&db).await, instance(&db).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let on_a = a.bootstrap(Some(ADMIN), dir.path()).await;
    assert_eq!(on_a.expect("bootstrap a"), Bootstrap::FromEnv);
    let on_b = b.bootstrap(Some(ADMIN), dir.path()).await;
    assert_eq!(on_b.expect("bootstrap b"), Bootstrap::Existing);
    let admin = a.authenticate(ADMIN).expect("admin on a");
    assert!(b.authenticate(ADMIN).is_some(), "admin on b from its start");
    (db, a, b, admin)
}

/// Polls `cond` until it holds; panics past `within`. How long it took.
async fn within(what: &str, within: Duration, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

async fn create(s: &TokenStore, admin: &Principal) -> cds_events_auth::CreatedToken {
    s.create("ci", vec![Grant::Publish(None)], None, admin)
        .await
        .expect("create")
}

#[tokio::test]
async fn a_token_created_on_one_instance_authenticates_on_another_at_once() {
    let (_db, a, b, admin) = two_instances().await;
    let t = create(&a, &admin).await;
    let p = b
        .authenticate_or_look_up(&t.secret)
        .await
        .expect("the token store answers")
        .expect("known on b at once, before b's copy hears of it");
    assert_eq!(p.token_id, t.info.id);
    let mut wrong = t.secret.clone();
    let last = wrong.pop().expect("a secret");
    wrong.push(if last == 'x' { 'y' } else { 'x' });
    assert!(
        b.authenticate_or_look_up(&wrong)
            .await
            .expect("the token store answers")
            .is_none(),
        "the look-up checks the secret"
    );
    within("b's copy hears of it", Duration::from_secs(1), || {
        b.authenticate(&t.secret).is_some()
    })
    .await;
}

#[tokio::test]
async fn a_token_revoked_on_one_instance_is_refused_on_another_within_a_second() {
    let (_db, a, b, admin) = two_instances().await;
    let t = create(&a, &admin).await;
    within("b's copy holds it", Duration::from_secs(5), || {
        b.authenticate(&t.secret).is_some()
    })
    .await;
    assert!(a.revoke(&t.info.id, &admin).await.expect("revoke"));
    assert!(a.authenticate(&t.secret).is_none(), "at once on a");
    let took = within("b refuses it", Duration::from_secs(1), || {
        b.authenticate(&t.secret).is_none()
    })
    .await;
    println!("b refused the revoked token after {took:?}");
    assert!(
        b.authenticate_or_look_up(&t.secret)
            .await
            .expect("the token store answers")
            .is_none()
    );
}

/// Ends every `LISTEN` connection to the test database, as a network
/// failure or a database restart would.
async fn kill_listeners(db: &TempDatabase) {
    let pool = PgPool::connect(&db.options()).await.expect("connect");
    let killed: i64 = pool
        .get()
        .await
        .expect("connection")
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND query LIKE 'LISTEN%'",
            &[],
        )
        .await
        .expect("terminate")
        .get(0);
    assert!(killed >= 2, "one listener per instance, {killed} found");
}

#[tokio::test]
async fn a_revocation_is_refused_within_a_second_though_the_listeners_were_lost() {
    let (db, a, b, admin) = two_instances().await;
    let t = create(&a, &admin).await;
    within("b's copy holds it", Duration::from_secs(5), || {
        b.authenticate(&t.secret).is_some()
    })
    .await;
    kill_listeners(&db).await;
    // Announced while b's listener is down or not yet back: b may never
    // hear it, and polls.
    assert!(a.revoke(&t.info.id, &admin).await.expect("revoke"));
    within("b refuses it", Duration::from_secs(1), || {
        b.authenticate(&t.secret).is_none()
    })
    .await;
    // And the instances listen again afterwards.
    let t2 = create(&a, &admin).await;
    within(
        "b's copy hears of a new token",
        Duration::from_secs(5),
        || b.authenticate(&t2.secret).is_some(),
    )
    .await;
}

/// Stores a token of id `id` through the backend.
async fn insert(backend: &PgTokens, id: &str) {
    let token = StoredToken {
        info: TokenInfo {
            id: id.to_owned(),
            name: id.to_owned(),
            grants: vec![Grant::ReadGlobal],
            created_at: chrono::Utc::now(),
            expires_at: None,
            created_by: None,
        },
        hash: SecretHash::of(id),
    };
    let audit = NewAuditEntry {
        at: chrono::Utc::now(),
        actor: "test".into(),
        action: "token.create".into(),
        target: id.to_owned(),
        detail: serde_json::Value::Null,
    };
    backend.insert_token(&token, &audit).await.expect("insert");
}

/// Heard, not polled: the poll comes every half second, the notification
/// as the change commits.
#[tokio::test]
async fn a_change_is_heard_by_every_instance_as_it_commits() {
    let db = TempDatabase::create().await.expect("test database");
    let a = PgTokens::open(&db.options()).await.expect("open a");
    let b = PgTokens::open(&db.options()).await.expect("open b");
    let mut changes = b.changes().expect("a shared store has changes");
    for round in 0..8 {
        changes.mark_unchanged();
        insert(&a, &format!("t{round}")).await;
        tokio::time::timeout(Duration::from_millis(250), changes.changed())
            .await
            .unwrap_or_else(|_| panic!("round {round}: not heard within 250 ms"))
            .expect("the backend is alive");
    }
}

#[tokio::test]
async fn a_change_whose_notification_is_lost_is_seen_within_a_second() {
    let db = TempDatabase::create().await.expect("test database");
    let tokens = PgTokens::open(&db.options()).await.expect("open");
    let mut changes = tokens.changes().expect("a shared store has changes");
    // Settled: listening, and past the read that follows each (re)opening.
    insert(&tokens, "t").await;
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("heard")
        .expect("the backend is alive");
    // What a change committed while no listener was up leaves: the version
    // raised, and no notification anyone hears.
    let pool = PgPool::connect(&db.options()).await.expect("connect");
    pool.get()
        .await
        .expect("connection")
        .execute("UPDATE auth_version SET version = version + 1", &[])
        .await
        .expect("raise the version");
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(1), changes.changed())
        .await
        .expect("seen within a second")
        .expect("the backend is alive");
    println!("seen after {:?}", start.elapsed());
}

#[tokio::test]
async fn a_ticket_issued_on_one_instance_is_taken_once_on_another() {
    let (_db, a, b, admin) = two_instances().await;
    let t = create(&a, &admin).await;
    let p = a.authenticate(&t.secret).expect("on a");
    let (ticket, _) = a.issue_ticket(&p).await.expect("ticket");
    let on_b = b
        .redeem_ticket(&ticket)
        .await
        .expect("the token store answers")
        .expect("taken on b, for a token b's copy may not hold yet");
    assert_eq!(on_b.token_id, t.info.id);
    assert!(
        b.redeem_ticket(&ticket)
            .await
            .expect("the token store answers")
            .is_none(),
        "not twice on b"
    );
    assert!(
        a.redeem_ticket(&ticket)
            .await
            .expect("the token store answers")
            .is_none(),
        "nor then on a"
    );
    for round in 0..10 {
        let (ticket, _) = a.issue_ticket(&admin).await.expect("ticket");
        let (on_a, on_b) = tokio::join!(a.redeem_ticket(&ticket), b.redeem_ticket(&ticket));
        let (on_a, on_b) = (
            on_a.expect("the token store answers"),
            on_b.expect("the token store answers"),
        );
        assert_eq!(
            usize::from(on_a.is_some()) + usize::from(on_b.is_some()),
            1,
            "round {round}: taken by both or neither"
        );
    }
}

#[tokio::test]
async fn instances_bootstrapping_at_once_make_one_admin_token() {
    for round in 0..3 {
        let db = TempDatabase::create().await.expect("test database");
        let (a, b) = (instance(&db).await, instance(&db).await);
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let (on_a, on_b) = tokio::join!(
            a.bootstrap(Some(ADMIN), dir_a.path()),
            b.bootstrap(Some(ADMIN), dir_b.path())
        );
        let mut outcomes = [on_a.expect("a"), on_b.expect("b")];
        outcomes.sort_by_key(|o| format!("{o:?}"));
        assert_eq!(
            outcomes,
            [Bootstrap::Existing, Bootstrap::FromEnv],
            "round {round}"
        );
        assert_eq!(a.list().await.expect("list").len(), 1, "round {round}");
        assert!(a.authenticate(ADMIN).is_some() && b.authenticate(ADMIN).is_some());
    }
    for round in 0..3 {
        let db = TempDatabase::create().await.expect("test database");
        let (a, b) = (instance(&db).await, instance(&db).await);
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("a"),
            tempfile::tempdir().expect("b"),
        );
        let (on_a, on_b) = tokio::join!(
            a.bootstrap(None, dir_a.path()),
            b.bootstrap(None, dir_b.path())
        );
        let generated: Vec<String> = [on_a.expect("a"), on_b.expect("b")]
            .into_iter()
            .filter_map(|o| match o {
                Bootstrap::Generated { token, .. } => Some(token),
                Bootstrap::Existing => None,
                other => panic!("round {round}: {other:?}"),
            })
            .collect();
        assert_eq!(generated.len(), 1, "round {round}: one instance generates");
        assert_eq!(a.list().await.expect("list").len(), 1, "round {round}");
        assert!(a.authenticate(&generated[0]).is_some());
        assert!(b.authenticate(&generated[0]).is_some());
    }
}

#[tokio::test]
async fn a_database_that_is_away_is_unavailable() {
    let mut options = PgOptions::new("postgres://postgres@127.0.0.1:1/none");
    options.connect_timeout = Duration::from_secs(1);
    let e = PgTokens::open(&options)
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(e, AuthError::Unavailable(_)), "{e}");
}
