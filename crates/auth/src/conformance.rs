//! The conformance suite every [`TokenBackend`] must pass.
//!
//! Each check is a plain async function over a [`Harness`]; a backend runs them all
//! with [`conformance_tests!`](crate::conformance_tests) in its own test file.
//! A harness opens the backend over a store of its own, and can open the same
//! store again (a restart).
//!
//! Nothing here may depend on one backend: the fixtures' times are whole
//! seconds (a backend keeps at least microseconds), every ticket stands for a
//! stored token (a backend may enforce it), and no ticket is expected to
//! survive a reopening (a backend may keep tickets in memory).

use crate::{
    AuthError, Grant, NewAuditEntry, SecretHash, StoredToken, Ticket, TokenBackend, TokenInfo,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::Barrier;

/// Opens a backend over one private store.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Opens the store (again, to check what survives a restart).
    async fn open(&self) -> Arc<dyn TokenBackend>;
}

/// A fixed time, `secs` after an arbitrary origin.
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 0).expect("a time in range")
}

/// A token of id `id` whose secret is `secret`, created at `at(created)`.
fn token(id: &str, secret: &str, created: i64) -> StoredToken {
    StoredToken {
        info: TokenInfo {
            id: id.into(),
            name: format!("token {id}"),
            grants: vec![
                Grant::Read(Some("P".parse().expect("key"))),
                Grant::Publish(None),
            ],
            created_at: at(created),
            expires_at: Some(at(created + 3600)),
            created_by: Some("admin".into()),
        },
        hash: SecretHash::of(secret),
    }
}

fn change(action: &str, target: &str, secs: i64) -> NewAuditEntry {
    NewAuditEntry {
        at: at(secs),
        actor: "admin".into(),
        action: action.into(),
        target: target.into(),
        detail: json!({"n": secs, "list": ["a", 1]}),
    }
}

/// Stores a token of id `id` (its secret is `secret-<id>`) created at
/// `at(created)`, with its audit entry.
async fn insert(b: &dyn TokenBackend, id: &str, created: i64) -> StoredToken {
    let t = token(id, &format!("secret-{id}"), created);
    b.insert_token(&t, &change("token.create", id, created))
        .await
        .expect("insert");
    t
}

async fn revoke(b: &dyn TokenBackend, id: &str, secs: i64) -> bool {
    let mut e = change("token.revoke", id, secs);
    e.detail = serde_json::Value::Null;
    b.revoke_token(id, &e).await.expect("revoke")
}

fn ids(tokens: &[TokenInfo]) -> Vec<&str> {
    tokens.iter().map(|t| t.id.as_str()).collect()
}

async fn active_ids(b: &dyn TokenBackend) -> Vec<String> {
    let mut out: Vec<String> = b
        .active_tokens()
        .await
        .expect("active")
        .into_iter()
        .map(|t| t.info.id)
        .collect();
    out.sort();
    out
}

fn ticket(text: &str, token_id: &str, expires: i64) -> Ticket {
    Ticket {
        hash: SecretHash::of(text),
        token_id: token_id.into(),
        expires_at: at(expires),
    }
}

async fn store_ticket(b: &dyn TokenBackend, text: &str, token_id: &str, expires: i64) -> Ticket {
    let t = ticket(text, token_id, expires);
    b.store_ticket(&t).await.expect("store ticket");
    t
}

async fn take(b: &dyn TokenBackend, t: &Ticket, now: i64) -> Option<String> {
    b.take_ticket(&t.hash, at(now)).await.expect("take")
}

pub async fn a_token_is_stored_only_as_its_hash(h: &dyn Harness) {
    let secret = "cdse-conformance-secret-0123456789";
    let t = token("a1", secret, 0);
    let mut bare = token("a2", "another-secret-entirely", 1);
    bare.info.expires_at = None;
    bare.info.created_by = None;
    let b = h.open().await;
    b.insert_token(&t, &change("token.create", "a1", 0))
        .await
        .expect("insert");
    b.insert_token(&bare, &change("token.create", "a2", 1))
        .await
        .expect("insert");
    drop(b);
    let b = h.open().await;
    let mut stored = b.active_tokens().await.expect("active");
    stored.sort_by(|x, y| x.info.id.cmp(&y.info.id));
    assert_eq!(
        stored,
        [t, bare],
        "every field comes back as it went in, after a reopening"
    );
    assert!(stored[0].hash.matches(secret));
    assert!(!stored[0].hash.matches("cdse-conformance-secret-012345678"));
    // The backend was never given the secret, so nothing it answers holds it.
    let answers = format!(
        "{stored:?} {:?} {:?}",
        b.list_tokens().await.expect("list"),
        b.audit(10).await.expect("audit")
    );
    assert!(!answers.contains(secret));
}

pub async fn a_token_id_is_stored_once(h: &dyn Harness) {
    let b = h.open().await;
    let first = insert(&*b, "a1", 0).await;
    let again = token("a1", "a-second-secret", 5);
    let refused = async |secs, why: &str| {
        let e = b
            .insert_token(&again, &change("token.create", "a1", secs))
            .await
            .expect_err(why);
        assert!(
            matches!(&e, AuthError::TokenExists { id } if id == "a1"),
            "{why}: {e}"
        );
    };
    refused(5, "the same id twice").await;
    assert_eq!(
        b.audit(10).await.expect("audit").len(),
        1,
        "the refused insert wrote no audit entry"
    );
    assert_eq!(b.active_tokens().await.expect("active"), [first]);
    assert!(revoke(&*b, "a1", 6).await);
    refused(7, "a revoked id is not reused").await;
}

pub async fn revoking_writes_the_audit_entry_with_the_change(h: &dyn Harness) {
    let b = h.open().await;
    insert(&*b, "a1", 0).await;
    insert(&*b, "a2", 1).await;
    let mut entry = change("token.revoke", "a1", 10);
    entry.actor = "a2".into();
    assert!(b.revoke_token("a1", &entry).await.expect("revoke"));
    let trail = b.audit(10).await.expect("audit");
    assert_eq!(trail.len(), 3);
    let newest = &trail[0];
    assert_eq!(
        (
            newest.at,
            newest.actor.as_str(),
            newest.action.as_str(),
            newest.target.as_str(),
            &newest.detail
        ),
        (entry.at, "a2", "token.revoke", "a1", &entry.detail)
    );
    assert_eq!(active_ids(&*b).await, ["a2"]);
    assert!(!revoke(&*b, "a1", 11).await, "only once");
    assert!(!revoke(&*b, "no-such-token", 12).await);
    assert_eq!(
        b.audit(10).await.expect("audit").len(),
        3,
        "a revocation that changed nothing is not recorded"
    );
}

pub async fn a_revoked_token_stays_revoked_after_reopening(h: &dyn Harness) {
    let b = h.open().await;
    insert(&*b, "a1", 0).await;
    insert(&*b, "a2", 1).await;
    assert!(revoke(&*b, "a1", 2).await);
    drop(b);
    let b = h.open().await;
    assert_eq!(active_ids(&*b).await, ["a2"]);
    assert_eq!(ids(&b.list_tokens().await.expect("list")), ["a2"]);
}

pub async fn list_is_the_active_tokens_oldest_first(h: &dyn Harness) {
    let b = h.open().await;
    insert(&*b, "c", 30).await;
    insert(&*b, "b", 10).await;
    insert(&*b, "a", 10).await;
    insert(&*b, "d", 20).await;
    assert!(revoke(&*b, "d", 40).await);
    assert_eq!(
        ids(&b.list_tokens().await.expect("list")),
        ["a", "b", "c"],
        "by creation time, then by id"
    );
}

pub async fn the_bootstrap_marker_survives_reopening(h: &dyn Harness) {
    let b = h.open().await;
    assert!(!b.ever_had_a_token().await.expect("marker"), "a new store");
    insert(&*b, "a1", 0).await;
    assert!(b.ever_had_a_token().await.expect("marker"));
    assert!(revoke(&*b, "a1", 1).await);
    drop(b);
    assert!(
        h.open().await.ever_had_a_token().await.expect("marker"),
        "a store whose every token was revoked still had one"
    );
}

pub async fn an_active_token_is_found_by_id(h: &dyn Harness) {
    let b = h.open().await;
    let a1 = insert(&*b, "a1", 0).await;
    insert(&*b, "a2", 1).await;
    assert!(revoke(&*b, "a2", 2).await);
    let found = |id: &'static str| {
        let b = Arc::clone(&b);
        async move { b.active_token(id).await.expect("active token") }
    };
    assert_eq!(found("a1").await, Some(a1), "every field, with the hash");
    assert_eq!(found("a2").await, None, "a revoked token is not found");
    assert_eq!(found("a3").await, None);
}

pub async fn the_first_token_goes_only_into_a_store_that_never_had_one(h: &dyn Harness) {
    let b = h.open().await;
    let first = token("a1", "secret-a1", 0);
    assert!(
        b.insert_first_token(&first, &change("token.create", "a1", 0))
            .await
            .expect("first")
    );
    let second = token("a2", "secret-a2", 1);
    assert!(
        !b.insert_first_token(&second, &change("token.create", "a2", 1))
            .await
            .expect("second"),
        "a store with a token refuses a first token"
    );
    assert_eq!(active_ids(&*b).await, ["a1"]);
    assert_eq!(
        b.audit(10).await.expect("audit").len(),
        1,
        "the refused one wrote no audit entry"
    );
    assert!(revoke(&*b, "a1", 2).await);
    drop(b);
    let b = h.open().await;
    assert!(
        !b.insert_first_token(&second, &change("token.create", "a2", 3))
            .await
            .expect("after a revocation"),
        "nor does one whose every token was revoked"
    );
    assert_eq!(active_ids(&*b).await, Vec::<String>::new());
}

pub async fn of_first_tokens_inserted_at_once_one_is_stored(h: &dyn Harness) {
    const STARTERS: usize = 8;
    let b = h.open().await;
    // Side by side first, so that a backend with a pool has a connection
    // ready for each starter and they race in earnest.
    let warm: Vec<_> = (0..STARTERS)
        .map(|_| {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.ever_had_a_token().await.expect("read") })
        })
        .collect();
    for w in warm {
        assert!(!w.await.expect("warm-up"));
    }
    let start = Arc::new(Barrier::new(STARTERS));
    let starters: Vec<_> = (0..STARTERS)
        .map(|i| {
            let (b, start) = (Arc::clone(&b), Arc::clone(&start));
            tokio::spawn(async move {
                let id = format!("first-{i}");
                let t = token(&id, &format!("secret-{id}"), 0);
                start.wait().await;
                b.insert_first_token(&t, &change("token.create", &id, 0))
                    .await
                    .expect("insert first")
            })
        })
        .collect();
    let mut stored = 0;
    for s in starters {
        if s.await.expect("starter") {
            stored += 1;
        }
    }
    assert_eq!(stored, 1, "{stored} starters stored their first token");
    assert_eq!(active_ids(&*b).await.len(), 1);
    assert_eq!(b.audit(10).await.expect("audit").len(), 1);
}

pub async fn audit_is_newest_first_and_limited(h: &dyn Harness) {
    let b = h.open().await;
    for i in 0..5 {
        b.append_audit(&change("test.step", &format!("t{i}"), i))
            .await
            .expect("append");
    }
    insert(&*b, "a1", 5).await;
    let all = b.audit(10).await.expect("audit");
    let targets: Vec<&str> = all.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["a1", "t4", "t3", "t2", "t1", "t0"]);
    assert!(
        all.windows(2).all(|w| w[0].seq > w[1].seq),
        "seq decreases down the list: {all:?}"
    );
    let top = b.audit(2).await.expect("audit");
    assert_eq!(top, all[..2]);
    let e = &all[1];
    assert_eq!(
        (e.at, e.actor.as_str(), e.action.as_str(), &e.detail),
        (
            at(4),
            "admin",
            "test.step",
            &json!({"n": 4, "list": ["a", 1]})
        )
    );
    drop(b);
    assert_eq!(
        h.open().await.audit(3).await.expect("audit"),
        all[..3],
        "the trail survives a reopening"
    );
}

pub async fn a_ticket_is_taken_once(h: &dyn Harness) {
    let b = h.open().await;
    insert(&*b, "a1", 0).await;
    let t = store_ticket(&*b, "cdst_once", "a1", 60).await;
    assert_eq!(take(&*b, &t, 0).await.as_deref(), Some("a1"));
    assert_eq!(take(&*b, &t, 1).await, None, "a second take finds nothing");
    let unknown = ticket("cdst_never-stored", "a1", 60);
    assert_eq!(take(&*b, &unknown, 0).await, None);
}

pub async fn an_expired_ticket_is_not_taken(h: &dyn Harness) {
    let b = h.open().await;
    insert(&*b, "a1", 0).await;
    let late = store_ticket(&*b, "cdst_late", "a1", 10).await;
    assert_eq!(take(&*b, &late, 11).await, None);
    let edge = store_ticket(&*b, "cdst_edge", "a1", 10).await;
    assert_eq!(
        take(&*b, &edge, 10).await,
        None,
        "at its expiry a ticket is gone"
    );
    assert_eq!(
        take(&*b, &edge, 0).await,
        None,
        "a take that found it expired consumed it"
    );
}

pub async fn expired_tickets_are_swept(h: &dyn Harness) {
    let b = h.open().await;
    insert(&*b, "a1", 0).await;
    store_ticket(&*b, "cdst_old", "a1", 5).await;
    store_ticket(&*b, "cdst_edge", "a1", 10).await;
    let live = store_ticket(&*b, "cdst_live", "a1", 20).await;
    assert_eq!(b.sweep_tickets(at(10)).await.expect("sweep"), 2);
    assert_eq!(b.sweep_tickets(at(10)).await.expect("sweep"), 0);
    assert_eq!(
        take(&*b, &live, 10).await.as_deref(),
        Some("a1"),
        "a live ticket is kept"
    );
}

pub async fn revoking_a_token_drops_its_tickets(h: &dyn Harness) {
    let b = h.open().await;
    insert(&*b, "a1", 0).await;
    insert(&*b, "a2", 0).await;
    let of_a1 = store_ticket(&*b, "cdst_a1", "a1", 60).await;
    let of_a2 = store_ticket(&*b, "cdst_a2", "a2", 60).await;
    assert!(revoke(&*b, "a1", 1).await);
    assert_eq!(take(&*b, &of_a1, 2).await, None);
    assert_eq!(take(&*b, &of_a2, 2).await.as_deref(), Some("a2"));
}

pub async fn a_ticket_taken_by_many_at_once_is_taken_once(h: &dyn Harness) {
    const TAKERS: usize = 8;
    let b = h.open().await;
    insert(&*b, "a1", 0).await;
    for round in 0..20 {
        let t = store_ticket(&*b, &format!("cdst_race-{round}"), "a1", 60).await;
        let start = Arc::new(Barrier::new(TAKERS));
        let takers: Vec<_> = (0..TAKERS)
            .map(|_| {
                let (b, t, start) = (Arc::clone(&b), t.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    take(&*b, &t, 0).await.is_some()
                })
            })
            .collect();
        let mut won = 0;
        for taker in takers {
            if taker.await.expect("taker") {
                won += 1;
            }
        }
        assert_eq!(won, 1, "round {round}: taken {won} times");
    }
}

/// Runs the whole suite on the backend a harness expression opens: one line
/// in a backend's test file, `cds_events_auth::conformance_tests!(MyHarness::new());`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            a_token_is_stored_only_as_its_hash,
            a_token_id_is_stored_once,
            revoking_writes_the_audit_entry_with_the_change,
            a_revoked_token_stays_revoked_after_reopening,
            list_is_the_active_tokens_oldest_first,
            the_bootstrap_marker_survives_reopening,
            an_active_token_is_found_by_id,
            the_first_token_goes_only_into_a_store_that_never_had_one,
            of_first_tokens_inserted_at_once_one_is_stored,
            audit_is_newest_first_and_limited,
            a_ticket_is_taken_once,
            an_expired_ticket_is_not_taken,
            expired_tickets_are_swept,
            revoking_a_token_drops_its_tickets,
            a_ticket_taken_by_many_at_once_is_taken_once,
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $make;
                $crate::conformance::$name(&harness).await;
            }
        )+
    };
}
