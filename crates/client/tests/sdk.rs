//! The SDK against the real server, started in this process on port 0
//! with a temporary data directory: publishing (batched, retried,
//! idempotent), paging, the live stream across a restart, webhook
//! verification of a real delivery, and the examples run as a user would.

use cds_events_client::{Client, ClientError, ClientOptions, Publisher, PublisherOptions, Retry};
use cds_events_model::{EventType, FullEvent};
use cds_events_server::Server;
use cds_events_server::config::Config;
use futures_util::TryStreamExt;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A server running in this process, and its admin token.
struct Running {
    url: String,
    token: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(dir: &Path, listen: &str, webhook_receiver: bool) -> Running {
    let mut config = Config {
        listen: listen.to_owned(),
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    // The test's receiver listens on 127.0.0.1.
    config.webhooks.allow_private = webhook_receiver;
    let server = Server::bind(config).await.expect("the server starts");
    let token = std::fs::read_to_string(dir.join("admin.token"))
        .expect("a generated admin token")
        .trim()
        .to_owned();
    let addr = server.local_addr().expect("bound");
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop).await.expect("the server runs") }
    });
    Running {
        url: format!("http://{addr}"),
        token,
        stop,
        task,
    }
}

impl Running {
    fn client(&self, retry: Retry) -> Client {
        let options = ClientOptions {
            token: Some(self.token.clone()),
            pool: 4,
            retry,
            ..ClientOptions::default()
        };
        Client::with_options(&self.url, options).expect("client")
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("the server stopped");
    }
}

fn event(project: &str, i: usize) -> FullEvent {
    let mut e = FullEvent::new(EventType::ProjectUpdated);
    e.project_key = project.to_owned();
    e.user_id = format!("u{i}");
    e.username = format!("user{i}");
    e
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_batches_many_tasks_and_the_query_iterator_reads_them_back_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "127.0.0.1:0", false).await;
    let client = server.client(Retry::default());
    let options = PublisherOptions {
        max_events: 64,
        ..PublisherOptions::default()
    };
    let publisher = Publisher::new(client.clone(), options);
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let publisher = publisher.clone();
            tokio::spawn(async move { publisher.send(event("PUB", i)).await })
        })
        .collect();
    let mut stored = Vec::new();
    for t in tasks {
        stored.push(t.await.expect("task").expect("stored"));
    }
    let seqs: HashSet<u64> = stored.iter().map(|a| a.seq).collect();
    assert_eq!(seqs.len(), 500, "one place each");

    // 500 events in pages of 40: the iterator follows 12 cursors.
    let params = [
        ("project_key".to_owned(), "PUB".to_owned()),
        ("limit".to_owned(), "40".to_owned()),
        ("order".to_owned(), "asc".to_owned()),
    ];
    let read: Vec<_> = client
        .query_all(&params)
        .try_collect()
        .await
        .expect("pages");
    let read_seqs: Vec<u64> = read.iter().map(|s| s.seq).collect();
    let mut expected: Vec<u64> = seqs.into_iter().collect();
    expected.sort_unstable();
    assert_eq!(read_seqs, expected, "every event once, oldest first");
    let ids: HashSet<String> = read
        .iter()
        .map(|s| s.decode().expect("decodes").id)
        .collect();
    assert!(stored.iter().all(|a| ids.contains(&a.id)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_event_fails_alone_and_a_resent_batch_stores_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "127.0.0.1:0", false).await;
    let client = server.client(Retry::default());
    let publisher = Publisher::new(
        client.clone(),
        PublisherOptions {
            linger: Duration::from_millis(200),
            ..PublisherOptions::default()
        },
    );
    // A project event without its project: refused by validation.
    let mut bad = event("BAD", 0);
    bad.project_key = String::new();
    let (good1, bad, good2) = tokio::join!(
        publisher.send(event("BAD", 1)),
        publisher.send(bad),
        publisher.send(event("BAD", 2)),
    );
    assert!(good1.is_ok() && good2.is_ok(), "{good1:?} {good2:?}");
    let err = bad.expect_err("refused");
    assert!(err.is_bad_input(), "{err}");
    assert!(
        err.to_string().contains("project_key"),
        "names the field: {err}"
    );

    // The same batch twice, as a retry after a lost answer sends it.
    let batch = [event("AGAIN", 1), event("AGAIN", 2)];
    let first = client.publish(&batch).await.expect("stored");
    let again = client.publish(&batch).await.expect("answered");
    assert!(again.iter().all(|a| a.duplicate), "{again:?}");
    assert_eq!(
        first.iter().map(|a| a.seq).collect::<Vec<_>>(),
        again.iter().map(|a| a.seq).collect::<Vec<_>>(),
        "the same places"
    );
    let params = [("project_key".to_owned(), "AGAIN".to_owned())];
    let page = client.query(&params).await.expect("page");
    assert_eq!(page.events.len(), 2, "stored once");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_waits_for_a_server_that_is_not_up_yet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{listen}");
    let never = ClientOptions {
        retry: Retry::NEVER,
        ..ClientOptions::default()
    };
    let refused = Client::with_options(&url, never)
        .expect("client")
        .publish(&[event("LATE", 0)])
        .await
        .expect_err("nobody listens");
    assert!(refused.is_transient(), "{refused}");

    let path = dir.path().to_owned();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        start(&path, &listen, false).await
    });
    // No token: the first answer that is not "unreachable" is a 401, which
    // shows that the retries went on until the server was up.
    let client = Client::with_options(&url, ClientOptions::default()).expect("client");
    let err = client
        .publish(&[event("LATE", 1)])
        .await
        .expect_err("no token");
    assert!(matches!(err, ClientError::Api { status: 401, .. }), "{err}");
    late.await.expect("started").stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_resumes_across_a_server_restart_with_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let server = start(dir.path(), &listen, false).await;
    let client = server.client(Retry::default());
    let params = [("project_key".to_owned(), "LIVE".to_owned())];
    let (reconnects_tx, mut reconnects) = tokio::sync::mpsc::unbounded_channel();
    let mut live = Box::pin(client.live_reporting(&params, Some(0), move |r| {
        let _ = reconnects_tx.send(r.clone());
    }));
    let first = client
        .publish(&(0..3).map(|i| event("LIVE", i)).collect::<Vec<_>>())
        .await
        .expect("stored");
    for a in &first {
        let got = live.try_next().await.expect("ok").expect("an event");
        assert_eq!(got.seq, a.seq);
    }
    server.stop().await;
    let server = start(dir.path(), &listen, false).await;
    let second = server
        .client(Retry::default())
        .publish(&(3..6).map(|i| event("LIVE", i)).collect::<Vec<_>>())
        .await
        .expect("stored");
    for a in &second {
        let got = tokio::time::timeout(Duration::from_secs(30), live.try_next())
            .await
            .expect("in time")
            .expect("ok")
            .expect("an event");
        assert_eq!(got.seq, a.seq, "contiguous: nothing missed, nothing twice");
    }
    let r = reconnects.try_recv().expect("the restart was reported");
    assert_eq!(r.after, Some(first[2].seq), "{r:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_real_deliveries_of_both_schemes_and_nothing_else() {
    use cds_events_api::SignatureScheme;
    use cds_events_client::verify::{VerifyError, verify};

    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "127.0.0.1:0", true).await;
    let client = server.client(Retry::default());
    let other = "whsec_dGhlIG90aGVyIHNlY3JldCBvZiB0aGUgdGVzdA==";
    for scheme in [SignatureScheme::Symmetric, SignatureScheme::Ed25519] {
        let project = format!("HOOK{scheme:?}").to_uppercase();
        let (url, mut requests) = receiver().await;
        let created = client
            .create_notification(&project, &notification(url, scheme))
            .await
            .expect("created");
        // ed25519: what creation shows is the public key, all a receiver needs.
        let prefix = match scheme {
            SignatureScheme::Ed25519 => "whpk_",
            SignatureScheme::Symmetric => "whsec_",
        };
        assert!(created.secret.starts_with(prefix), "{scheme:?}");
        client.publish(&[event(&project, 1)]).await.expect("stored");
        let (headers, body) = tokio::time::timeout(Duration::from_secs(30), requests.recv())
            .await
            .expect("delivered in time")
            .expect("a request");
        let secret = created.secret.as_str();
        assert_eq!(verify(&headers, &body, &[secret]), Ok(()), "{scheme:?}");
        assert_eq!(verify(&headers, &body, &[other]), Err(VerifyError::NoMatch));
        assert_eq!(
            verify(&headers, &body, &[other, secret]),
            Ok(()),
            "either key"
        );
        let mut tampered = body.to_vec();
        tampered.push(b' ');
        assert_eq!(
            verify(&headers, &tampered, &[secret]),
            Err(VerifyError::NoMatch)
        );
    }
    server.stop().await;
}

/// What the test receiver got: each request's headers and body.
type Requests = tokio::sync::mpsc::UnboundedReceiver<(axum::http::HeaderMap, axum::body::Bytes)>;

/// A webhook receiver on 127.0.0.1: its URL, and every request it gets.
async fn receiver() -> (String, Requests) {
    use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let _ = tx.send((headers, body));
            async { axum::http::StatusCode::NO_CONTENT }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// A notification of every event to `url`, signed with `scheme`.
fn notification(
    url: String,
    scheme: cds_events_api::SignatureScheme,
) -> cds_events_api::NotificationIn {
    cds_events_api::NotificationIn {
        name: "receiver".into(),
        webhook_url: url,
        filters: [(
            "all".to_owned(),
            cds_events_api::NotificationFilter {
                event: vec![".*".into()],
            },
        )]
        .into(),
        signature: Some(scheme),
        ..Default::default()
    }
}

/// The examples of `crates/client/examples/`, built by `cargo test` beside
/// this test, run against the server as a user runs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_run_against_the_real_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path(), "127.0.0.1:0", false).await;
    let run = |name: &str, args: &[&str]| {
        let mut cmd = tokio::process::Command::new(example(name));
        cmd.args(args)
            .env("CDS_EVENTS_URL", &server.url)
            .env("CDS_EVENTS_TOKEN", &server.token)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::piped());
        cmd
    };
    let out = run("publish", &["EX", "30"])
        .output()
        .await
        .expect("publish runs");
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 31, "{lines:?}");
    assert!(
        lines[30].starts_with(&format!("again {} ", seq_of(&lines[0]))),
        "{lines:?}"
    );
    assert!(lines[30].ends_with("duplicate=true"), "{lines:?}");
    let last: u64 = seq_of(&lines[29]).parse().expect("a seq");

    let tail = run("tail", &["EX", "3", &last.to_string()])
        .spawn()
        .expect("tail runs");
    let client = server.client(Retry::default());
    let more = client
        .publish(&(0..3).map(|i| event("EX", 100 + i)).collect::<Vec<_>>())
        .await
        .expect("stored");
    let out = tokio::time::timeout(Duration::from_secs(30), tail.wait_with_output())
        .await
        .expect("tail ends after 3")
        .expect("tail output");
    assert!(out.status.success(), "{out:?}");
    let tailed: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: Vec<String> = more
        .iter()
        .map(|a| format!("{} ProjectUpdated {}", a.seq, a.id))
        .collect();
    assert_eq!(tailed, expected);

    let out = run("history", &["EX"])
        .output()
        .await
        .expect("history runs");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(text.lines().count(), 34, "{text}");
    assert!(text.ends_with("ProjectUpdated 33\n"), "{text}");
    server.stop().await;
}

/// The first word of an example's line: the sequence number.
fn seq_of(line: &str) -> &str {
    line.split(' ').next().unwrap_or_default()
}

/// An example's binary: `target/<profile>/examples/<name>`, beside this
/// test's `target/<profile>/deps/`.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = profile.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: `cargo test -p cds-events-client` builds it",
        path.display()
    );
    path
}

/// A stand-in for `POST /v2/events` that counts requests and answers each
/// event with the next sequence number: how many requests a [`Publisher`]
/// makes is what is measured here, not what the server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_sends_full_batches_and_a_lone_event_after_the_linger() {
    use axum::{Json, Router, routing::post};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    let sizes = Arc::new(Mutex::new(Vec::<usize>::new()));
    let next = Arc::new(AtomicU64::new(1));
    let app = Router::new().route(
        "/v2/events",
        post({
            let sizes = sizes.clone();
            move |Json(events): Json<Vec<serde_json::Value>>| {
                sizes.lock().expect("lock").push(events.len());
                let out: Vec<_> = events
                    .iter()
                    .map(|e| serde_json::json!({"id": e["id"], "seq": next.fetch_add(1, Ordering::SeqCst)}))
                    .collect();
                async move { Json(serde_json::json!({ "events": out })) }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::new(&url).expect("client");

    let publisher = Publisher::new(
        client.clone(),
        PublisherOptions {
            max_events: 50,
            linger: Duration::from_secs(2),
            queue: 1000,
        },
    );
    let sends: Vec<_> = (0..200)
        .map(|i| {
            let p = publisher.clone();
            tokio::spawn(async move { p.send(event("B", i)).await })
        })
        .collect();
    for s in sends {
        s.await.expect("task").expect("answered");
    }
    assert_eq!(
        *sizes.lock().expect("lock"),
        [50, 50, 50, 50],
        "four full batches"
    );

    let lone = Publisher::new(
        client,
        PublisherOptions {
            linger: Duration::from_millis(100),
            ..PublisherOptions::default()
        },
    );
    let started = std::time::Instant::now();
    let mut no_id = event("B", 0);
    no_id.id = String::new();
    let answer = lone.send(no_id).await.expect("answered");
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "it waited for the linger"
    );
    assert!(uuid_v7(&answer.id), "an id was given: {}", answer.id);
    assert_eq!(sizes.lock().expect("lock").len(), 5);
}

fn uuid_v7(id: &str) -> bool {
    id.len() == 36 && id.as_bytes()[14] == b'7'
}
