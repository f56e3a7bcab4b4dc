//! The conformance suite on the PostgreSQL backend, plus what only a shared
//! database brings: several instances appending at once, the head across
//! instances, the database being away. Each test runs in a throw-away
//! database of the machine's PostgreSQL (`CDS_EVENTS_TEST_POSTGRES`).

use async_trait::async_trait;
use cds_events_log::conformance::{Harness, event, project};
use cds_events_log::postgres::{PgLog, PgLogOptions};
use cds_events_log::{EventLog, LogError, NewEvent, Query, Seq};
use cds_events_model::{EventFilter, EventType, Timestamp};
use cds_events_store::pg::testing::TempDatabase;
use cds_events_store::pg::{PgOptions, PgPool};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

struct Postgres {
    db: TempDatabase,
}

impl Postgres {
    async fn new() -> Self {
        Postgres {
            db: TempDatabase::create().await.expect("test database"),
        }
    }

    /// Small pools: every test's databases share one server.
    fn options(&self) -> PgOptions {
        PgOptions {
            pool_size: 4,
            ..self.db.options()
        }
    }

    async fn log(&self, options: PgLogOptions) -> PgLog {
        PgLog::open(&self.options(), options).await.expect("open")
    }

    /// A connection of the test's own, beside the logs'.
    async fn sql(&self) -> PgPool {
        PgPool::connect(&self.options()).await.expect("connect")
    }
}

#[async_trait]
impl Harness for Postgres {
    async fn open(&self) -> Arc<dyn EventLog> {
        Arc::new(self.log(PgLogOptions::default()).await)
    }
}

cds_events_log::conformance_tests!(Postgres::new().await);

fn batch(events: impl IntoIterator<Item = cds_events_model::FullEvent>) -> Vec<NewEvent> {
    events.into_iter().map(NewEvent::from).collect()
}

/// Waits until `head` reaches `want`; panics after `within`.
async fn head_reaches(log: &PgLog, want: Seq, within: Duration) {
    let mut head = log.head();
    tokio::time::timeout(within, head.wait_for(|h| *h >= want))
        .await
        .unwrap_or_else(|_| panic!("the head stayed at {} below {want}", *log.head().borrow()))
        .expect("head open");
}

/// The common filters are served by an index, never by a scan of the table
/// (an ordered index scan, or a bitmap one when the window holds few
/// matches): the plans are printed here so a reader can see them
/// (`--nocapture`).
#[tokio::test]
async fn common_filters_use_indexes() {
    let h = Postgres::new().await;
    let log = h.log(PgLogOptions::default()).await;
    // 50 projects, 500 runs, and one type in a hundred events is rare: the
    // shapes for which walking the whole range would be the wrong plan.
    let common = [
        EventType::RunJobEnded,
        EventType::RunCrafted,
        EventType::ProjectUpdated,
    ];
    let evs = (0..20_000i64).map(|i| {
        let t = if i % 100 == 0 {
            EventType::AnalysisDone
        } else {
            common[(i % 3) as usize]
        };
        let mut e = event(t, &format!("P{}", i % 50), i);
        e.workflow_run_id = format!("run-{}", i % 500);
        e
    });
    log.append(batch(evs)).await.expect("append");
    // Plans depend on statistics, which autovacuum would gather in time.
    let sql = h.sql().await;
    sql.get()
        .await
        .expect("conn")
        .batch_execute("ANALYZE")
        .await
        .expect("analyze");
    let types = |s: &str| Some(cds_events_model::parse_types(s).expect("types"));
    let since = Some(Timestamp::from_unix_nanos(19_000_000_000_000));
    let cases = [
        (
            "project + type prefix + since",
            EventFilter {
                scopes: vec![project("P8")],
                types: types("RunJob*"),
                since,
                ..Default::default()
            },
            "log_events_project_type",
        ),
        (
            "project",
            EventFilter {
                scopes: vec![project("P8")],
                ..Default::default()
            },
            "log_events_project_type",
        ),
        (
            "type",
            EventFilter {
                types: types("AnalysisDone"),
                ..Default::default()
            },
            "log_events_type",
        ),
        (
            "workflow run",
            EventFilter {
                workflow_run_id: Some("run-7".into()),
                ..Default::default()
            },
            "log_events_run",
        ),
        (
            "since only",
            EventFilter {
                since,
                ..Default::default()
            },
            "log_events_pkey",
        ),
    ];
    for (name, filter, index) in cases {
        let plan = log
            .explain(Query {
                filter,
                ..Query::default()
            })
            .await
            .expect("explain");
        println!("{name}:\n  {}", plan.join("\n  "));
        assert!(
            plan.iter().all(|s| !s.contains("Seq Scan on log_events")),
            "{name}: a scan in {plan:?}"
        );
        assert!(
            plan.iter().any(
                |s| (s.contains("Index Scan") || s.contains("Index Only Scan"))
                    && s.split_whitespace().any(|word| word == index)
            ),
            "{name}: {index} unused in {plan:?}"
        );
    }
    log.close().await.expect("close");
}

/// A walk that runs out of time answers what it found with a cursor where it
/// stopped; following the cursors still yields every match exactly once.
#[tokio::test]
async fn a_walk_out_of_budget_resumes_where_it_stopped() {
    let h = Postgres::new().await;
    let log = h
        .log(PgLogOptions {
            query_budget: Duration::ZERO,
            ..PgLogOptions::default()
        })
        .await;
    let evs = (0..50_000).map(|i| {
        let t = if i % 1000 == 0 {
            EventType::ProjectCreated
        } else {
            EventType::RunJobEnded
        };
        event(t, "P", i)
    });
    log.append(batch(evs)).await.expect("append");
    let filter = EventFilter {
        types: Some(cds_events_model::parse_types("ProjectCreated").expect("t")),
        ..Default::default()
    };
    let mut got = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = log
            .query(Query {
                filter: filter.clone(),
                cursor,
                limit: 100,
                ..Query::default()
            })
            .await
            .expect("query");
        pages += 1;
        got.extend(page.events.iter().map(|e| e.seq.0));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert!(pages > 1, "the zero budget cut the walk");
    assert_eq!(got, (0..50).map(|i| i * 1000 + 1).collect::<Vec<u64>>());
    log.close().await.expect("close");
}

/// Follows `log`'s head with `read_after` until `total`, checking that each
/// event is the one right after the last seen.
async fn follow_to(log: Arc<PgLog>, total: u64) -> Vec<u64> {
    let mut head = log.head();
    let mut position = Seq(0);
    let mut seen = Vec::new();
    while position.0 < total {
        let target = *head.borrow_and_update();
        while position < target {
            let page = log.read_after(position, 50).await.expect("read_after");
            assert!(
                !page.is_empty(),
                "head {target} announced, nothing after {position}"
            );
            for e in &page {
                assert_eq!(e.seq.0, position.0 + 1, "after {position} came {}", e.seq);
                position = e.seq;
                seen.push(e.seq.0);
            }
        }
        if position.0 < total {
            head.changed().await.expect("head open");
        }
    }
    seen
}

/// Several instances (pools of their own) on one database, each appending
/// from several tasks while a reader on each follows its own head: every
/// reader sees 1..=N exactly once in order, and every acknowledged event is
/// stored at the seq it was acknowledged with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_appending_at_once_are_read_gap_free_on_every_instance() {
    const INSTANCES: usize = 3;
    const TASKS: usize = 3;
    const REQUESTS: usize = 30;
    let h = Postgres::new().await;
    let mut logs = Vec::new();
    for _ in 0..INSTANCES {
        logs.push(Arc::new(h.log(PgLogOptions::default()).await));
    }
    // Request r of a task carries 1 + r % 4 events.
    let per_task: usize = (0..REQUESTS).map(|r| 1 + r % 4).sum();
    let total = (INSTANCES * TASKS * per_task) as u64;
    let readers: Vec<_> = logs
        .iter()
        .map(|log| tokio::spawn(follow_to(Arc::clone(log), total)))
        .collect();
    let mut appenders = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        for t in 0..TASKS {
            let log = Arc::clone(log);
            appenders.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for r in 0..REQUESTS {
                    let evs = (0..1 + r % 4)
                        .map(|k| event(EventType::RunJobEnded, &format!("I{i}T{t}"), k as i64));
                    let out = log.append(batch(evs)).await.expect("append");
                    assert!(out.iter().all(|a| !a.duplicate));
                    acked.extend(out.into_iter().map(|a| (a.id, a.seq)));
                }
                acked
            }));
        }
    }
    let mut acked: HashMap<String, Seq> = HashMap::new();
    for a in appenders {
        acked.extend(a.await.expect("appender"));
    }
    let mut seqs: Vec<u64> = acked.values().map(|s| s.0).collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "acknowledged: no gap, no twice"
    );
    for reader in readers {
        let seen = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("every reader reaches the last event")
            .expect("reader");
        assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    }
    for (id, seq) in &acked {
        let log = &logs[seq.0 as usize % INSTANCES];
        assert_eq!(log.get(id).await.expect("get").expect("stored").seq, *seq);
    }
    for log in logs {
        log.close().await.expect("close");
    }
}

/// The same event sent to two instances at once (a producer retrying on
/// another instance) is stored once; both answers carry its one seq.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_appended_on_two_instances_at_once_is_stored_once() {
    const EVENTS: u64 = 40;
    let h = Postgres::new().await;
    let a = Arc::new(h.log(PgLogOptions::default()).await);
    let b = Arc::new(h.log(PgLogOptions::default()).await);
    for i in 0..EVENTS {
        let e = event(EventType::ProjectUpdated, "P", i as i64);
        let (x, y) = tokio::join!(
            {
                let (a, e) = (Arc::clone(&a), e.clone());
                tokio::spawn(async move { a.append(batch([e])).await })
            },
            {
                let (b, e) = (Arc::clone(&b), e.clone());
                tokio::spawn(async move { b.append(batch([e])).await })
            },
        );
        let (x, y) = (
            x.expect("task").expect("append"),
            y.expect("task").expect("append"),
        );
        assert_eq!(x[0].seq, y[0].seq, "one seq for one id");
        assert_eq!(x[0].seq, Seq(i + 1), "the duplicate consumed no seq");
        assert!(
            x[0].duplicate != y[0].duplicate,
            "exactly one stored it: {x:?} {y:?}"
        );
    }
    let stats = a.stats().await.expect("stats");
    assert_eq!((stats.events, stats.head_seq), (EVENTS, Seq(EVENTS)));
    a.close().await.expect("close");
    b.close().await.expect("close");
}

/// With the poll out of the way (an hour), only the notification can move
/// an instance's head when another instance commits.
#[tokio::test]
async fn a_commit_on_another_instance_moves_the_head_by_notification() {
    let h = Postgres::new().await;
    let no_poll = PgLogOptions {
        head_poll: Duration::from_secs(3600),
        ..PgLogOptions::default()
    };
    let a = h.log(no_poll.clone()).await;
    let b = h.log(no_poll).await;
    let out = b
        .append(batch((0..3).map(|i| event(EventType::UserCreated, "", i))))
        .await
        .expect("append");
    assert_eq!(*b.head().borrow(), Seq(3), "its own commit, at once");
    head_reaches(&a, out[2].seq, Duration::from_secs(5)).await;
    a.close().await.expect("close");
    b.close().await.expect("close");
}

/// A commit whose notification never came (written here without one) still
/// reaches the head through the periodic read of `log_head`.
#[tokio::test]
async fn a_lost_notification_is_made_up_by_the_head_poll() {
    let h = Postgres::new().await;
    let a = h
        .log(PgLogOptions {
            head_poll: Duration::from_millis(100),
            ..PgLogOptions::default()
        })
        .await;
    let e = NewEvent::from(event(EventType::UserCreated, "", 1));
    let sql = h.sql().await;
    let mut conn = sql.get().await.expect("conn");
    let tx = conn.transaction().await.expect("begin");
    let seq: i64 = tx
        .query_one("UPDATE log_head SET seq = seq + 1 RETURNING seq", &[])
        .await
        .expect("lock")
        .get(0);
    tx.execute(
        "INSERT INTO log_events (seq, id, project_key, type, ts, body)
         VALUES ($1, $2, '', 'UserCreated', 0, $3)",
        &[&seq, &e.head.id, &&*e.json],
    )
    .await
    .expect("insert");
    tx.commit().await.expect("commit");
    head_reaches(&a, Seq(seq as u64), Duration::from_secs(5)).await;
    let read = a.read_after(Seq(0), 10).await.expect("read");
    assert_eq!(&*read[0].json, &*e.json);
    a.close().await.expect("close");
}

/// The listening connection is killed: the follower reopens it (and reads
/// the head it may have missed), so other instances' commits still arrive,
/// with the poll out of the way.
#[tokio::test]
async fn the_head_keeps_following_after_the_listener_connection_is_killed() {
    let h = Postgres::new().await;
    let no_poll = PgLogOptions {
        head_poll: Duration::from_secs(3600),
        ..PgLogOptions::default()
    };
    let a = h.log(no_poll.clone()).await;
    let b = h.log(no_poll).await;
    let sql = h.sql().await;
    let listening = || async {
        let n: i64 = sql
            .get()
            .await
            .expect("conn")
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'",
                &[],
            )
            .await
            .expect("count")
            .get(0);
        n
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while listening().await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listeners never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed: i64 = sql
        .get()
        .await
        .expect("conn")
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        )
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(killed, 2, "both instances' listeners");
    for round in 1..=3u64 {
        b.append(batch([event(EventType::UserCreated, "", round as i64)]))
            .await
            .expect("append");
        head_reaches(&a, Seq(round), Duration::from_secs(10)).await;
    }
    a.close().await.expect("close");
    b.close().await.expect("close");
}

/// The connection of an append is killed (as by a restart of the server)
/// while it waits for the head: the append is `Busy`, which the server
/// answers 503; nothing was stored, and the retry numbers without a gap.
#[tokio::test]
async fn an_append_whose_connection_dies_is_busy_and_stores_nothing() {
    let h = Postgres::new().await;
    let log = Arc::new(h.log(PgLogOptions::default()).await);
    let e = event(EventType::UserCreated, "", 1);
    let sql = h.sql().await;
    let mut holder = sql.get().await.expect("conn");
    let tx = holder.transaction().await.expect("begin");
    tx.execute("SELECT seq FROM log_head FOR UPDATE", &[])
        .await
        .expect("lock");
    let append = {
        let (log, e) = (Arc::clone(&log), e.clone());
        tokio::spawn(async move { log.append(batch([e])).await })
    };
    let killer = sql.get().await.expect("conn");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let killed: i64 = killer
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("terminate")
            .get(0);
        if killed > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the append never waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = append
        .await
        .expect("task")
        .expect_err("its connection died");
    assert!(matches!(err, LogError::Busy(_)), "{err:?}");
    tx.rollback().await.expect("release");
    let out = log.append(batch([e])).await.expect("append");
    assert_eq!((out[0].seq, out[0].duplicate), (Seq(1), false));
    log.close().await.expect("close");
}

#[tokio::test]
async fn a_server_that_is_away_at_open_is_busy() {
    let options = PgOptions {
        connect_timeout: Duration::from_secs(1),
        ..PgOptions::new("postgres://postgres@127.0.0.1:1/none")
    };
    let err = PgLog::open(&options, PgLogOptions::default())
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, LogError::Busy(_)), "{err:?}");
}

/// A database made by the first layout (version 1, before pauses were kept)
/// is brought to the current one at open, its positions untouched.
#[tokio::test]
async fn a_version_1_database_gains_the_consumer_pauses_and_leads_at_open() {
    let h = Postgres::new().await;
    let log = h.log(PgLogOptions::default()).await;
    log.set_consumer_position("sink:old", Seq(7))
        .await
        .expect("position");
    log.close().await.expect("close");
    drop(log);
    h.sql()
        .await
        .get()
        .await
        .expect("conn")
        .batch_execute(
            "DROP TABLE log_consumer_pauses;
             DROP TABLE log_consumer_leads;
             UPDATE cds_events_schema SET version = 1 WHERE component = 'log';",
        )
        .await
        .expect("back to version 1");
    let log = h.log(PgLogOptions::default()).await;
    log.set_consumer_paused("sink:old", true)
        .await
        .expect("pause");
    assert!(log.consumer_paused("sink:old").await.expect("paused"));
    assert_eq!(
        log.consumer_position("sink:old").await.expect("position"),
        Some(Seq(7))
    );
    let leads = log.leads().expect("leads");
    let lead = leads.lead("sink:old", "here").await.expect("lead");
    leads
        .save_position(&lead, "sink:old", Seq(8))
        .await
        .expect("a led save");
    drop(lead);
    log.close().await.expect("close");
}

/// A consumer's lead dies with its session: the holder's lead connection
/// killed (a cut connection, a dead process), the instance waiting gets the
/// lead at once with a later term, and the holder is told its lead is lost
/// within seconds; its position writes are refused from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumers_lead_passes_on_when_its_session_dies() {
    let h = Postgres::new().await;
    let a = h.log(PgLogOptions::default()).await;
    let b = Arc::new(h.log(PgLogOptions::default()).await);
    let held = a
        .leads()
        .expect("leads")
        .lead("sink:cut", "a")
        .await
        .expect("lead");
    let waiting = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.leads().expect("leads").lead("sink:cut", "b").await })
    };
    let sql = h.sql().await;
    let killed: i64 = sql
        .get()
        .await
        .expect("conn")
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1
               AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)",
            &[&cds_events_log::postgres::lead_session_name("sink:cut")],
        )
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(killed, 1, "the holder's session");
    let taken = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiter takes the lead")
        .expect("task")
        .expect("lead");
    assert!(taken.term() > held.term());
    tokio::time::timeout(Duration::from_secs(10), held.lost())
        .await
        .expect("the holder learns that its lead is lost");
    let refused = a
        .leads()
        .expect("leads")
        .save_position(&held, "sink:cut", Seq(4))
        .await;
    assert!(matches!(refused, Err(LogError::LostLead)), "{refused:?}");
    b.leads()
        .expect("leads")
        .save_position(&taken, "sink:cut", Seq(6))
        .await
        .expect("the new holder saves");
    drop((held, taken));
    a.close().await.expect("close");
    b.close().await.expect("close");
}

/// The cost of the overview's count over a log of 1M events spread over a
/// day (`--ignored --nocapture` prints it; see BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "fills a log of 1M events; run by hand for the figure"]
async fn count_over_a_million_events() {
    let (day, hour) =
        cds_events_log::conformance::count_a_day_of_events(&Postgres::new().await, 1_000_000).await;
    println!(
        "postgres, 1M events over 24 h: whole day by hour {day:?}, last hour by minute {hour:?}"
    );
}
