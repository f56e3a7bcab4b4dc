//! The hub and its feeds over a real SQLite log.

use cds_events_hub::{Feed, FeedError, FeedOptions, Hub};
use cds_events_log::conformance::event;
use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
use cds_events_log::{EventLog, NewEvent, Seq};
use cds_events_model::{EventFilter, EventType};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

struct World {
    _dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    hub: Hub,
    shutdown: CancellationToken,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> =
        Arc::new(SqliteLog::open(dir.path(), SqliteOptions::default()).expect("open"));
    let shutdown = CancellationToken::new();
    let hub = Hub::start(Arc::clone(&log), shutdown.clone());
    World {
        _dir: dir,
        log,
        hub,
        shutdown,
    }
}

async fn publish(log: &Arc<dyn EventLog>, project: &str, n: i64) -> Vec<u64> {
    let batch: Vec<NewEvent> = (0..n)
        .map(|i| NewEvent::from(event(EventType::RunJobEnded, project, i)))
        .collect();
    log.append(batch)
        .await
        .expect("append")
        .into_iter()
        .map(|a| a.seq.0)
        .collect()
}

fn project(p: &str) -> Arc<EventFilter> {
    Arc::new(EventFilter {
        scopes: vec![cds_events_log::conformance::project(p)],
        ..Default::default()
    })
}

/// Polls `cond` until it holds, or panics after 10 s naming `what`.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let polled = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), polled)
        .await
        .is_err()
    {
        panic!("timed out waiting for {what}");
    }
}

async fn take(feed: &mut Feed, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for _ in 0..n {
        let e = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("in time")
            .expect("event");
        out.push(e.seq.0);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_reach_only_matching_subscribers_in_order() {
    let w = world();
    let mut a = Feed::open(&w.hub, project("A"), None, FeedOptions::default())
        .await
        .expect("feed");
    let mut b = Feed::open(&w.hub, project("B"), None, FeedOptions::default())
        .await
        .expect("feed");
    let sa = publish(&w.log, "A", 3).await;
    let sb = publish(&w.log, "B", 2).await;
    let sa2 = publish(&w.log, "A", 2).await;
    assert_eq!(take(&mut a, 5).await, [sa, sa2].concat());
    assert_eq!(take(&mut b, 2).await, sb);
    let e = a.next();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), e)
            .await
            .is_err(),
        "nothing else for A"
    );
    // The websocket message is built once and carries the seq beside the event.
    publish(&w.log, "B", 1).await;
    let ev = b.next().await.expect("event");
    let msg = ev.ws_message();
    let text = std::str::from_utf8(&msg).expect("utf-8");
    assert!(
        text.starts_with(r#"{"status":"OK","error":"","event":{"id":"#),
        "{text}"
    );
    assert!(text.ends_with(&format!(r#","seq":{}}}"#, ev.seq.0)));
    // Built once: every call shares the same buffer.
    assert_eq!(msg.as_ptr(), ev.ws_message().as_ptr());
    // So is the SSE frame: one `id:` line, one `data:` line.
    let frame = ev.sse_frame();
    assert_eq!(frame.as_ptr(), ev.sse_frame().as_ptr());
    let expected = format!("id: {}\ndata: {}\n\n", ev.seq.0, ev.json);
    assert_eq!(&frame[..], expected.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_the_log_then_goes_live_without_gap_or_duplicate() {
    let w = world();
    publish(&w.log, "A", 100).await;
    let mut f = Feed::open(&w.hub, project("A"), Some(Seq(50)), FeedOptions::default())
        .await
        .expect("feed");
    let writer = {
        let log = Arc::clone(&w.log);
        tokio::spawn(async move {
            for _ in 0..20 {
                publish(&log, "A", 10).await;
            }
        })
    };
    let got = take(&mut f, 250).await;
    writer.await.expect("writer");
    assert_eq!(got, (51..=300).collect::<Vec<u64>>());
    // The same without a filter the log can index (read everything, match).
    let all = Arc::new(AnyOf(vec!["A".into()]));
    let mut g = Feed::open(&w.hub, all, Some(Seq(290)), FeedOptions::default())
        .await
        .expect("feed");
    assert_eq!(take(&mut g, 10).await, (291..=300).collect::<Vec<u64>>());
}

/// A matcher that is not a log filter, to exercise the read-everything path.
#[derive(Debug)]
struct AnyOf(Vec<String>);

impl cds_events_hub::Matcher for AnyOf {
    fn matches(&self, e: &cds_events_model::FullEvent) -> bool {
        self.0.contains(&e.project_key)
    }
    fn scopes(&self) -> Option<Vec<cds_events_model::EventScope>> {
        Some(
            self.0
                .iter()
                .map(|p| cds_events_log::conformance::project(p))
                .collect(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_catches_up_from_the_log() {
    let w = world();
    let opts = FeedOptions {
        queue: 4,
        ..FeedOptions::default()
    };
    let mut slow = Feed::open(&w.hub, project("A"), None, opts)
        .await
        .expect("feed");
    let mut fast = Feed::open(&w.hub, project("A"), None, FeedOptions::default())
        .await
        .expect("feed");
    let mut want = Vec::new();
    for _ in 0..10 {
        want.extend(publish(&w.log, "A", 100).await);
        want.extend(publish(&w.log, "B", 10).await.into_iter().filter(|_| false));
    }
    // The fast one was never held back by the slow one.
    assert_eq!(take(&mut fast, 1000).await, want);
    wait_until("the slow one lagged", || {
        w.hub.stats().lagged.load(Ordering::Relaxed) >= 1
    })
    .await;
    assert_eq!(
        take(&mut slow, 1000).await,
        want,
        "every event once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_far_behind_is_told_where_to_resume() {
    let w = world();
    let opts = FeedOptions {
        queue: 2,
        max_catchup: 50,
    };
    let mut f = Feed::open(&w.hub, Arc::new(AnyOf(vec!["A".into()])), None, opts)
        .await
        .expect("feed");
    let last = *publish(&w.log, "A", 500).await.last().expect("published");
    // Not one read until the hub has routed every event: the feed overflowed.
    wait_until("the hub past the last event", || {
        w.hub.stats().position.load(Ordering::Relaxed) >= last
    })
    .await;
    let mut got = Vec::new();
    let err = loop {
        match f.next().await {
            Ok(e) => got.push(e.seq.0),
            Err(e) => break e,
        }
    };
    match err {
        FeedError::Lagged { resume_from } => {
            assert_eq!(resume_from.0, got.last().copied().unwrap_or(0))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_feed() {
    let w = world();
    let mut f = Feed::open(&w.hub, project("A"), None, FeedOptions::default())
        .await
        .expect("feed");
    w.shutdown.cancel();
    let r = tokio::time::timeout(Duration::from_secs(5), f.next())
        .await
        .expect("ends");
    assert!(matches!(r, Err(FeedError::Closed)), "{r:?}");
}
