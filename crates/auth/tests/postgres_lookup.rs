//! Look-ups of tokens an instance's copy does not hold yet, over
//! PostgreSQL: with the change signal silenced, so that whatever the copy
//! did not load can only have come from a look-up.

use async_trait::async_trait;
use cds_events_auth::postgres::PgTokens;
use cds_events_auth::{
    AuditEntry, AuthError, Bootstrap, CreatedToken, Grant, NewAuditEntry, Principal, SecretHash,
    StoredToken, Ticket, TokenBackend, TokenInfo, TokenStore,
};
use cds_events_store::pg::testing::TempDatabase;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// A shared backend whose change signal never moves: the copy over it keeps
/// what it loaded. Its look-ups wait for a permit of `gate`, counted in
/// `waiting` meanwhile.
#[derive(Debug)]
struct Unheard {
    inner: PgTokens,
    silence: watch::Sender<i64>,
    gate: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

#[async_trait]
impl TokenBackend for Unheard {
    async fn insert_token(&self, t: &StoredToken, a: &NewAuditEntry) -> Result<(), AuthError> {
        self.inner.insert_token(t, a).await
    }
    async fn insert_first_token(
        &self,
        t: &StoredToken,
        a: &NewAuditEntry,
    ) -> Result<bool, AuthError> {
        self.inner.insert_first_token(t, a).await
    }
    async fn revoke_token(&self, id: &str, a: &NewAuditEntry) -> Result<bool, AuthError> {
        self.inner.revoke_token(id, a).await
    }
    async fn list_tokens(&self) -> Result<Vec<TokenInfo>, AuthError> {
        self.inner.list_tokens().await
    }
    async fn active_tokens(&self) -> Result<Vec<StoredToken>, AuthError> {
        self.inner.active_tokens().await
    }
    async fn active_token(&self, id: &str) -> Result<Option<StoredToken>, AuthError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = self.gate.acquire().await.expect("gate open");
        permit.forget();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        self.inner.active_token(id).await
    }
    async fn ever_had_a_token(&self) -> Result<bool, AuthError> {
        self.inner.ever_had_a_token().await
    }
    async fn append_audit(&self, e: &NewAuditEntry) -> Result<(), AuthError> {
        self.inner.append_audit(e).await
    }
    async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, AuthError> {
        self.inner.audit(limit).await
    }
    async fn store_ticket(&self, t: &Ticket) -> Result<(), AuthError> {
        self.inner.store_ticket(t).await
    }
    async fn take_ticket(
        &self,
        h: &SecretHash,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, AuthError> {
        self.inner.take_ticket(h, now).await
    }
    async fn sweep_tickets(&self, now: DateTime<Utc>) -> Result<usize, AuthError> {
        self.inner.sweep_tickets(now).await
    }
    fn changes(&self) -> Option<watch::Receiver<i64>> {
        Some(self.silence.subscribe())
    }
}

const ADMIN: &str = "an-admin-token-long-enough";

/// Instance `a` (following the database) and `b` (over [`Unheard`], whose
/// look-ups pass `gate`), bootstrapped; the admin; `b`'s waiting count.
async fn instances(
    db: &TempDatabase,
    gate: Arc<Semaphore>,
) -> (TokenStore, TokenStore, Arc<Principal>, Arc<AtomicUsize>) {
    let ttl = Duration::from_secs(60);
    let options = db.options();
    let open = || PgTokens::open(&options);
    let a = TokenStore::with_backend(Arc::new(open().await.expect("a")), ttl)
        .await
        .expect("a");
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = a
        .bootstrap(Some(ADMIN), dir.path())
        .await
        .expect("bootstrap");
    assert_eq!(boot, Bootstrap::FromEnv);
    let waiting = Arc::new(AtomicUsize::new(0));
    let unheard = Unheard {
        inner: open().await.expect("b"),
        silence: watch::channel(0).0,
        gate,
        waiting: Arc::clone(&waiting),
    };
    let b = TokenStore::with_backend(Arc::new(unheard), ttl)
        .await
        .expect("b");
    let admin = a.authenticate(ADMIN).expect("admin");
    (a, b, admin, waiting)
}

async fn create(s: &TokenStore, admin: &Principal) -> CreatedToken {
    s.create("ci", vec![Grant::Publish(None)], None, admin)
        .await
        .expect("create")
}

#[tokio::test]
async fn a_token_the_copy_does_not_hold_is_looked_up_and_not_copied() {
    let db = TempDatabase::create().await.expect("test database");
    let open = Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
    let (a, b, admin, _) = instances(&db, open).await;
    let t = create(&a, &admin).await;
    assert!(b.authenticate(&t.secret).is_none(), "b's copy never hears");
    let p = b
        .authenticate_or_look_up(&t.secret)
        .await
        .expect("the token store answers")
        .expect("looked up");
    assert_eq!(p.token_id, t.info.id);
    let mut wrong = t.secret.clone();
    let last = wrong.pop().expect("a secret");
    wrong.push(if last == 'x' { 'y' } else { 'x' });
    assert!(
        b.authenticate_or_look_up(&wrong)
            .await
            .expect("the token store answers")
            .is_none()
    );
    assert!(
        b.authenticate(&t.secret).is_none(),
        "what a look-up finds is not copied"
    );
    let (ticket, _) = a
        .issue_ticket(&a.authenticate(&t.secret).expect("on a"))
        .await
        .expect("ticket");
    let on_b = b
        .redeem_ticket(&ticket)
        .await
        .expect("the token store answers")
        .expect("its token looked up");
    assert_eq!(on_b.token_id, t.info.id);
    assert!(a.revoke(&t.info.id, &admin).await.expect("revoke"));
    assert!(
        b.authenticate_or_look_up(&t.secret)
            .await
            .expect("the token store answers")
            .is_none(),
        "a look-up sees the revocation"
    );
}

#[tokio::test]
async fn look_ups_beyond_four_at_once_are_refused() {
    let db = TempDatabase::create().await.expect("test database");
    let gate = Arc::new(Semaphore::new(0));
    let (a, b, admin, waiting) = instances(&db, Arc::clone(&gate)).await;
    let t = create(&a, &admin).await;
    let b = Arc::new(b);
    let held: Vec<_> = (0..4)
        .map(|_| {
            let (b, secret) = (Arc::clone(&b), t.secret.clone());
            tokio::spawn(async move {
                b.authenticate_or_look_up(&secret)
                    .await
                    .expect("the token store answers")
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while waiting.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "four look-ups under way");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fifth = tokio::time::timeout(Duration::from_secs(1), b.authenticate_or_look_up(&t.secret))
        .await
        .expect("a fifth does not wait for the four")
        .expect("the token store answers");
    assert!(
        fifth.is_none(),
        "a fifth is refused without asking the database"
    );
    assert_eq!(waiting.load(Ordering::SeqCst), 4);
    gate.add_permits(Semaphore::MAX_PERMITS / 2);
    for h in held {
        assert!(h.await.expect("look-up").is_some());
    }
    assert!(
        b.authenticate_or_look_up(&t.secret)
            .await
            .expect("the token store answers")
            .is_some(),
        "served again once they are done"
    );
}
