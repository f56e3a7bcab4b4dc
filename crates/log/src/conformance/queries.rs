//! Filtered, paged reads: every filter field, both orders, cursors that
//! resume exactly, and walks that cross many sequence blocks.

use super::{Harness, batch, event, follow_cursors, project, seqs};
use crate::{Order, Query};
use cds_events_model::{EventFilter, EventType, Timestamp};

pub async fn query_filters_by_each_field(h: &dyn Harness) {
    let log = h.open().await;
    let mut evs = Vec::new();
    for (i, p) in ["A", "B"].iter().enumerate() {
        let mut run = event(EventType::RunCrafted, p, 100 + i as i64);
        run.workflow = "build".into();
        run.workflow_run_id = format!("run-{p}");
        run.status = "Crafting".into();
        run.user_id = format!("u-{p}");
        run.username = format!("user{p}");
        run.vcs_name = "github".into();
        run.repository = format!("org/{p}");
        evs.push(run);
        let mut job = event(EventType::RunJobEnqueued, p, 200 + i as i64);
        job.workflow_run_id = format!("run-{p}");
        job.run_job_id = format!("rj-{p}");
        job.job_id = "compile".into();
        job.region = "eu".into();
        job.hatchery = "swarm".into();
        job.status = "Waiting".into();
        evs.push(job);
        evs.push(event(EventType::AnalysisDone, p, 300 + i as i64));
    }
    evs.push(event(EventType::HatcheryCreated, "", 400));
    log.append(batch(evs.clone())).await.expect("append");

    let q = |f: EventFilter| Query {
        filter: f,
        ..Query::default()
    };
    let types = |s: &str| Some(cds_events_model::parse_types(s).expect("types"));
    let cases: Vec<(EventFilter, Vec<u64>)> = vec![
        (
            EventFilter {
                scopes: vec![project("A")],
                ..Default::default()
            },
            vec![1, 2, 3],
        ),
        (
            EventFilter {
                scopes: vec![project("A"), project("B")],
                types: types("RunJob*"),
                ..Default::default()
            },
            vec![2, 5],
        ),
        (
            EventFilter {
                types: types("AnalysisDone,HatcheryCreated"),
                ..Default::default()
            },
            vec![3, 6, 7],
        ),
        (
            EventFilter {
                workflow_run_id: Some("run-B".into()),
                ..Default::default()
            },
            vec![4, 5],
        ),
        (
            EventFilter {
                run_job_id: Some("rj-A".into()),
                ..Default::default()
            },
            vec![2],
        ),
        (
            EventFilter {
                job_id: Some("compile".into()),
                scopes: vec![project("B")],
                ..Default::default()
            },
            vec![5],
        ),
        (
            EventFilter {
                user: Some("u-A".into()),
                ..Default::default()
            },
            vec![1],
        ),
        (
            EventFilter {
                user: Some("userB".into()),
                ..Default::default()
            },
            vec![4],
        ),
        (
            EventFilter {
                region: Some("eu".into()),
                ..Default::default()
            },
            vec![2, 5],
        ),
        (
            EventFilter {
                hatchery: Some("swarm".into()),
                ..Default::default()
            },
            vec![2, 5],
        ),
        (
            EventFilter {
                status: Some("Crafting".into()),
                ..Default::default()
            },
            vec![1, 4],
        ),
        (
            EventFilter {
                workflow: Some("build".into()),
                ..Default::default()
            },
            vec![1, 4],
        ),
        (
            EventFilter {
                vcs_name: Some("github".into()),
                repository: Some("org/B".into()),
                ..Default::default()
            },
            vec![4],
        ),
        (
            EventFilter {
                since: Some(Timestamp::from_unix_nanos(200_000_000_000)),
                until: Some(Timestamp::from_unix_nanos(300_000_000_000)),
                ..Default::default()
            },
            vec![2, 3, 5],
        ),
        (
            EventFilter {
                since: Some(Timestamp::from_unix_nanos(500_000_000_000)),
                ..Default::default()
            },
            vec![],
        ),
        (
            EventFilter {
                types: Some(Default::default()),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, want) in cases {
        let page = log.query(q(filter.clone())).await.expect("query");
        assert_eq!(seqs(&page), want, "filter {filter:?}");
        // The log and the in-memory matcher agree.
        let expected: Vec<u64> = evs
            .iter()
            .enumerate()
            .filter(|(_, e)| filter.matches(e))
            .map(|(i, _)| i as u64 + 1)
            .collect();
        assert_eq!(seqs(&page), expected, "matcher disagrees for {filter:?}");
    }
    log.close().await.expect("close");
}

pub async fn query_pages_in_both_orders(h: &dyn Harness) {
    let log = h.open().await;
    log.append(batch(
        (0..25).map(|i| event(EventType::RunJobEnded, "P", i)),
    ))
    .await
    .expect("append");
    log.append(batch(
        (0..5).map(|i| event(EventType::ProjectUpdated, "Q", i)),
    ))
    .await
    .expect("append");
    let filter = EventFilter {
        scopes: vec![project("P")],
        ..Default::default()
    };
    for order in [Order::Asc, Order::Desc] {
        let all = follow_cursors(log.as_ref(), &filter, order, 10).await;
        let mut want: Vec<u64> = (1..=25).collect();
        if order == Order::Desc {
            want.reverse();
        }
        assert_eq!(all, want, "{order:?}");
    }
    log.close().await.expect("close");
}

/// Enough events to span several storage blocks of any backend that pages its
/// indexes, read back through every filter shape in both orders, by id, and
/// again after a reopen (what a backend rebuilds at open answers alike).
pub async fn queries_span_many_blocks(h: &dyn Harness) {
    let log = h.open().await;
    let mut evs = Vec::new();
    for i in 0..40_000i64 {
        let t = [
            EventType::RunJobEnded,
            EventType::RunCrafted,
            EventType::AnalysisDone,
        ][(i % 3) as usize];
        // Now and then a late timestamp, out of sequence order: a block's
        // time zone is what its rows hold, not what their order suggests.
        let ts = if i % 1013 == 500 { i + 50_000 } else { i };
        let mut e = event(t, ["A", "B", "C", "D"][(i % 4) as usize], ts);
        e.workflow_run_id = format!("run-{}", i % 7);
        evs.push(e);
    }
    for chunk in evs.chunks(5000) {
        log.append(batch(chunk.to_vec())).await.expect("append");
    }
    let types = |s: &str| Some(cds_events_model::parse_types(s).expect("types"));
    let secs = |s: i64| Timestamp::from_unix_nanos(s * 1_000_000_000);
    let filters = [
        EventFilter {
            scopes: vec![project("B")],
            ..Default::default()
        },
        EventFilter {
            scopes: vec![project("B")],
            types: types("Run*"),
            ..Default::default()
        },
        EventFilter {
            types: types("AnalysisDone"),
            ..Default::default()
        },
        EventFilter {
            workflow_run_id: Some("run-3".into()),
            scopes: vec![project("A")],
            ..Default::default()
        },
        EventFilter {
            since: Some(secs(39_000)),
            ..Default::default()
        },
        // Time bounds beside streams and runs: blocks cut by them and blocks
        // within them (whose rows need no check of the time).
        EventFilter {
            scopes: vec![project("B")],
            types: types("Run*"),
            since: Some(secs(10_000)),
            ..Default::default()
        },
        EventFilter {
            scopes: vec![project("B")],
            types: types("Run*"),
            since: Some(secs(10_000)),
            until: Some(secs(39_000)),
            ..Default::default()
        },
        EventFilter {
            workflow_run_id: Some("run-3".into()),
            since: Some(secs(20_000)),
            ..Default::default()
        },
    ];
    let mut log = log;
    for opened in ["first open", "reopened"] {
        if opened == "reopened" {
            log.close().await.expect("close");
            log = h.open().await;
        }
        for filter in &filters {
            let want: Vec<u64> = evs
                .iter()
                .enumerate()
                .filter(|(_, e)| filter.matches(e))
                .map(|(i, _)| i as u64 + 1)
                .collect();
            for order in [Order::Asc, Order::Desc] {
                let got = follow_cursors(log.as_ref(), filter, order, 997).await;
                let mut want = want.clone();
                if order == Order::Desc {
                    want.reverse();
                }
                assert_eq!(got.len(), want.len(), "{opened}: {filter:?} {order:?}");
                assert_eq!(got, want, "{opened}: {filter:?} {order:?}");
            }
        }
        // Ids in the first, a middle and the last block, and their retries.
        for i in [0usize, 20_000, 39_999] {
            let got = log.get(&evs[i].id).await.expect("get").expect("found");
            assert_eq!(got.seq.0, i as u64 + 1, "{opened}: get of event {i}");
            let retry = log.append(batch([evs[i].clone()])).await.expect("retry");
            assert_eq!(
                (retry[0].seq.0, retry[0].duplicate),
                (i as u64 + 1, true),
                "{opened}: retry of event {i}"
            );
        }
    }
    log.close().await.expect("close");
}
