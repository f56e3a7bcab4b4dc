//! What a backend promises about sequence numbers, checked under
//! concurrency: they are assigned at commit, strictly increasing in commit
//! order, with no gap; a reader that has seen `n` never later sees a new
//! event below `n` (so following the head with `read_after` loses nothing).

use super::{Harness, batch, event};
use crate::{EventLog, Seq};
use cds_events_model::EventType;
use std::sync::Arc;

pub async fn concurrent_appends_commit_in_sequence_order(h: &dyn Harness) {
    let log = h.open().await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..20 {
                let out = log
                    .append(batch((0..5).map(|k| {
                        event(EventType::RunJobEnded, &format!("P{t}"), i * 10 + k)
                    })))
                    .await
                    .expect("append");
                // Within one request, sequence numbers are consecutive.
                assert!(out.windows(2).all(|w| w[1].seq.0 == w[0].seq.0 + 1));
                mine.extend(out.into_iter().map(|a| a.seq.0));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let mine = t.await.expect("task");
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "a client sees its own events in order"
        );
        all.extend(mine);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=800).collect::<Vec<u64>>(), "no gap, no duplicate");
    log.close().await.expect("close");
}

/// Appenders on several tasks while a reader follows the head: every read
/// continues exactly after the last event seen (an event committed below it
/// later would be missed, and the final tally would show the hole), and the
/// head never announces an event the reader cannot read yet.
pub async fn a_reader_following_the_head_never_sees_an_event_below_one_it_has_seen(
    h: &dyn Harness,
) {
    const APPENDERS: u64 = 4;
    const REQUESTS: u64 = 50;
    const PER_REQUEST: u64 = 3;
    const TOTAL: u64 = APPENDERS * REQUESTS * PER_REQUEST;
    let log = h.open().await;
    let reader = {
        let log: Arc<dyn EventLog> = Arc::clone(&log);
        tokio::spawn(async move {
            let mut head = log.head();
            let mut position = Seq(0);
            let mut seen = Vec::new();
            while position.0 < TOTAL {
                let target = *head.borrow_and_update();
                while position < target {
                    let page = log.read_after(position, 64).await.expect("read_after");
                    assert!(
                        !page.is_empty(),
                        "the head announced {target} but nothing after {position} is readable"
                    );
                    for e in &page {
                        assert_eq!(
                            e.seq.0,
                            position.0 + 1,
                            "after {position} the reader got {}: an event was skipped or came late",
                            e.seq
                        );
                        position = e.seq;
                        seen.push(e.seq.0);
                    }
                }
                if position.0 < TOTAL && head.changed().await.is_err() {
                    break;
                }
            }
            seen
        })
    };
    let mut appenders = Vec::new();
    for t in 0..APPENDERS {
        let log = Arc::clone(&log);
        appenders.push(tokio::spawn(async move {
            for i in 0..REQUESTS {
                let events = (0..PER_REQUEST).map(|k| {
                    event(
                        EventType::RunJobEnded,
                        &format!("P{t}"),
                        (i * 10 + k) as i64,
                    )
                });
                log.append(batch(events)).await.expect("append");
            }
        }));
    }
    for a in appenders {
        a.await.expect("appender");
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(30), reader)
        .await
        .expect("the reader reaches the last event")
        .expect("reader");
    assert_eq!(seen, (1..=TOTAL).collect::<Vec<u64>>());
    log.close().await.expect("close");
}

/// `read_after` gives the same answer from every position: the events after
/// it, in order, each body as appended, whatever the backend keeps in memory
/// (a backend may answer reads near the head from memory, and older ones from
/// its storage, and hand over each event's head with it); after a purge, from
/// the oldest kept event.
pub async fn read_after_answers_alike_from_every_position(h: &dyn Harness) {
    let log = h.open().await;
    let mut appended: Vec<Arc<str>> = Vec::new();
    let mut ts = 0;
    for size in [1usize, 7, 50, 3, 120, 19] {
        let events = batch((0..size).map(|i| {
            ts += 1;
            let p = if i % 2 == 0 { "A" } else { "B" };
            event(EventType::RunJobEnded, p, ts)
        }));
        appended.extend(events.iter().map(|e| e.json.clone()));
        // One already stored: not a new event, nothing kept twice.
        let again = events[0].clone();
        log.append(events).await.expect("append");
        log.append(vec![again]).await.expect("append a duplicate");
    }
    let head = appended.len() as u64;
    for after in 0..=head {
        for limit in [1usize, 13, 500] {
            let got = log.read_after(Seq(after), limit).await.expect("read");
            let want: Vec<u64> = (after + 1..=head).take(limit).collect();
            assert_eq!(
                got.iter().map(|e| e.seq.0).collect::<Vec<_>>(),
                want,
                "read_after({after}, {limit})"
            );
            for e in &got {
                assert_eq!(
                    &*e.json,
                    &*appended[e.seq.0 as usize - 1],
                    "body of {}",
                    e.seq
                );
                // What a backend hands over with an event routes it as its
                // JSON would.
                let peeked = cds_events_model::peek_stored(&e.json).expect("peek");
                assert_eq!(e.head().expect("head"), peeked, "head of {}", e.seq);
            }
        }
    }
    let keep_100 = crate::Retention {
        max_events: Some(100),
        ..crate::Retention::default()
    };
    while log.purge(keep_100, 1000).await.expect("purge") > 0 {}
    let got = log.read_after(Seq(0), 5).await.expect("read after a purge");
    let want: Vec<u64> = (head - 99..head - 94).collect();
    assert_eq!(got.iter().map(|e| e.seq.0).collect::<Vec<_>>(), want);
    log.close().await.expect("close");
}
