//! The test world: a real SQLite log in a temporary directory, the webhooks
//! service running over it (its store SQLite, or PostgreSQL), and loopback
//! HTTP receivers that record what they get and answer as each test
//! scripts.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_log::{EventLog, NewEvent};
use cds_events_model::{EventType, ProjectKey};
use cds_events_store::pg::PgOptions;
use cds_events_store::pg::testing::TempDatabase;
use cds_events_webhooks::{Actor, NotificationFilter, NotificationIn, Webhooks, WebhooksConfig};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(20);

pub fn actor() -> Actor {
    Actor {
        user_id: "u1".into(),
        username: "alice".into(),
    }
}

/// Fast retries, loopback allowed.
pub fn config() -> WebhooksConfig {
    WebhooksConfig {
        timeout: Duration::from_secs(2),
        retry_schedule: vec![
            Duration::ZERO,
            Duration::from_millis(50),
            Duration::from_millis(100),
        ],
        jitter: 0.0,
        allow_private: true,
        ..Default::default()
    }
}

pub fn schedule(ms: &[u64]) -> Vec<Duration> {
    ms.iter().map(|m| Duration::from_millis(*m)).collect()
}

pub struct World {
    /// The log's directory (and the SQLite store's).
    pub dir: tempfile::TempDir,
    /// The database of a PostgreSQL store, dropped with the world.
    db: Option<TempDatabase>,
    pub log: Arc<dyn EventLog>,
    pub hooks: Webhooks,
    pub config: WebhooksConfig,
    shutdown: CancellationToken,
    run: tokio::task::JoinHandle<()>,
}

impl World {
    pub async fn start(config: WebhooksConfig) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let log: Arc<dyn EventLog> =
            Arc::new(SqliteLog::open(dir.path(), SqliteOptions::default()).expect("log"));
        World::open(dir, log, config).await
    }

    pub async fn open(
        dir: tempfile::TempDir,
        log: Arc<dyn EventLog>,
        config: WebhooksConfig,
    ) -> World {
        let hooks = Webhooks::open(dir.path(), Arc::clone(&log), config.clone())
            .await
            .expect("open");
        World::running(dir, None, log, hooks, config).await
    }

    /// The service with its store in a PostgreSQL database of its own (and
    /// a configured master key, which PostgreSQL requires).
    pub async fn start_postgres(config: WebhooksConfig) -> World {
        let db = TempDatabase::create().await.expect("test database");
        let mut w = World::start_postgres_at(&db.options(), config).await;
        w.db = Some(db);
        w
    }

    /// As [`World::start_postgres`], in the database `options` name (a
    /// private server a test stops and starts).
    pub async fn start_postgres_at(options: &PgOptions, mut config: WebhooksConfig) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let log: Arc<dyn EventLog> =
            Arc::new(SqliteLog::open(dir.path(), SqliteOptions::default()).expect("log"));
        config.key = Some(base64::engine::general_purpose::STANDARD.encode([7u8; 32]));
        let hooks = Webhooks::open_postgres(options, "it", Arc::clone(&log), config.clone())
            .await
            .expect("open");
        World::running(dir, None, log, hooks, config).await
    }

    /// Runs `hooks` until [`World::stop`].
    pub async fn running(
        dir: tempfile::TempDir,
        db: Option<TempDatabase>,
        log: Arc<dyn EventLog>,
        hooks: Webhooks,
        config: WebhooksConfig,
    ) -> World {
        let shutdown = CancellationToken::new();
        let run = {
            let hooks = hooks.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { hooks.run(shutdown).await.expect("run") })
        };
        World {
            dir,
            db,
            log,
            hooks,
            config,
            shutdown,
            run,
        }
    }

    /// Stops the service (as at a process exit) and gives back its data.
    pub async fn stop(self) -> (tempfile::TempDir, Arc<dyn EventLog>, WebhooksConfig) {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.run)
            .await
            .expect("stops in time")
            .expect("run task");
        self.hooks.close().await.expect("close");
        drop(self.hooks);
        // A PostgreSQL store's database goes once the store has closed.
        drop(self.db);
        (self.dir, self.log, self.config)
    }

    pub async fn restart(self) -> World {
        let (dir, log, config) = self.stop().await;
        World::open(dir, log, config).await
    }

    /// Creates a notification to `url` in `project`, only for `RunJobEnded`
    /// unless `filters` says otherwise.
    pub async fn create(&self, project: &str, name: &str, url: &str) -> String {
        self.create_with(project, input(name, url, &["^RunJobEnded$"]))
            .await
    }

    pub async fn create_with(&self, project: &str, n: NotificationIn) -> String {
        self.hooks
            .create(&key(project), n, &actor())
            .await
            .expect("create")
            .secret
    }

    /// Appends `n` RunJobEnded events to `project`; returns their ids.
    pub async fn publish(&self, project: &str, n: usize) -> Vec<String> {
        self.publish_types(project, &vec![EventType::RunJobEnded; n])
            .await
    }

    pub async fn publish_types(&self, project: &str, types: &[EventType]) -> Vec<String> {
        let events: Vec<NewEvent> = types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                NewEvent::from(cds_events_log::conformance::event(
                    *t,
                    project,
                    i as i64 + 1,
                ))
            })
            .collect();
        let ids = events.iter().map(|e| e.head.id.clone()).collect();
        self.log.append(events).await.expect("append");
        ids
    }

    /// Waits until the dispatcher has read every event appended so far and
    /// no enabled notification has a delivery pending: from then on nothing
    /// is sent until something new happens, so a test can assert that
    /// something was not. (A delivery leaves `pending` only once its last
    /// request was answered, and so recorded by the receiver.)
    pub async fn settled(&self) {
        let head = *self.log.head().borrow();
        eventually("the dispatcher past the head, nothing pending", || async {
            // The hold is the dispatcher's position + 1, or an enabled
            // notification's oldest pending event if that comes first.
            let hold = self.hooks.retention_hold().await.ok()??;
            (hold > head).then_some(())
        })
        .await
    }
}

pub fn input(name: &str, url: &str, exprs: &[&str]) -> NotificationIn {
    let mut n = NotificationIn {
        name: name.into(),
        webhook_url: url.into(),
        ..Default::default()
    };
    if !exprs.is_empty() {
        n.filters.insert(
            "f".into(),
            NotificationFilter {
                event: exprs.iter().map(|s| s.to_string()).collect(),
            },
        );
    }
    n
}

/// Polls `f` until it returns `Some`, or panics after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn webhook_id(&self) -> &str {
        self.header("webhook-id")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("json body")
    }

    pub fn event_id(&self) -> String {
        self.json()["id"].as_str().unwrap_or("").to_owned()
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap_or("").to_owned()
    }
}

/// How a receiver answers.
pub enum Reply {
    Status(u16),
    WithHeader(u16, &'static str, String),
    /// Never answers.
    Hang,
    /// Answers 204 once the switch is on.
    HoldUntil(Switch),
    /// Answers this status after this long.
    After(Duration, u16),
}

type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

struct ReceiverState {
    requests: Mutex<Vec<Received>>,
    count: AtomicUsize,
    /// Requests being answered now, and the most at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    arrived: Notify,
    script: Box<Script>,
}

/// Turns a [`Receiver::failing_until_healed`] healthy, or releases a
/// [`Receiver::held_until_released`].
#[derive(Clone)]
pub struct Switch(Arc<tokio::sync::watch::Sender<bool>>);

impl Switch {
    fn new() -> Switch {
        Switch(Arc::new(tokio::sync::watch::channel(false).0))
    }

    pub fn heal(&self) {
        self.0.send_replace(true);
    }

    fn is_on(&self) -> bool {
        *self.0.borrow()
    }

    async fn turned_on(&self) {
        // The sender lives in `self`: the channel cannot close while waiting.
        let _ = self.0.subscribe().wait_for(|on| *on).await;
    }
}

/// A loopback HTTP server that records every request.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub port: u16,
    state: Arc<ReceiverState>,
}

impl Receiver {
    /// Answers 204 to everything.
    pub async fn ok() -> Receiver {
        Receiver::scripted(|_, _| Reply::Status(204)).await
    }

    /// Answers `failing` until [`Switch::heal`] is called, 200 after.
    pub async fn failing_until_healed(failing: u16) -> (Receiver, Switch) {
        let switch = Switch::new();
        let healed = switch.clone();
        let rx = Receiver::scripted(move |_, _| {
            Reply::Status(if healed.is_on() { 200 } else { failing })
        })
        .await;
        (rx, switch)
    }

    /// Holds every request until [`Switch::heal`] is called, then answers
    /// 204.
    pub async fn held_until_released() -> (Receiver, Switch) {
        let switch = Switch::new();
        let released = switch.clone();
        let rx = Receiver::scripted(move |_, _| Reply::HoldUntil(released.clone())).await;
        (rx, switch)
    }

    /// Answers as `script(n, request)` says, `n` counting from 0.
    pub async fn scripted(
        script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let state = Arc::new(ReceiverState {
            requests: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            arrived: Notify::new(),
            script: Box::new(script),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            port,
            state,
        }
    }

    /// The most requests it was answering at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().expect("lock").clone()
    }

    /// Waits until at least `n` requests arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.state.arrived.notified();
            if self.state.requests.lock().expect("lock").len() >= n {
                return self.requests();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for {n} requests, got {}",
                    self.requests().len()
                );
            }
        }
    }
}

async fn handle(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, &'static str) {
    let r = Received {
        at: Instant::now(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    // Counted out however the request ends (a sender gone mid-request).
    struct Out<'a>(&'a AtomicUsize);
    impl Drop for Out<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _out = Out(&state.in_flight);
    let n = state.count.fetch_add(1, Ordering::SeqCst);
    let reply = (state.script)(n, &r);
    state.requests.lock().expect("lock").push(r);
    state.arrived.notify_waiters();
    let mut h = HeaderMap::new();
    let code = match reply {
        Reply::Status(c) => c,
        Reply::WithHeader(c, name, value) => {
            h.insert(name, value.parse().expect("header value"));
            c
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            500
        }
        Reply::HoldUntil(switch) => {
            switch.turned_on().await;
            204
        }
        Reply::After(wait, code) => {
            tokio::time::sleep(wait).await;
            code
        }
    };
    (
        StatusCode::from_u16(code).expect("status"),
        h,
        "receiver says hi",
    )
}

/// A project key of the tests'.
pub fn key(project: &str) -> ProjectKey {
    ProjectKey::new(project).expect("a project key")
}
