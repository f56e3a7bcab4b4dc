//! The PostgreSQL plumbing against the machine's PostgreSQL
//! (`CDS_EVENTS_TEST_POSTGRES`), each test in a database of its own.

use cds_events_store::Error;
use cds_events_store::pg::testing::{TempDatabase, admin_url};
use cds_events_store::pg::{Listener, PgMigration, PgOptions, PgPool, PgSchema, is_unavailable};
use std::time::Duration;

const V1: PgSchema = PgSchema {
    component: "things",
    create: "CREATE TABLE things (id BIGINT PRIMARY KEY);",
    version: 1,
    migrations: &[],
};

const V2: PgSchema = PgSchema {
    component: "things",
    create: "CREATE TABLE things (id BIGINT PRIMARY KEY, name TEXT);",
    version: 2,
    migrations: &[PgMigration {
        from: 1,
        sql: "ALTER TABLE things ADD COLUMN name TEXT;",
    }],
};

async fn pool(db: &TempDatabase) -> PgPool {
    PgPool::connect(&db.options()).await.expect("connect")
}

#[tokio::test]
async fn instances_starting_together_create_the_layout_once() {
    let db = TempDatabase::create().await.expect("test database");
    let pools: Vec<PgPool> = futures_join(4, &db).await;
    let mut tasks = Vec::new();
    for p in pools {
        tasks.push(tokio::spawn(async move { V1.apply(&p).await }));
    }
    let mut fresh = 0;
    for t in tasks {
        // Without the lock, two `CREATE TABLE things` would race and one fail.
        if t.await.expect("task").expect("apply").is_none() {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one instance found the database new");
}

async fn futures_join(n: usize, db: &TempDatabase) -> Vec<PgPool> {
    let mut pools = Vec::new();
    for _ in 0..n {
        pools.push(pool(db).await);
    }
    pools
}

#[tokio::test]
async fn an_older_layout_is_migrated_and_a_newer_one_refused() {
    let db = TempDatabase::create().await.expect("test database");
    let p = pool(&db).await;
    assert_eq!(V1.apply(&p).await.expect("v1"), None);
    assert_eq!(V2.apply(&p).await.expect("v1 to v2"), Some(1));
    let conn = p.get().await.expect("conn");
    conn.execute("INSERT INTO things (id, name) VALUES (1, 'a')", &[])
        .await
        .expect("the migration added the column");
    assert_eq!(V2.apply(&p).await.expect("again"), Some(2));
    match V1.apply(&p).await {
        Err(Error::SchemaTooNew { found, known, .. }) => assert_eq!((found, known), (2, 1)),
        other => panic!("a newer layout must be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_migration_leaves_the_version_as_it_was() {
    const BROKEN: PgSchema = PgSchema {
        component: "things",
        create: "",
        version: 2,
        migrations: &[PgMigration {
            from: 1,
            sql: "ALTER TABLE no_such_table ADD COLUMN x INT;",
        }],
    };
    let db = TempDatabase::create().await.expect("test database");
    let p = pool(&db).await;
    V1.apply(&p).await.expect("v1");
    assert!(matches!(
        BROKEN.apply(&p).await,
        Err(Error::Migration { from: 1, .. })
    ));
    assert_eq!(V1.apply(&p).await.expect("still v1"), Some(1));
}

#[tokio::test]
async fn a_listener_hears_notifications_sent_after_commit() {
    let db = TempDatabase::create().await.expect("test database");
    let p = pool(&db).await;
    let mut listener = Listener::open(&db.options(), &["head"])
        .await
        .expect("listen");
    let mut conn = p.get().await.expect("conn");
    let tx = conn.transaction().await.expect("begin");
    tx.execute("SELECT pg_notify('head', '42')", &[])
        .await
        .expect("notify");
    let early = tokio::time::timeout(Duration::from_millis(200), listener.recv()).await;
    assert!(early.is_err(), "nothing is delivered before the commit");
    tx.commit().await.expect("commit");
    let n = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("delivered after the commit")
        .expect("connection alive");
    assert_eq!((n.channel.as_str(), n.payload.as_str()), ("head", "42"));
}

#[tokio::test]
async fn a_listener_ends_when_its_connection_is_killed() {
    let db = TempDatabase::create().await.expect("test database");
    let p = pool(&db).await;
    let mut listener = Listener::open(&db.options(), &["head"])
        .await
        .expect("listen");
    let conn = p.get().await.expect("conn");
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND query LIKE 'LISTEN%'",
        &[],
    )
    .await
    .expect("terminate");
    let end = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("the end is reported");
    assert_eq!(end, None);
}

#[tokio::test]
async fn a_dropped_test_database_is_gone() {
    let db = TempDatabase::create().await.expect("test database");
    let name = db.name().to_owned();
    drop(db);
    let (client, conn) = tokio_postgres_connect().await;
    let _driver = tokio::spawn(conn);
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
}

async fn tokio_postgres_connect() -> (
    cds_events_store::pg::tokio_postgres::Client,
    cds_events_store::pg::tokio_postgres::Connection<
        cds_events_store::pg::tokio_postgres::Socket,
        cds_events_store::pg::tokio_postgres::tls::NoTlsStream,
    >,
) {
    cds_events_store::pg::tokio_postgres::connect(
        &admin_url(),
        cds_events_store::pg::tokio_postgres::NoTls,
    )
    .await
    .expect("admin connection")
}

#[tokio::test]
async fn a_wrong_url_or_a_server_away_is_an_error_at_connect() {
    let mut opts = PgOptions::new("postgres://postgres@127.0.0.1:1/none");
    opts.connect_timeout = Duration::from_secs(1);
    let err = PgPool::connect(&opts)
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_unavailable(), "{err:?}");
    let err = PgPool::connect(&PgOptions::new("not a url at all ===")).await;
    assert!(matches!(err, Err(Error::Config(_))), "{err:?}");
}

#[tokio::test]
async fn pooled_connections_carry_the_statement_timeout() {
    let db = TempDatabase::create().await.expect("test database");
    let mut opts = db.options();
    opts.statement_timeout = Some(Duration::from_millis(250));
    let p = PgPool::connect(&opts).await.expect("connect");
    let conn = p.get().await.expect("conn");
    let shown: String = conn
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(shown, "250ms");
    let err = conn
        .execute("SELECT pg_sleep(2)", &[])
        .await
        .expect_err("cancelled by the server");
    assert!(
        !Error::from(err).is_unavailable(),
        "a timeout is not an outage"
    );
}

/// A statement prepared while its table was small is planned again once
/// the table is large (a cached generic plan would keep scanning it).
#[tokio::test]
async fn statements_are_planned_for_the_table_as_it_is_now() {
    let db = TempDatabase::create().await.expect("test database");
    let p = pool(&db).await;
    let conn = p.get().await.expect("conn");
    conn.batch_execute(
        "CREATE TABLE grows (id TEXT PRIMARY KEY, body TEXT NOT NULL);
         INSERT INTO grows VALUES ('a', 'x');
         PREPARE lookup(text[]) AS SELECT id FROM grows WHERE id = ANY($1);",
    )
    .await
    .expect("set up");
    for _ in 0..8 {
        conn.batch_execute("EXECUTE lookup('{a}')")
            .await
            .expect("execute");
    }
    conn.batch_execute(
        "INSERT INTO grows SELECT 'id-' || i, repeat('x', 200) FROM generate_series(1, 100000) i",
    )
    .await
    .expect("grow");
    let plan: Vec<String> = conn
        .query("EXPLAIN EXECUTE lookup('{id-5}')", &[])
        .await
        .expect("explain")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(plan[0].contains("Index"), "{plan:?}");
}

#[tokio::test]
async fn a_statement_the_client_refuses_is_not_an_outage() {
    let db = TempDatabase::create().await.expect("test database");
    let p = pool(&db).await;
    let conn = p.get().await.expect("conn");
    // An i64 for an INTEGER parameter: refused before anything is sent.
    let wrong_type = conn
        .query_one("SELECT $1::INTEGER", &[&1i64])
        .await
        .expect_err("an i64 is no INTEGER");
    assert!(!is_unavailable(&wrong_type), "{wrong_type:?}");
    let no_row = conn
        .query_one("SELECT 1 WHERE false", &[])
        .await
        .expect_err("no row");
    assert!(!is_unavailable(&no_row), "{no_row:?}");
    assert!(!Error::from(no_row).is_unavailable());
}
