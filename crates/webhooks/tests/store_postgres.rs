//! The notification store's conformance suite on the PostgreSQL backend,
//! then what only a shared database asks: several instances on one
//! database (the mirror, the cap, the lead passing on, claims at once), a
//! configured master key, the database away. Each test has a
//! database of its own (`CDS_EVENTS_TEST_POSTGRES`, by default the
//! machine's PostgreSQL).

use async_trait::async_trait;
use base64::Engine;
use cds_events_log::Seq;
use cds_events_model::ProjectKey;
use cds_events_store::pg::testing::TempDatabase;
use cds_events_store::pg::{PgOptions, PgPool};
use cds_events_webhooks::crypto::Keyring;
use cds_events_webhooks::signing::SigningSecret;
use cds_events_webhooks::store::conformance::Harness;
use cds_events_webhooks::store::postgres::PgStore;
use cds_events_webhooks::store::{
    Claim, DeliveryId, Mirror, NewDelivery, NotificationId, NotificationRecord, NotificationStore,
    StoreOptions,
};
use cds_events_webhooks::{Actor, DeliveryStatus, WebhooksError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A database of its own, and a directory for a generated key file.
struct Postgres {
    db: TempDatabase,
    keys: tempfile::TempDir,
}

impl Postgres {
    async fn new() -> Postgres {
        Postgres {
            db: TempDatabase::create().await.expect("test database"),
            keys: tempfile::tempdir().expect("tempdir"),
        }
    }
}

#[async_trait]
impl Harness for Postgres {
    async fn open(
        &self,
        mirror: Arc<dyn Mirror>,
        options: StoreOptions,
    ) -> Arc<dyn NotificationStore> {
        // A generated key file, because the suite rotates the key: a key
        // from the configuration (what several instances use) refuses
        // rotation, which `a_configured_key_is_rotated_by_the_configuration`
        // checks below.
        let keyring = Keyring::load(self.keys.path(), None, &[]).expect("keyring");
        Arc::new(
            PgStore::open(&self.db.options(), keyring, mirror, options)
                .await
                .expect("open"),
        )
    }
}

cds_events_webhooks::conformance_tests!(Postgres::new().await);

const NEVER: Duration = Duration::from_secs(5 * 24 * 3600);

/// A mirror that keeps what it is told, and which notifications it was
/// told have deliveries due.
#[derive(Default)]
struct Seen(
    Mutex<HashMap<NotificationId, NotificationRecord>>,
    Mutex<Vec<NotificationId>>,
);

impl Seen {
    fn get(&self, id: NotificationId) -> Option<NotificationRecord> {
        self.lock().get(&id).cloned()
    }

    fn told_due(&self) -> Vec<NotificationId> {
        self.1.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NotificationId, NotificationRecord>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Mirror for Seen {
    fn put(&self, n: NotificationRecord) -> Result<(), WebhooksError> {
        self.lock().insert(n.id, n);
        Ok(())
    }

    fn remove(&self, id: NotificationId) {
        self.lock().remove(&id);
    }

    fn failing_since(&self, id: NotificationId, since: Option<i64>) {
        if let Some(n) = self.lock().get_mut(&id) {
            n.failing_since = since;
        }
    }

    fn due(&self, notifications: &[NotificationId]) {
        self.1
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(notifications);
    }
}

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// An instance: a store on `db` with the configured key `current` (and
/// `previous`), and its mirror.
async fn instance(
    db: &PgOptions,
    current: &str,
    previous: &[String],
) -> Result<(PgStore, Arc<Seen>), WebhooksError> {
    let mirror = Arc::new(Seen::default());
    let keyring = Keyring::configured(current, previous)?;
    let options = StoreOptions {
        disable_after: NEVER,
    };
    let store = PgStore::open(db, keyring, mirror.clone(), options).await?;
    Ok((store, mirror))
}

fn actor() -> Actor {
    Actor {
        user_id: "u1".into(),
        username: "alice".into(),
    }
}

/// A project key of the tests'.
fn project_key(project: &str) -> ProjectKey {
    ProjectKey::new(project).expect("a project key")
}

fn notification(project: &str, name: &str) -> NotificationRecord {
    NotificationRecord {
        id: NotificationId(0),
        uid: format!("uid-{project}-{name}"),
        project: project_key(project),
        name: name.into(),
        url: format!("https://example.com/{name}"),
        filters: BTreeMap::new(),
        headers: [("Authorization".to_owned(), "Bearer t".to_owned())].into(),
        secret: SigningSecret::generate(),
        previous: None,
        enabled: true,
        ordered: false,
        ordered_by: None,
        format: Default::default(),
        content_mode: Default::default(),
        disabled_reason: None,
        failing_since: None,
        last_modified: 1,
    }
}

/// Polls `f` until it is true; returns how long that took, or panics after
/// `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if f().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instances_changes_reach_the_mirror_within_a_second() {
    let db = TempDatabase::create().await.expect("test database");
    let (a, _) = instance(&db.options(), &key(1), &[]).await.expect("a");
    let (b, seen) = instance(&db.options(), &key(1), &[]).await.expect("b");

    let n = a
        .create_notification(notification("P", "slack"), 10, &actor())
        .await
        .expect("create on a");
    within(SECOND, "the creation", || async {
        seen.get(n.id).as_ref() == Some(&n)
    })
    .await;

    let changed = a
        .update_notification(
            &project_key("P"),
            "slack",
            Box::new(|n| {
                n.url = "https://example.com/moved".into();
                n.enabled = false;
                Ok(())
            }),
            &actor(),
        )
        .await
        .expect("update on a");
    within(SECOND, "the update", || async {
        seen.get(n.id).as_ref() == Some(&changed)
    })
    .await;

    a.delete_notification(&project_key("P"), "slack", &actor())
        .await
        .expect("delete on a");
    within(SECOND, "the deletion", || async {
        seen.get(n.id).is_none()
    })
    .await;

    // And the other way round, through the same channel.
    let m = b
        .create_notification(notification("P", "teams"), 10, &actor())
        .await
        .expect("create on b");
    a.update_notification(
        &project_key("P"),
        "teams",
        Box::new(|n| {
            n.ordered = true;
            Ok(())
        }),
        &actor(),
    )
    .await
    .expect("a changes what b created");
    within(SECOND, "b's notification changed by a", || async {
        seen.get(m.id).is_some_and(|n| n.ordered)
    })
    .await;
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_no_one_heard_is_read_again_when_the_listener_reconnects() {
    let db = TempDatabase::create().await.expect("test database");
    let (a, _) = instance(&db.options(), &key(1), &[]).await.expect("a");
    let (b, seen) = instance(&db.options(), &key(1), &[]).await.expect("b");
    let n = a
        .create_notification(notification("P", "slack"), 10, &actor())
        .await
        .expect("create on a");
    within(SECOND, "the creation", || async {
        seen.get(n.id).is_some()
    })
    .await;
    let admin = PgPool::connect(&db.options()).await.expect("pool");
    let conn = admin.get().await.expect("conn");
    // A change announced to no one (as one made while b's listener was
    // away), then the listeners' connections go.
    conn.execute(
        "UPDATE webhook_notifications SET url = 'https://example.com/unheard'",
        &[],
    )
    .await
    .expect("unannounced change");
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND query LIKE 'LISTEN%'",
        &[],
    )
    .await
    .expect("terminate");
    let took = within(Duration::from_secs(20), "read again", || async {
        seen.get(n.id)
            .is_some_and(|n| n.url == "https://example.com/unheard")
    })
    .await;
    assert!(took < Duration::from_secs(5), "at reconnection: {took:?}");
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_project_cap_holds_across_instances() {
    let db = TempDatabase::create().await.expect("test database");
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(
            instance(&db.options(), &key(1), &[]).await.expect("open").0,
        ));
    }
    let mut tries = Vec::new();
    for i in 0..12 {
        let store = Arc::clone(&stores[i % stores.len()]);
        tries.push(tokio::spawn(async move {
            store
                .create_notification(notification("A", &format!("n{i}")), 3, &actor())
                .await
        }));
    }
    let mut created = 0;
    for t in tries {
        match t.await.expect("task") {
            Ok(_) => created += 1,
            Err(WebhooksError::TooMany { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(created, 3, "one project's creations wait for each other");
    for s in stores {
        s.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_key_is_rotated_by_the_configuration() {
    let db = TempDatabase::create().await.expect("test database");
    let (old, _) = instance(&db.options(), &key(1), &[])
        .await
        .expect("old key");
    let n = old
        .create_notification(notification("P", "slack"), 10, &actor())
        .await
        .expect("create");
    let refused = old.rotate_key().await;
    assert!(
        matches!(&refused, Err(WebhooksError::Unsupported(how)) if how.contains("previous_keys")),
        "{refused:?}"
    );
    old.close().await.expect("close");

    // Without the old key, the stored values cannot be opened: a clear error.
    let lost = instance(&db.options(), &key(2), &[]).await;
    assert!(
        matches!(lost, Err(WebhooksError::Key(_))),
        "{:?}",
        lost.err()
    );

    // The new key with the old one in previous_keys: read, and re-sealed.
    let (new, seen) = instance(&db.options(), &key(2), &[key(1)])
        .await
        .expect("new key, old one previous");
    assert_eq!(seen.get(n.id), Some(n.clone()));
    new.close().await.expect("close");

    // So the old key can go.
    let (alone, seen) = instance(&db.options(), &key(2), &[])
        .await
        .expect("the new key alone");
    assert_eq!(seen.get(n.id), Some(n));
    alone.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_away_is_unavailable_not_a_failure() {
    let mut away = PgOptions::new("postgres://postgres@127.0.0.1:1/none");
    away.connect_timeout = SECOND;
    let opened = instance(&away, &key(1), &[]).await;
    assert!(
        matches!(opened, Err(WebhooksError::Unavailable(_))),
        "{:?}",
        opened.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_after_close_is_closed() {
    let db = TempDatabase::create().await.expect("test database");
    let (s, _) = instance(&db.options(), &key(1), &[]).await.expect("open");
    s.close().await.expect("close");
    assert!(matches!(s.pending().await, Err(WebhooksError::Closed)));
    assert!(matches!(
        s.create_notification(notification("P", "x"), 10, &actor())
            .await,
        Err(WebhooksError::Closed)
    ));
    assert!(matches!(s.close().await, Err(WebhooksError::Closed)));
}

/// Options to `db` whose connections carry `name` (so that a test can cut
/// one instance's).
fn named(db: &TempDatabase, name: &str) -> PgOptions {
    PgOptions::new(format!("{} application_name={name}", db.url()))
}

fn new_delivery(n: &NotificationRecord, seq: u64) -> NewDelivery {
    NewDelivery {
        notification: n.id,
        seq: Seq(seq),
        event_id: format!("event-{seq}"),
        order_key: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_whose_session_ends_passes_on_and_its_holder_writes_nothing_more() {
    let db = TempDatabase::create().await.expect("test database");
    let (a, _) = instance(&named(&db, "inst_a"), &key(1), &[])
        .await
        .expect("a");
    let b = Arc::new(
        instance(&named(&db, "inst_b"), &key(1), &[])
            .await
            .expect("b")
            .0,
    );
    let n = a
        .create_notification(notification("P", "slack"), 10, &actor())
        .await
        .expect("create");
    let lead_a = a.lead("a").await.expect("a leads");
    a.create_deliveries(&lead_a, vec![new_delivery(&n, 1)], Seq(1))
        .await
        .expect("a writes");
    let waiting = tokio::spawn({
        let b = Arc::clone(&b);
        async move { b.lead("b").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "b waits while a leads");

    // a's lead session ends (as at kill -9 of its process); its pool
    // still works.
    let admin = PgPool::connect(&db.options()).await.expect("pool");
    admin
        .get()
        .await
        .expect("conn")
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .expect("terminate");
    let started = Instant::now();
    let lead_b = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("b leads within seconds")
        .expect("task")
        .expect("lead");
    assert!(lead_b.term() > lead_a.term());
    assert!(started.elapsed() < Duration::from_secs(5));

    // Whether or not a noticed yet, its writes are refused from now on.
    let stale = a
        .create_deliveries(&lead_a, vec![new_delivery(&n, 2)], Seq(2))
        .await;
    assert!(matches!(stale, Err(WebhooksError::LostLead)), "{stale:?}");
    assert!(lead_a.is_lost(), "the refused holder knows");
    assert_eq!(a.position().await.expect("position"), Some(Seq(1)));
    b.create_deliveries(&lead_b, vec![new_delivery(&n, 2)], Seq(2))
        .await
        .expect("b writes");
    let seqs: Vec<Seq> = a
        .list_deliveries(n.id, vec![DeliveryStatus::Pending], None, 10)
        .await
        .expect("list")
        .iter()
        .map(|d| d.event_seq)
        .collect();
    assert_eq!(seqs, [Seq(2), Seq(1)], "each event's delivery once");
    drop((lead_a, lead_b));
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_deliveries_wake_every_instances_workers() {
    let db = TempDatabase::create().await.expect("test database");
    let (a, _) = instance(&db.options(), &key(1), &[]).await.expect("a");
    let (b, seen) = instance(&db.options(), &key(1), &[]).await.expect("b");
    let n = a
        .create_notification(notification("P", "slack"), 10, &actor())
        .await
        .expect("create");
    let lead = a.lead("a").await.expect("lead");
    a.create_deliveries(&lead, vec![new_delivery(&n, 1)], Seq(1))
        .await
        .expect("deliveries");
    within(SECOND, "b told of the new delivery", || async {
        seen.told_due().contains(&n.id)
    })
    .await;
    drop(lead);
    a.close().await.expect("close a");
    b.close().await.expect("close b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_from_several_instances_hand_out_each_delivery_once_within_the_cap() {
    let db = TempDatabase::create().await.expect("test database");
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(
            instance(&db.options(), &key(1), &[]).await.expect("open").0,
        ));
    }
    let n = stores[0]
        .create_notification(notification("P", "slack"), 10, &actor())
        .await
        .expect("create");
    let lead = stores[0].lead("a").await.expect("lead");
    stores[0]
        .create_deliveries(
            &lead,
            (1..=60).map(|s| new_delivery(&n, s)).collect(),
            Seq(60),
        )
        .await
        .expect("deliveries");
    drop(lead);
    // Many claimants at once: as many leases as the cap, never more.
    let now = chrono::Utc::now().timestamp_millis();
    let claim = |i: usize, max_leased: usize| Claim {
        notification: n.id,
        claimant: format!("c{i}"),
        ordered: false,
        per_key: false,
        want: 5,
        max_leased,
        now,
        until: now + 30_000,
    };
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = Arc::clone(&stores[i % stores.len()]);
        let c = claim(i, 4);
        tasks.push(tokio::spawn(async move { store.claim(c).await }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.extend(
            t.await
                .expect("task")
                .expect("claim")
                .due
                .into_iter()
                .map(|d| d.id),
        );
    }
    assert_eq!(got.len(), 4, "the cap, across instances: {got:?}");
    // Without a cap in the way, every delivery goes to one claimant.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = Arc::clone(&stores[i % stores.len()]);
        let c = claim(100 + i, 1000);
        tasks.push(tokio::spawn(async move { store.claim(c).await }));
    }
    for t in tasks {
        got.extend(
            t.await
                .expect("task")
                .expect("claim")
                .due
                .into_iter()
                .map(|d| d.id),
        );
    }
    let distinct: HashSet<DeliveryId> = got.iter().copied().collect();
    assert_eq!(got.len(), 60, "every delivery claimed: {}", got.len());
    assert_eq!(distinct.len(), got.len(), "none twice");
    for s in stores {
        s.close().await.expect("close");
    }
}
