//! The conformance suite every [`EventLog`] backend must pass.
//!
//! Each check is a plain async function over a [`Harness`]; a backend runs
//! them all with [`conformance_tests!`](crate::conformance_tests) in its own
//! test file. A harness opens the backend on a store of its own, and can open
//! the same store again (the "restart" of a process).

use crate::{EventLog, NewEvent, Order, Query, Retention, Seq};
use async_trait::async_trait;
use cds_events_model::{
    EventFilter, EventScope, EventType, FullEvent, Payload, ProjectKey, Timestamp,
};
use std::sync::Arc;
use std::time::Duration;

mod consumers;
mod counts;
mod ordering;
mod queries;
pub use consumers::*;
pub use counts::*;
pub use ordering::*;
pub use queries::*;

/// Opens a backend over one private store.
#[async_trait]
pub trait Harness: Send + Sync {
    /// Opens the store (again, after a `close`, to check persistence).
    async fn open(&self) -> Arc<dyn EventLog>;
}

/// The scope of project `key`, for filters in tests (`key` is never empty).
pub fn project(key: &str) -> EventScope {
    EventScope::Project(ProjectKey::new(key).expect("a test project key is not empty"))
}

/// An event of `t` in project `p` (ignored for global types) at `ts_secs`.
pub fn event(t: EventType, p: &str, ts_secs: i64) -> FullEvent {
    let mut e = FullEvent::new(t);
    if t.scope() == cds_events_model::Scope::Project {
        e.project_key = p.to_owned();
    }
    e.timestamp = Timestamp::from_unix_nanos(ts_secs * 1_000_000_000);
    e.payload = Payload::from_json(format!(r#"{{"n": {ts_secs}, "s": "x"}}"#)).expect("valid json");
    e
}

fn batch(events: impl IntoIterator<Item = FullEvent>) -> Vec<NewEvent> {
    events.into_iter().map(NewEvent::from).collect()
}

/// Every sequence number a query returns, following `next_cursor` to the end.
pub async fn follow_cursors(
    log: &dyn EventLog,
    filter: &EventFilter,
    order: Order,
    limit: usize,
) -> Vec<u64> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = log
            .query(Query {
                filter: filter.clone(),
                cursor,
                limit,
                order,
            })
            .await
            .expect("query");
        all.extend(seqs(&page));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return all,
        }
    }
}

fn seqs(page: &crate::Page) -> Vec<u64> {
    page.events.iter().map(|e| e.seq.0).collect()
}

pub async fn append_assigns_increasing_sequence_numbers(h: &dyn Harness) {
    let log = h.open().await;
    let a = log
        .append(batch(
            (0..3).map(|i| event(EventType::ProjectCreated, "A", i)),
        ))
        .await
        .expect("append");
    let b = log
        .append(batch([event(EventType::ProjectUpdated, "A", 9)]))
        .await
        .expect("append");
    assert_eq!(a.iter().map(|x| x.seq.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(b[0].seq, Seq(4));
    assert!(a.iter().chain(&b).all(|x| !x.duplicate));
    assert_eq!(*log.head().borrow(), Seq(4));
    log.close().await.expect("close");
}

pub async fn append_is_idempotent_on_event_id(h: &dyn Harness) {
    let log = h.open().await;
    let e = event(EventType::ProjectCreated, "A", 1);
    let first = log
        .append(batch([e.clone(), event(EventType::ProjectUpdated, "A", 2)]))
        .await
        .expect("append");
    let retry = log
        .append(batch([e.clone(), event(EventType::ProjectDeleted, "A", 3)]))
        .await
        .expect("append");
    assert_eq!(retry[0].seq, first[0].seq);
    assert!(retry[0].duplicate);
    assert_eq!(
        retry[1].seq,
        Seq(3),
        "a duplicate consumes no sequence number"
    );
    // The same id twice in one batch is stored once.
    let twice = log
        .append(batch(
            [event(EventType::ProjectCreated, "B", 4)]
                .into_iter()
                .flat_map(|e| [e.clone(), e]),
        ))
        .await
        .expect("append");
    assert_eq!(twice[0].seq, twice[1].seq);
    assert!(twice[1].duplicate);
    assert_eq!(log.stats().await.expect("stats").events, 4);
    log.close().await.expect("close");
}

pub async fn get_returns_the_stored_json_verbatim(h: &dyn Harness) {
    let log = h.open().await;
    let mut e = event(EventType::RunCrafted, "A", 5);
    e.payload = Payload::from_json(r#"{ "b":1,  "a" : [1.50, "é\u00e9"] }"#).expect("json");
    e.workflow_run_id = "run-1".into();
    let json = e.to_json();
    let out = log.append(batch([e.clone()])).await.expect("append");
    let got = log.get(&e.id).await.expect("get").expect("found");
    assert_eq!(got.seq, out[0].seq);
    assert_eq!(&*got.json, json);
    assert_eq!(got.decode().expect("decodes"), e);
    assert!(log.get("no-such-id").await.expect("get").is_none());
    log.close().await.expect("close");
}

pub async fn read_after_follows_the_head(h: &dyn Harness) {
    let log = h.open().await;
    let mut head = log.head();
    assert_eq!(*head.borrow_and_update(), Seq(0));
    log.append(batch((0..5).map(|i| event(EventType::UserCreated, "", i))))
        .await
        .expect("append");
    tokio::time::timeout(Duration::from_secs(5), head.changed())
        .await
        .expect("notified")
        .expect("open");
    assert_eq!(*head.borrow(), Seq(5));
    let got = log.read_after(Seq(2), 10).await.expect("read");
    assert_eq!(
        got.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(log.read_after(Seq(0), 2).await.expect("read").len(), 2);
    assert!(log.read_after(Seq(5), 10).await.expect("read").is_empty());
    log.close().await.expect("close");
}

pub async fn read_seqs_returns_those_asked_in_order(h: &dyn Harness) {
    let log = h.open().await;
    let appended = log
        .append(batch((0..5).map(|i| event(EventType::UserCreated, "", i))))
        .await
        .expect("append");
    let seqs = |v: &[crate::StoredEvent]| v.iter().map(|e| e.seq.0).collect::<Vec<_>>();
    // Asked out of order, with one beyond the head: that one is left out.
    let got = log
        .read_seqs(vec![Seq(4), Seq(2), Seq(9), Seq(1)])
        .await
        .expect("read");
    assert_eq!(seqs(&got), vec![4, 2, 1]);
    let by_seq = |s: u64| {
        appended
            .iter()
            .find(|a| a.seq == Seq(s))
            .map(|a| a.id.clone())
            .expect("appended")
    };
    for e in &got {
        let stored = log.get(&by_seq(e.seq.0)).await.expect("get").expect("kept");
        assert_eq!(stored.json, e.json, "seq {}", e.seq.0);
    }
    assert!(log.read_seqs(Vec::new()).await.expect("read").is_empty());
    log.close().await.expect("close");
}

pub async fn reopening_keeps_events_and_sequence_continues(h: &dyn Harness) {
    let log = h.open().await;
    let first = log
        .append(batch(
            (0..3).map(|i| event(EventType::ProjectCreated, "A", i)),
        ))
        .await
        .expect("append");
    log.set_consumer_position("sink-a", Seq(2))
        .await
        .expect("position");
    log.close().await.expect("close");
    assert!(
        log.append(batch([event(EventType::ProjectCreated, "A", 9)]))
            .await
            .is_err(),
        "closed log refuses appends"
    );
    drop(log);
    let log = h.open().await;
    assert_eq!(*log.head().borrow(), Seq(3));
    let next = log
        .append(batch([event(EventType::ProjectUpdated, "A", 9)]))
        .await
        .expect("append");
    assert_eq!(next[0].seq, Seq(4));
    for a in &first {
        assert_eq!(log.get(&a.id).await.expect("get").expect("kept").seq, a.seq);
    }
    // Ids stored before the reopen are still known: a retry is a duplicate.
    let mut again = event(EventType::ProjectCreated, "A", 0);
    again.id = first[1].id.clone();
    let retry = log.append(batch([again])).await.expect("append");
    assert_eq!((retry[0].seq, retry[0].duplicate), (first[1].seq, true));
    assert_eq!(
        log.consumer_position("sink-a").await.expect("position"),
        Some(Seq(2))
    );
    assert_eq!(
        log.consumer_position("sink-b").await.expect("position"),
        None
    );
    log.close().await.expect("close");
}

pub async fn purge_deletes_oldest_first_and_cursors_continue(h: &dyn Harness) {
    let log = h.open().await;
    log.append(batch(
        (0..30).map(|i| event(EventType::ProjectUpdated, "A", i)),
    ))
    .await
    .expect("append");
    let keep_20 = Retention {
        max_events: Some(20),
        ..Retention::default()
    };
    assert_eq!(
        log.purge(keep_20, 4).await.expect("purge"),
        4,
        "small batches"
    );
    let mut total = 4;
    loop {
        let n = log.purge(keep_20, 4).await.expect("purge");
        total += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(total, 10);
    let stats = log.stats().await.expect("stats");
    assert_eq!(
        (stats.events, stats.oldest_seq, stats.head_seq),
        (20, Seq(11), Seq(30))
    );
    // A cursor inside the purged range continues at the oldest kept event.
    assert_eq!(
        log.read_after(Seq(3), 1).await.expect("read")[0].seq,
        Seq(11)
    );
    let page = log
        .query(Query {
            cursor: Some(Seq(3)),
            limit: 1,
            ..Query::default()
        })
        .await
        .expect("query");
    assert_eq!(seqs(&page), vec![11]);
    // A hold keeps what a consumer still needs, whatever the limits.
    let held = Retention {
        max_age: Some(Duration::from_secs(3600)),
        hold_from: Some(Seq(15)),
        ..Retention::default()
    };
    while log.purge(held, 3).await.expect("purge") > 0 {}
    let stats = log.stats().await.expect("stats");
    assert_eq!((stats.events, stats.oldest_seq), (16, Seq(15)));
    // Age: every event here is from 1970, so all go.
    let by_age = Retention {
        max_age: Some(Duration::from_secs(3600)),
        ..Retention::default()
    };
    while log.purge(by_age, 7).await.expect("purge") > 0 {}
    let stats = log.stats().await.expect("stats");
    assert_eq!(stats.events, 0);
    // Sequence numbers are never reused after a purge, even across a restart.
    log.close().await.expect("close");
    let log = h.open().await;
    let next = log
        .append(batch([event(EventType::ProjectUpdated, "A", 99)]))
        .await
        .expect("append");
    assert_eq!(next[0].seq, Seq(31));
    log.close().await.expect("close");
}

/// Runs every check of the suite against a backend. `$make` is an expression
/// giving a fresh [`Harness`] (a new, empty store) each time it is evaluated.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            append_assigns_increasing_sequence_numbers,
            append_is_idempotent_on_event_id,
            get_returns_the_stored_json_verbatim,
            query_filters_by_each_field,
            query_pages_in_both_orders,
            queries_span_many_blocks,
            read_after_follows_the_head,
            read_after_answers_alike_from_every_position,
            read_seqs_returns_those_asked_in_order,
            reopening_keeps_events_and_sequence_continues,
            purge_deletes_oldest_first_and_cursors_continue,
            concurrent_appends_commit_in_sequence_order,
            a_reader_following_the_head_never_sees_an_event_below_one_it_has_seen,
            a_registered_consumers_hold_keeps_its_events_through_a_purge,
            a_consumers_pause_is_kept_apart_from_its_position_and_across_a_reopen,
            a_consumers_lead_has_one_holder_and_fences_its_position,
            count_buckets_events_by_time_type_and_scope,
            count_spans_many_blocks,
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
