//! Sinks on a log that several instances share (PostgreSQL): each sink
//! sends from one instance at a time, and another one takes over within
//! seconds when the holder's lead connection is cut or the holder dies,
//! resuming from the stored position. Each instance runs on a runtime of
//! its own, so that dropping the runtime ends everything it ran at once,
//! as a killed process would. The broker is the machine's Redis
//! (`CDS_EVENTS_TEST_REDIS`), on channels of the test's own; the database
//! a throw-away one (`CDS_EVENTS_TEST_POSTGRES`).

use cds_events_api::{SinkOut, SinkState};
use cds_events_log::EventLog;
use cds_events_log::postgres::{PgLog, PgLogOptions, lead_session_name};
use cds_events_sinks::conformance::{WAIT, append, config, namespace};
use cds_events_sinks::redis::RedisConfig;
use cds_events_sinks::{SinkKind, Sinks};
use cds_events_store::pg::testing::TempDatabase;
use cds_events_store::pg::{PgOptions, PgPool};
use futures_util::StreamExt;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SINK: &str = "led";

fn redis_url() -> String {
    std::env::var("CDS_EVENTS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn settings(ns: &str) -> SinkKind {
    let mut c = RedisConfig::new(redis_url());
    c.channel = format!("cdstest:{ns}:ui");
    c.run_job_channel = String::new();
    SinkKind::Redis(c)
}

/// One cds-events process: its log, its sinks, on a runtime of its own.
struct Instance {
    name: String,
    runtime: Option<tokio::runtime::Runtime>,
    log: Arc<dyn EventLog>,
    sinks: Sinks,
    stop: CancellationToken,
}

impl Instance {
    async fn start(name: &str, pg: &PgOptions, ns: &str) -> Instance {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (pg, name_owned, kind) = (pg.clone(), name.to_owned(), settings(ns));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let (log, sinks) = runtime
            .spawn(async move {
                let log: Arc<dyn EventLog> = Arc::new(
                    PgLog::open(&pg, PgLogOptions::default())
                        .await
                        .expect("open"),
                );
                let sinks = Sinks::new(
                    Arc::clone(&log),
                    &name_owned,
                    &[config(SINK, kind)],
                    None,
                    &Default::default(),
                )
                .expect("valid sinks");
                let running = sinks.clone();
                tokio::spawn(async move { running.run(stopped).await.expect("runs once") });
                (log, sinks)
            })
            .await
            .expect("instance starts");
        Instance {
            name: name.to_owned(),
            runtime: Some(runtime),
            log,
            sinks,
            stop,
        }
    }

    /// Runs `f` on this instance's runtime.
    async fn on<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        self.runtime
            .as_ref()
            .expect("alive")
            .spawn(f)
            .await
            .expect("task")
    }

    async fn status(&self) -> SinkOut {
        let sinks = self.sinks.clone();
        self.on(async move { sinks.get(SINK).await.expect("the sink") })
            .await
    }

    /// Everything it ran ends at once: the lead's connection closes with
    /// the runtime, as with a killed process.
    fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    async fn shutdown(mut self) {
        self.stop.cancel();
        until("the sinks stop", || async {
            self.status().await.state == SinkState::Stopped
        })
        .await;
        let log = Arc::clone(&self.log);
        self.on(async move { log.close().await.expect("close") })
            .await;
        self.kill();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits (up to [`WAIT`]) for `check`.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The one instance running the sink, once every other one (alive) is on
/// standby.
async fn the_holder(instances: &[Instance]) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut running = Vec::new();
        let mut settled = true;
        for (i, inst) in instances.iter().enumerate() {
            if inst.runtime.is_none() {
                continue;
            }
            match inst.status().await.state {
                SinkState::Running => running.push(i),
                SinkState::Standby => {}
                _ => settled = false,
            }
        }
        if settled && running.len() == 1 {
            return running[0];
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: one instance runs the sink, the others stand by ({running:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads the sink's Redis channel.
struct Reader {
    messages: std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>,
}

impl Reader {
    async fn open(ns: &str) -> Reader {
        let client = redis::Client::open(redis_url()).expect("redis url");
        let mut pubsub = client.get_async_pubsub().await.expect("Redis");
        pubsub
            .subscribe(format!("cdstest:{ns}:ui"))
            .await
            .expect("subscribe");
        Reader {
            messages: Box::pin(pubsub.into_on_message()),
        }
    }

    /// Event ids until every one of `want` arrived (in any count), and
    /// what arrives within a short while after.
    async fn until_all(&mut self, want: &[String]) -> Vec<String> {
        let mut missing: HashSet<&String> = want.iter().collect();
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let wait = if missing.is_empty() {
                Duration::from_millis(500)
            } else {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            };
            match tokio::time::timeout(wait, self.messages.next()).await {
                Ok(Some(m)) => {
                    let body: Vec<u8> = m.get_payload().expect("payload");
                    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
                    let id = v["id"].as_str().expect("id").to_owned();
                    missing.remove(&id);
                    got.push(id);
                }
                _ if missing.is_empty() => return got,
                _ => panic!("{} of {} never arrived", missing.len(), want.len()),
            }
        }
    }
}

/// Kills the holder's lead session in the database (a cut connection): the
/// holder lives on, and must notice and stop sending.
async fn cut_the_lead_session(sql: &PgPool) {
    let killed: i64 = sql
        .get()
        .await
        .expect("conn")
        .query_one(
            "SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity a
             WHERE a.datname = current_database() AND a.application_name = $1
               AND a.pid IN (SELECT pid FROM pg_locks
                             WHERE locktype = 'advisory' AND granted AND objsubid = 2)",
            &[&lead_session_name(&format!("sink:{SINK}"))],
        )
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(killed, 1, "one session holds the sink's lead");
}

/// Three instances each configured with the same sink: one sends; its lead
/// session cut, another takes over and the first stands by; the second
/// killed, the third takes over. Every event arrives, none twice (each
/// hand-over happens between batches here; one in flight would be sent
/// again, whole), and the stored position ends at the head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_sends_and_another_takes_over_when_it_goes() {
    let db = TempDatabase::create().await.expect("test database");
    let pg = PgOptions {
        pool_size: 4,
        ..db.options()
    };
    let ns = namespace();
    let mut reader = Reader::open(&ns).await;
    let mut instances = Vec::new();
    for name in ["a", "b", "c"] {
        instances.push(Instance::start(name, &pg, &ns).await);
    }
    let first = the_holder(&instances).await;
    // Appends come from a process of their own, which outlives them all.
    let writer: Arc<dyn EventLog> = Arc::new(
        PgLog::open(&pg, PgLogOptions::default())
            .await
            .expect("open"),
    );
    let sql = PgPool::connect(&pg).await.expect("connect");

    let mut sent = Vec::new();
    let ids = append(writer.as_ref(), 30).await;
    let got = reader.until_all(&ids).await;
    assert_eq!(got, ids, "one sender, in order, once");
    sent.extend(ids);
    for (i, inst) in instances.iter().enumerate() {
        let s = inst.status().await;
        let want = if i == first { 30 } else { 0 };
        assert_eq!(s.sent, want, "instance {}: {s:?}", inst.name);
    }

    // The holder's lead connection is cut: another instance sends the
    // next events, the first one stands by.
    cut_the_lead_session(&sql).await;
    until("the cut holder stands by", || async {
        instances[first].status().await.state == SinkState::Standby
    })
    .await;
    let second = the_holder(&instances).await;
    assert_ne!(second, first, "another instance took over");
    let ids = append(writer.as_ref(), 30).await;
    let got = reader.until_all(&ids).await;
    assert_eq!(got, ids, "after a hand-over: in order, once");
    sent.extend(ids);
    assert_eq!(
        instances[first].status().await.sent,
        30,
        "the first sent nothing more"
    );

    // The second holder dies: the last one takes over.
    instances[second].kill();
    the_holder(&instances).await;
    let ids = append(writer.as_ref(), 30).await;
    let got = reader.until_all(&ids).await;
    assert_eq!(got, ids, "after a holder died: in order, once");
    sent.extend(ids);

    let head = *writer.head().borrow();
    let position = writer
        .consumer_position(&format!("sink:{SINK}"))
        .await
        .expect("position");
    assert_eq!(position, Some(head), "the last holder stored the head");
    let sum: u64 = {
        let mut n = 0;
        for inst in &instances {
            if inst.runtime.is_some() {
                n += inst.status().await.sent;
            }
        }
        n
    };
    assert_eq!(
        sum + 30,
        sent.len() as u64,
        "the dead one sent the middle 30"
    );
    let survivors: Vec<Instance> = instances
        .into_iter()
        .filter(|i| i.runtime.is_some())
        .collect();
    for inst in survivors {
        inst.shutdown().await;
    }
    writer.close().await.expect("close");
}

/// A replay asked of the holder just as its lead session is cut is
/// answered: done there, or refused naming no one or the new holder; never
/// answered "done" while not done, nor left waiting for a lead that may
/// never come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_asked_as_the_lead_is_lost_is_answered() {
    let db = TempDatabase::create().await.expect("test database");
    let pg = PgOptions {
        pool_size: 4,
        ..db.options()
    };
    let ns = namespace();
    let mut reader = Reader::open(&ns).await;
    let instances = vec![
        Instance::start("a", &pg, &ns).await,
        Instance::start("b", &pg, &ns).await,
    ];
    let first = the_holder(&instances).await;
    let writer: Arc<dyn EventLog> = Arc::new(
        PgLog::open(&pg, PgLogOptions::default())
            .await
            .expect("open"),
    );
    let ids = append(writer.as_ref(), 10).await;
    reader.until_all(&ids).await;
    let sql = PgPool::connect(&pg).await.expect("connect");
    cut_the_lead_session(&sql).await;
    let sinks = instances[first].sinks.clone();
    let answer = tokio::time::timeout(
        WAIT,
        instances[first].on(async move { sinks.replay(SINK, 1).await }),
    )
    .await
    .expect("the replay is answered");
    match answer {
        // Done before the lead went: the ten events come again.
        Ok(r) => {
            assert_eq!(r.from, 1);
            let again = reader.until_all(&ids).await;
            assert!(again.len() >= ids.len(), "{again:?}");
        }
        Err(e) => assert!(
            matches!(e, cds_events_sinks::SinksError::NotLeading { .. }),
            "{e}"
        ),
    }
    let second = the_holder(&instances).await;
    assert_ne!(second, first, "the other instance took over");
    for inst in instances {
        inst.shutdown().await;
    }
    writer.close().await.expect("close");
}
