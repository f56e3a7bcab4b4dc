//! The token store: creation, authentication, revocation, expiry, bootstrap,
//! tickets and the audit trail.

use cds_events_auth::*;
use std::time::{Duration, Instant};

async fn store(dir: &std::path::Path) -> TokenStore {
    TokenStore::open(dir, Duration::from_secs(60))
        .await
        .expect("open")
}

/// Polls `cond` until it holds, or panics after 10 s naming `what`.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn admin(s: &TokenStore) -> std::sync::Arc<Principal> {
    let dir = tempfile::tempdir().expect("tempdir");
    match s
        .bootstrap(Some("an-admin-token-long-enough"), dir.path())
        .await
        .expect("bootstrap")
    {
        Bootstrap::FromEnv | Bootstrap::Existing => {}
        other => panic!("{other:?}"),
    }
    s.authenticate("an-admin-token-long-enough").expect("admin")
}

#[tokio::test]
async fn a_created_token_authenticates_until_revoked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path()).await;
    let a = admin(&s).await;
    let t = s
        .create("ci", vec!["read:P".parse().expect("g")], None, &a)
        .await
        .expect("create");
    assert!(t.secret.starts_with("cdse_"));
    let p = s.authenticate(&t.secret).expect("valid");
    assert_eq!(p.token_id, t.info.id);
    assert!(p.can_read(&cds_events_model::EventScope::Project(
        "P".parse().expect("key")
    )));
    // A near miss is refused.
    let mut wrong = t.secret.clone();
    wrong.pop();
    wrong.push('x');
    assert!(s.authenticate(&wrong).is_none());
    assert!(s.authenticate("").is_none());
    assert!(s.authenticate("cdse_nothing").is_none());
    assert!(s.revoke(&t.info.id, &a).await.expect("revoke"));
    assert!(
        s.authenticate(&t.secret).is_none(),
        "revocation is immediate"
    );
    assert!(
        !s.revoke(&t.info.id, &a).await.expect("revoke"),
        "only once"
    );
    // The hash is all that is stored.
    let db = std::fs::read(dir.path().join(AUTH_DB)).expect("db");
    let secret_part = t.secret.rsplit('_').next().expect("secret");
    assert!(
        !db.windows(secret_part.len())
            .any(|w| w == secret_part.as_bytes())
    );
}

#[tokio::test]
async fn tokens_survive_a_restart_and_expiry_is_enforced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path()).await;
    let a = admin(&s).await;
    let t = s
        .create("later", vec![Grant::Publish(None)], None, &a)
        .await
        .expect("create");
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    let e = s
        .create("short", vec![Grant::Publish(None)], Some(soon), &a)
        .await
        .expect("create");
    assert!(s.authenticate(&e.secret).is_some());
    assert!(
        s.create("past", vec![Grant::Admin], Some(chrono::Utc::now()), &a)
            .await
            .is_err()
    );
    assert!(s.create("none", vec![], None, &a).await.is_err());
    drop(s);
    let s = store(dir.path()).await;
    assert!(s.authenticate(&t.secret).is_some());
    wait_until("the expiry time", || chrono::Utc::now() > soon).await;
    assert!(s.authenticate(&e.secret).is_none(), "expired");
    let names: Vec<String> = s
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["admin (CDS_EVENTS_ADMIN_TOKEN)", "later", "short"]);
}

#[tokio::test]
async fn bootstrap_generates_a_private_token_file_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path()).await;
    let Bootstrap::Generated { token, file } =
        s.bootstrap(None, dir.path()).await.expect("bootstrap")
    else {
        panic!("expected a generated token")
    };
    assert_eq!(
        read_admin_token(dir.path()).as_deref(),
        Some(token.as_str())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(s.authenticate(&token).expect("admin").is_admin());
    drop(s);
    let s = store(dir.path()).await;
    assert_eq!(
        s.bootstrap(Some("another-token-entirely"), dir.path())
            .await
            .expect("again"),
        Bootstrap::Existing
    );
    assert!(
        s.authenticate("another-token-entirely").is_none(),
        "a later env token changes nothing"
    );
    assert_eq!(
        read_admin_token(dir.path()).as_deref(),
        Some(token.as_str())
    );
    assert!(
        s.bootstrap(Some("short"), tempfile::tempdir().expect("t").path())
            .await
            .is_ok(),
        "existing store: ignored"
    );
    let fresh = tempfile::tempdir().expect("tempdir");
    assert!(
        store(fresh.path())
            .await
            .bootstrap(Some("short"), fresh.path())
            .await
            .is_err(),
        "a weak env token is refused"
    );
}

#[tokio::test]
async fn tickets_are_single_use_and_short_lived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = TokenStore::open(dir.path(), Duration::from_millis(200))
        .await
        .expect("open");
    let a = admin(&s).await;
    let (ticket, ttl) = s.issue_ticket(&a).await.expect("ticket");
    assert_eq!(ttl, Duration::from_millis(200));
    assert_eq!(
        s.redeem_ticket(&ticket)
            .await
            .expect("the token store answers")
            .expect("first use")
            .token_id,
        a.token_id
    );
    assert!(
        s.redeem_ticket(&ticket)
            .await
            .expect("the token store answers")
            .is_none(),
        "second use"
    );
    let (late, ttl) = s.issue_ticket(&a).await.expect("ticket");
    // Issued before now: expired once `ttl` has passed from now.
    let expired_by = Instant::now() + ttl;
    wait_until("the ticket's expiry", || Instant::now() > expired_by).await;
    assert!(
        s.redeem_ticket(&late)
            .await
            .expect("the token store answers")
            .is_none(),
        "expired"
    );
    let r = s
        .create("r", vec![Grant::ReadGlobal], None, &a)
        .await
        .expect("create");
    let rp = s.authenticate(&r.secret).expect("r");
    let (t, _) = s.issue_ticket(&rp).await.expect("ticket");
    s.revoke(&r.info.id, &a).await.expect("revoke");
    assert!(
        s.redeem_ticket(&t)
            .await
            .expect("the token store answers")
            .is_none(),
        "a revoked token's tickets die with it"
    );
}

#[tokio::test]
async fn the_audit_trail_records_creation_and_revocation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = store(dir.path()).await;
    let a = admin(&s).await;
    let t = s
        .create("bot", vec![Grant::Read(None)], None, &a)
        .await
        .expect("create");
    s.revoke(&t.info.id, &a).await.expect("revoke");
    let trail = s.audit(10).await.expect("audit");
    let actions: Vec<(&str, &str, &str)> = trail
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("bootstrap", "token.revoke", t.info.id.as_str()),
            ("bootstrap", "token.create", t.info.id.as_str()),
            ("system", "token.create", "bootstrap")
        ]
    );
    assert_eq!(trail[1].detail["grants"][0], "read:*");
    let text = serde_json::to_string(&trail).expect("json");
    assert!(!text.contains(&t.secret));
}

/// `auth.db` as the builds before the store crate wrote it: its two tables,
/// no `meta` table and no schema version, one admin token from the
/// environment.
fn previous_build_db(dir: &std::path::Path) {
    use sha2::Digest;
    let conn = rusqlite::Connection::open(dir.join(AUTH_DB)).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, grants TEXT NOT NULL,
                              hash BLOB NOT NULL, created_at TEXT NOT NULL, expires_at TEXT,
                              created_by TEXT, revoked_at TEXT);
         CREATE TABLE audit (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL,
                             action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL);
         INSERT INTO audit(at, actor, action, target, detail)
         VALUES ('2024-01-01 00:00:00+00:00', 'system', 'token.create', 'bootstrap', '{}');",
    )
    .expect("previous layout");
    let hash = sha2::Sha256::digest(b"an-admin-token-long-enough").to_vec();
    conn.execute(
        "INSERT INTO tokens(id, name, grants, hash, created_at)
         VALUES ('bootstrap', 'admin (CDS_EVENTS_ADMIN_TOKEN)', '[\"admin\"]', ?1,
                 '2024-01-01 00:00:00+00:00')",
        [hash],
    )
    .expect("token");
}

#[tokio::test]
async fn a_store_of_the_previous_build_opens_with_its_tokens_and_gets_version_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    previous_build_db(dir.path());
    let s = store(dir.path()).await;
    let a = s
        .authenticate("an-admin-token-long-enough")
        .expect("the stored admin token still works");
    assert_eq!(
        s.bootstrap(None, dir.path()).await.expect("bootstrap"),
        Bootstrap::Existing
    );
    s.create("ci", vec![Grant::Publish(None)], None, &a)
        .await
        .expect("create");
    assert_eq!(s.audit(10).await.expect("audit").len(), 2);
    drop(s);
    let conn = rusqlite::Connection::open(dir.path().join(AUTH_DB)).expect("open");
    let version: i64 = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .expect("version written at first open");
    assert_eq!(version, 1);
    drop(conn);
    // And it opens again.
    let s = store(dir.path()).await;
    assert_eq!(s.list().await.expect("list").len(), 2);
}

#[tokio::test]
async fn a_store_of_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(store(dir.path()).await);
    let conn = rusqlite::Connection::open(dir.path().join(AUTH_DB)).expect("open");
    conn.execute("UPDATE meta SET value = 2 WHERE key = 'schema_version'", [])
        .expect("v2");
    drop(conn);
    let e = TokenStore::open(dir.path(), Duration::from_secs(60))
        .await
        .expect_err("refused");
    assert!(
        matches!(
            e,
            AuthError::SchemaTooNew {
                found: 2,
                known: 1,
                ..
            }
        ),
        "{e}"
    );
}
