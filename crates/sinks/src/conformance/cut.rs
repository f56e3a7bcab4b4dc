//! The check that a sink survives its broker connections being cut
//! mid-stream: nothing lost, order kept, and the only duplicates those of
//! the batch in flight at a cut (the driver sends an unacknowledged batch
//! again, whole).
//!
//! The sink reaches its broker through a [`Proxy`]; the test's reader is
//! connected directly, so only the sink's side breaks (a Redis subscriber
//! behind the proxy would lose what is published while it is away, which
//! is pub/sub's promise, not the sink's).

use super::proxy::Proxy;
use super::{Harness, Received, Running, WAIT, append, config, namespace, open_log};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Enough batches that every cut lands while the sink is sending.
const EVENTS: usize = 1000;
const BATCH: usize = 10;
/// Cut when the reader has seen this many distinct events, in these ways.
const CUTS: [(usize, Cut); 3] = [
    (150, Cut::AtReply),
    (350, Cut::NowAndRefuse),
    (550, Cut::AtReply),
];
const REFUSE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy)]
enum Cut {
    /// When the broker next answers the sink: its batch done, the
    /// acknowledgement lost (the sink must send it again, whole).
    AtReply,
    /// At once, then new connections refused for [`REFUSE`] (a broker
    /// restarting).
    NowAndRefuse,
}

pub async fn a_cut_connection_loses_nothing_and_repeats_only_the_batch_in_flight(h: &dyn Harness) {
    let ns = namespace();
    let proxy = Proxy::start(&h.broker_addr()).await;
    // The settings first: a broker that names its address to clients
    // (Kafka) is started by them, advertising the proxy.
    let mut c = config("cut", h.settings_at(&ns, &proxy.addr().to_string()));
    let mut reader = h.reader(&ns).await;
    let (_dir, log) = open_log();
    c.batch = BATCH;
    let kind = c.kind.name();
    let running = Running::start(&log, &[c]).await;
    let mut sent = Vec::with_capacity(EVENTS);
    while sent.len() < EVENTS {
        sent.extend(append(log.as_ref(), 100).await);
    }

    let mut got: Vec<Received> = Vec::with_capacity(EVENTS + 100);
    let mut distinct = HashSet::new();
    // Per cut: connections reset, and the events the sink had still to send.
    let mut cuts: Vec<(u64, u64)> = Vec::new();
    while distinct.len() < sent.len() {
        let Some(m) = reader.next(WAIT).await else {
            let s = running.status("cut").await;
            panic!(
                "{kind}: {} of {} events arrived ({} messages) after {} cuts; the sink hangs: {s:?}",
                distinct.len(),
                sent.len(),
                got.len(),
                cuts.len()
            );
        };
        distinct.insert(m.id.clone());
        got.push(m);
        if let Some(&(at, how)) = CUTS.get(cuts.len())
            && distinct.len() >= at
        {
            // A fast broker may have taken everything already: give the
            // sink more to send, so that the cut lands mid-stream.
            if running.status("cut").await.lag_events == 0 {
                sent.extend(append(log.as_ref(), 100).await);
            }
            let lag = running.status("cut").await.lag_events;
            let reset = match how {
                Cut::AtReply => {
                    proxy.cut_at_next_reply();
                    // The cut waits for the sink's next exchange. A sink
                    // that has sent everything meanwhile (its status may
                    // trail what the reader got) is given more to send.
                    let deadline = tokio::time::Instant::now() + WAIT;
                    while proxy.reply_cut_pending() {
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "{kind}: timed out waiting for the broker to answer the sink"
                        );
                        if running.status("cut").await.lag_events == 0 {
                            sent.extend(append(log.as_ref(), BATCH).await);
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    1
                }
                Cut::NowAndRefuse => {
                    proxy.refuse_for(REFUSE);
                    proxy.cut()
                }
            };
            cuts.push((reset, lag));
        }
    }
    // A batch sent again after the last new event brings only duplicates.
    while let Some(m) = reader.next(Duration::from_millis(300)).await {
        got.push(m);
    }

    let dups = check_order(&sent, &got);
    let head = *log.head().borrow();
    super::until("the sink's position reaches the head", || async {
        log.consumer_position("sink:cut").await.expect("position") == Some(head)
    })
    .await;
    let s = running.status("cut").await;
    eprintln!(
        "{kind}: {} events in batches of {BATCH}, {} cuts (connections reset, events still to send: {cuts:?}), \
         {dups} duplicates received, {} failed sends, {} connections through the proxy",
        sent.len(),
        cuts.len(),
        s.failed,
        proxy.accepted()
    );
    assert!(
        cuts.iter().all(|&(reset, _)| reset >= 1),
        "every cut resets the sink's connection: {cuts:?}"
    );
    assert!(
        cuts.iter().filter(|&&(_, lag)| lag > 0).count() >= 2,
        "at least two cuts land mid-stream: {cuts:?}"
    );
    assert!(
        proxy.accepted() >= 2,
        "the sink connected again through the proxy"
    );
    assert!(
        dups <= cuts.len() * BATCH,
        "{dups} duplicates: more than one batch per cut"
    );
    if !h.drops_duplicate_ids() {
        // A lost acknowledgement: the batch was published, and again.
        assert!(dups >= 1, "a cut at the broker's reply repeats its batch");
    }
    assert!(
        s.failed >= 2 || h.client_resends(),
        "each lost acknowledgement fails its batch: {s:?}"
    );
    running.stop().await;
    h.cleanup(&ns).await;
}

/// Checks that `got` is `sent` in order, where a message may repeat only
/// an event of the last batch (the one in flight at a cut); answers how
/// many duplicates arrived.
fn check_order(sent: &[String], got: &[Received]) -> usize {
    let index: HashMap<&str, usize> = sent
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    // Every event before `next` has arrived.
    let mut next = 0;
    let mut dups = 0;
    for (n, r) in got.iter().enumerate() {
        let Some(&i) = index.get(r.id.as_str()) else {
            panic!("message {n}: event {} was never appended", r.id);
        };
        if i == next {
            next += 1;
        } else if i > next {
            panic!("message {n}: event #{i} arrived before event #{next}: lost or out of order");
        } else {
            // A batch of BATCH events covers at most the last BATCH before `next`.
            assert!(
                i + BATCH >= next,
                "message {n}: event #{i} again after #{}: older than the batch in flight",
                next - 1
            );
            dups += 1;
        }
    }
    assert_eq!(next, sent.len(), "every event arrived");
    dups
}
