//! Several instances on one PostgreSQL database, as several servers behind
//! a load balancer: each with its own log handle, store pool and instance
//! id, in a runtime of its own, so that a test can stop one abruptly (its
//! tasks stop where they are and its connections close, as at `kill -9`).
//! One leads and dispatches; every one's workers claim; each attempt is made
//! by one instance; a dead one's work passes to the others.

use crate::support::*;
use base64::Engine;
use cds_events_log::postgres::{PgLog, PgLogOptions};
use cds_events_log::{EventLog, NewEvent};
use cds_events_model::EventType;
use cds_events_store::pg::testing::TempDatabase;
use cds_events_store::pg::{PgOptions, PgPool};
use cds_events_webhooks::{NotificationIn, Webhooks, WebhooksConfig};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// One cluster test at a time: each opens a dozen connections or more.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fast retries and short leases; a request may take long.
fn cluster_config() -> WebhooksConfig {
    WebhooksConfig {
        timeout: Duration::from_secs(30),
        lease: Duration::from_millis(1500),
        key: Some(base64::engine::general_purpose::STANDARD.encode([7u8; 32])),
        ..config()
    }
}

/// An instance: the webhooks service over the shared database, in its own
/// runtime.
struct Node {
    name: String,
    runtime: Option<tokio::runtime::Runtime>,
    hooks: Webhooks,
    shutdown: CancellationToken,
}

impl Node {
    /// Opens and runs instance `name` on `db`; its connections carry its
    /// name.
    async fn start(db: &TempDatabase, name: &str, config: WebhooksConfig) -> Node {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("runtime");
        let mut options = PgOptions::new(format!("{} application_name={name}", db.url()));
        options.pool_size = 4;
        let instance = name.to_owned();
        let hooks = runtime
            .spawn(async move {
                let log = PgLog::open(&options, PgLogOptions::default())
                    .await
                    .expect("log");
                Webhooks::open_postgres(&options, &instance, Arc::new(log), config)
                    .await
                    .expect("open")
            })
            .await
            .expect("opened");
        let shutdown = CancellationToken::new();
        runtime.spawn({
            let (hooks, shutdown) = (hooks.clone(), shutdown.clone());
            async move { hooks.run(shutdown).await.expect("run") }
        });
        Node {
            name: name.to_owned(),
            runtime: Some(runtime),
            hooks,
            shutdown,
        }
    }

    /// Runs `f` on this instance's runtime.
    async fn on<T, F>(&self, f: impl FnOnce(Webhooks) -> F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = self.runtime.as_ref().expect("running");
        runtime
            .spawn(f(self.hooks.clone()))
            .await
            .expect("on the instance")
    }

    /// Stops abruptly, as `kill -9`: every task dropped where it is, every
    /// connection to the database closed.
    async fn crash(mut self, admin: &PgPool) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        self.shutdown.cancel();
        let conn = admin.get().await.expect("admin");
        eventually("the crashed instance's sessions gone", || async {
            let left: i64 = conn
                .query_one(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid)
                     FROM pg_stat_activity
                     WHERE application_name = $1 AND datname = current_database()) AS t",
                    &[&self.name],
                )
                .await
                .ok()?
                .get(0);
            (left == 0).then_some(())
        })
        .await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The shared database, a publisher's log handle and an admin connection.
struct Cluster {
    db: TempDatabase,
    log: Arc<dyn EventLog>,
    admin: PgPool,
}

impl Cluster {
    async fn new() -> Cluster {
        let db = TempDatabase::create().await.expect("test database");
        let mut options = db.options();
        options.pool_size = 2;
        let log = PgLog::open(&options, PgLogOptions::default())
            .await
            .expect("publisher log");
        let admin = PgPool::connect(&options).await.expect("admin");
        Cluster {
            db,
            log: Arc::new(log),
            admin,
        }
    }

    /// Starts `name`. The first open stores the dispatcher's position: every
    /// event published from then on is delivered, whoever leads.
    async fn start(&self, name: &str, config: &WebhooksConfig) -> Node {
        Node::start(&self.db, name, config.clone()).await
    }

    /// Appends `n` RunJobEnded events of `project` (from the publisher);
    /// returns their ids.
    async fn publish(&self, project: &str, n: usize) -> Vec<String> {
        let events: Vec<NewEvent> = (0..n)
            .map(|i| {
                NewEvent::from(cds_events_log::conformance::event(
                    EventType::RunJobEnded,
                    project,
                    i as i64 + 1,
                ))
            })
            .collect();
        let ids = events.iter().map(|e| e.head.id.clone()).collect();
        self.log.append(events).await.expect("append");
        ids
    }

    /// Waits until every event published is dispatched and no delivery is
    /// pending (read from the shared database through `node`).
    async fn settled(&self, node: &Node) {
        let head = *self.log.head().borrow();
        eventually("everything dispatched and sent", || async {
            let hold = node.hooks.retention_hold().await.ok()??;
            (hold > head).then_some(())
        })
        .await
    }

    /// The instances that claimed deliveries last (who sent them), with how
    /// many each.
    async fn senders(&self) -> BTreeMap<String, i64> {
        let conn = self.admin.get().await.expect("admin");
        conn.query(
            "SELECT claimed_by, count(*) FROM webhook_deliveries
             WHERE claimed_by IS NOT NULL GROUP BY claimed_by",
            &[],
        )
        .await
        .expect("senders")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    }
}

async fn create(node: &Node, input: NotificationIn) {
    node.on(move |hooks| async move { hooks.create(&key("PROJ"), input, &actor()).await })
        .await
        .expect("create");
}

/// How many requests each webhook-id got.
fn per_id(rx: &Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in rx.requests() {
        *seen.entry(r.webhook_id().to_owned()).or_default() += 1;
    }
    seen
}

/// Waits until requests for `n` distinct webhook-ids arrived.
async fn wait_for_ids(rx: &Receiver, n: usize) {
    eventually("every delivery", || async {
        (per_id(rx).len() >= n).then_some(())
    })
    .await
}

/// The event id of each request, in arrival order.
fn event_ids(rx: &Receiver) -> Vec<String> {
    rx.requests().iter().map(|r| r.event_id()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_make_each_attempt_once_and_share_the_work() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::new().await;
    let config = cluster_config();
    let nodes = [
        cluster.start("inst_a", &config).await,
        cluster.start("inst_b", &config).await,
        cluster.start("inst_c", &config).await,
    ];
    let leaders = || nodes.iter().filter(|n| n.hooks.is_leader()).count();
    eventually("a leader", || async { (leaders() > 0).then_some(()) }).await;
    assert_eq!(leaders(), 1, "one dispatcher");
    let rx = Receiver::scripted(|_, _| Reply::After(Duration::from_millis(20), 204)).await;
    create(&nodes[1], input("n", &rx.url, &["^RunJobEnded$"])).await;
    let mut published = Vec::new();
    for _ in 0..20 {
        published.extend(cluster.publish("PROJ", 3).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_ids(&rx, published.len()).await;
    cluster.settled(&nodes[0]).await;
    let counts = per_id(&rx);
    assert!(
        counts.values().all(|&c| c == 1),
        "each delivery sent once: {counts:?}"
    );
    let mut received = event_ids(&rx);
    received.sort();
    published.sort();
    assert_eq!(received, published, "every event, once");
    let senders = cluster.senders().await;
    assert!(
        senders.len() >= 2,
        "the workers of several instances sent: {senders:?}"
    );
    assert_eq!(senders.values().sum::<i64>(), published.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_concurrency_holds_across_instances() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::new().await;
    let config = WebhooksConfig {
        max_in_flight_per_endpoint: 3,
        ..cluster_config()
    };
    let nodes = [
        cluster.start("inst_a", &config).await,
        cluster.start("inst_b", &config).await,
        cluster.start("inst_c", &config).await,
    ];
    let rx = Receiver::scripted(|_, _| Reply::After(Duration::from_millis(40), 204)).await;
    create(&nodes[0], input("n", &rx.url, &["^RunJobEnded$"])).await;
    let published = cluster.publish("PROJ", 45).await;
    wait_for_ids(&rx, published.len()).await;
    cluster.settled(&nodes[2]).await;
    assert!(per_id(&rx).values().all(|&c| c == 1), "each once");
    let most = rx.max_in_flight();
    assert!(most <= 3, "at most 3 requests at once, got {most}");
    assert!(most >= 2, "the cap is used, got {most}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_notification_is_delivered_in_log_order_across_instances() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::new().await;
    let config = cluster_config();
    let nodes = [
        cluster.start("inst_a", &config).await,
        cluster.start("inst_b", &config).await,
        cluster.start("inst_c", &config).await,
    ];
    // Every third event fails at its first attempt: its retry (50 ms later,
    // perhaps from another instance) must come before the next event.
    let answered: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
    let rx = {
        let answered = Arc::clone(&answered);
        Receiver::scripted(move |_, r| {
            let mut answered = answered.lock().expect("lock");
            let id = r.event_id();
            let first = !answered.iter().any(|(e, _)| *e == id);
            let before = answered.iter().filter(|(_, code)| *code == 204).count();
            let code = if first && before % 3 == 1 { 500 } else { 204 };
            answered.push((id, code));
            Reply::After(Duration::from_millis(5), code)
        })
        .await
    };
    let mut n = input("n", &rx.url, &["^RunJobEnded$"]);
    n.ordered = Some(true);
    create(&nodes[2], n).await;
    let mut published = Vec::new();
    for _ in 0..6 {
        published.extend(cluster.publish("PROJ", 5).await);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    wait_for_ids(&rx, published.len()).await;
    cluster.settled(&nodes[0]).await;
    let answered = answered.lock().expect("lock").clone();
    let succeeded: Vec<String> = answered
        .iter()
        .filter(|(_, code)| *code == 204)
        .map(|(e, _)| e.clone())
        .collect();
    assert_eq!(succeeded, published, "delivered in log order");
    assert!(
        answered.iter().any(|(_, code)| *code == 500),
        "some were retried"
    );
    // A failed event's retry came before anything of a later event.
    for (i, (event, code)) in answered.iter().enumerate() {
        if *code == 500 {
            let next = &answered[i + 1];
            assert_eq!(&next.0, event, "retried before the next: {answered:?}");
        }
    }
    assert_eq!(rx.max_in_flight(), 1, "one at a time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_within_seconds_and_nothing_is_lost() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::new().await;
    let config = cluster_config();
    let leader = cluster.start("inst_a", &config).await;
    eventually("the first one to lead", || async {
        leader.hooks.is_leader().then_some(())
    })
    .await;
    let others = [
        cluster.start("inst_b", &config).await,
        cluster.start("inst_c", &config).await,
    ];
    let rx = Receiver::scripted(|_, _| Reply::After(Duration::from_millis(10), 204)).await;
    create(&others[0], input("n", &rx.url, &["^RunJobEnded$"])).await;
    // Events keep coming while the leader dies.
    let publishing = {
        let log = Arc::clone(&cluster.log);
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for round in 0..60 {
                let event =
                    cds_events_log::conformance::event(EventType::RunJobEnded, "PROJ", round + 1);
                ids.push(event.id.clone());
                log.append(vec![NewEvent::from(event)])
                    .await
                    .expect("append");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            ids
        })
    };
    wait_for_ids(&rx, 15).await;
    let killed = Instant::now();
    leader.crash(&cluster.admin).await;
    let took = eventually("a new leader", || async {
        others
            .iter()
            .any(|n| n.hooks.is_leader())
            .then(|| killed.elapsed())
    })
    .await;
    assert!(took < Duration::from_secs(5), "took over in {took:?}");
    let published = publishing.await.expect("publisher");
    wait_for_ids(&rx, published.len()).await;
    cluster.settled(&others[1]).await;
    let mut received = event_ids(&rx);
    received.sort();
    received.dedup();
    let mut expected = published.clone();
    expected.sort();
    assert_eq!(received, expected, "every event delivered");
    let repeated: usize = per_id(&rx).values().map(|c| c - 1).sum();
    eprintln!("takeover after {took:?}; {repeated} attempt(s) in flight at the kill sent again");
    assert!(
        repeated <= config.max_in_flight_per_endpoint,
        "only attempts in flight at the kill are sent again: {repeated}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instances_claim_is_sent_again_after_its_lease_with_the_same_webhook_id() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::new().await;
    let config = cluster_config();
    let a = cluster.start("inst_a", &config).await;
    // The first request never gets an answer; later ones do.
    let rx = Receiver::scripted(|n, _| {
        if n == 0 {
            Reply::Hang
        } else {
            Reply::Status(204)
        }
    })
    .await;
    create(&a, input("n", &rx.url, &["^RunJobEnded$"])).await;
    cluster.publish("PROJ", 1).await;
    let first = rx.wait_for(1).await[0].clone();
    let b = cluster.start("inst_b", &config).await;
    let killed = Instant::now();
    a.crash(&cluster.admin).await;
    let again = rx.wait_for(2).await[1].clone();
    let after = killed.elapsed();
    assert_eq!(
        again.webhook_id(),
        first.webhook_id(),
        "the same webhook-id"
    );
    assert_eq!(again.event_id(), first.event_id());
    // a renewed its lease every 500 ms until it died: it ended 1 to 1.5 s
    // after.
    assert!(
        after >= Duration::from_millis(900),
        "not before the lease ended: {after:?}"
    );
    assert!(after < Duration::from_secs(10), "soon after: {after:?}");
    cluster.settled(&b).await;
    assert_eq!(rx.requests().len(), 2);
    assert_eq!(
        cluster.senders().await,
        BTreeMap::from([("inst_b".to_owned(), 1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_instances_claim_is_renewed_while_its_attempt_runs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cluster = Cluster::new().await;
    // A renewal may come two seconds late (a loaded machine) and the claim
    // still holds.
    let config = WebhooksConfig {
        lease: Duration::from_secs(3),
        ..cluster_config()
    };
    let nodes = [
        cluster.start("inst_a", &config).await,
        cluster.start("inst_b", &config).await,
    ];
    let (rx, release) = Receiver::held_until_released().await;
    create(&nodes[0], input("n", &rx.url, &["^RunJobEnded$"])).await;
    cluster.publish("PROJ", 1).await;
    rx.wait_for(1).await;
    // Two and a half leases long: renewed all along, so no one else sends
    // it.
    tokio::time::sleep(config.lease * 5 / 2).await;
    assert_eq!(rx.requests().len(), 1, "sent once while it runs");
    release.heal();
    cluster.settled(&nodes[1]).await;
    assert_eq!(rx.requests().len(), 1);
}
