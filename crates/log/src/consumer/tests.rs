//! The consumer loop, on an in-memory log and paused time: every wait is a
//! condition with a deadline, and time only moves when every task waits.

use super::*;
use crate::conformance::event;
use crate::{Appended, LogStats, NewEvent, Page, Query, Retention};
use async_trait::async_trait;
use cds_events_model::EventType;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Far beyond anything a passing test waits for; only bounds a failure.
const DEADLINE: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Just enough of a log for a consumer: append, read forward, the head,
/// and the `consumers` table. It counts reads and can fail the next ones.
#[derive(Debug)]
struct MemLog {
    events: Mutex<Vec<StoredEvent>>,
    head: watch::Sender<Seq>,
    positions: Mutex<HashMap<String, Seq>>,
    reads: AtomicUsize,
    failing_reads: AtomicUsize,
}

impl MemLog {
    fn new() -> Arc<MemLog> {
        Arc::new(MemLog {
            events: Mutex::new(Vec::new()),
            head: watch::Sender::new(Seq(0)),
            positions: Mutex::new(HashMap::new()),
            reads: AtomicUsize::new(0),
            failing_reads: AtomicUsize::new(0),
        })
    }

    fn push(&self, n: usize) {
        let mut events = lock(&self.events);
        for _ in 0..n {
            let seq = Seq(events.len() as u64 + 1);
            let json = event(EventType::UserCreated, "", seq.0 as i64).to_json();
            events.push(StoredEvent::new(seq, Arc::from(json)));
        }
        self.head.send_replace(Seq(events.len() as u64));
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

fn unsupported() -> LogError {
    LogError::Backend("not in the test double".into())
}

#[async_trait]
impl EventLog for MemLog {
    async fn append(&self, _: Vec<NewEvent>) -> Result<Vec<Appended>, LogError> {
        Err(unsupported())
    }
    async fn get(&self, _: &str) -> Result<Option<StoredEvent>, LogError> {
        Err(unsupported())
    }
    async fn query(&self, _: Query) -> Result<Page, LogError> {
        Err(unsupported())
    }
    async fn read_after(&self, after: Seq, limit: usize) -> Result<Vec<StoredEvent>, LogError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let failing = self.failing_reads.load(Ordering::SeqCst);
        if failing > 0 {
            self.failing_reads.store(failing - 1, Ordering::SeqCst);
            return Err(LogError::Busy("a failing read".into()));
        }
        Ok(lock(&self.events)
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect())
    }
    async fn read_seqs(&self, _: Vec<Seq>) -> Result<Vec<StoredEvent>, LogError> {
        Err(unsupported())
    }
    fn head(&self) -> watch::Receiver<Seq> {
        self.head.subscribe()
    }
    async fn consumer_position(&self, consumer: &str) -> Result<Option<Seq>, LogError> {
        Ok(lock(&self.positions).get(consumer).copied())
    }
    async fn set_consumer_position(&self, consumer: &str, seq: Seq) -> Result<(), LogError> {
        lock(&self.positions).insert(consumer.to_owned(), seq);
        Ok(())
    }
    async fn consumer_paused(&self, _: &str) -> Result<bool, LogError> {
        Err(unsupported())
    }
    async fn set_consumer_paused(&self, _: &str, _: bool) -> Result<(), LogError> {
        Err(unsupported())
    }
    async fn purge(&self, _: Retention, _: usize) -> Result<u64, LogError> {
        Err(unsupported())
    }
    async fn stats(&self) -> Result<LogStats, LogError> {
        Err(unsupported())
    }
    async fn close(&self) -> Result<(), LogError> {
        Ok(())
    }
}

/// A position store that remembers every save.
#[derive(Debug, Default)]
struct Saves(Mutex<Vec<Seq>>);

impl Saves {
    fn all(&self) -> Vec<u64> {
        lock(&self.0).iter().map(|s| s.0).collect()
    }
}

#[async_trait]
impl PositionStore for Saves {
    async fn load(&self) -> Result<Option<Seq>, ConsumerError> {
        Ok(lock(&self.0).last().copied())
    }
    async fn save(&self, position: Seq) -> Result<(), ConsumerError> {
        lock(&self.0).push(position);
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a failing batch")]
struct Failing;

/// What a [`Recorder`] did, shared with the test.
#[derive(Debug)]
struct Seen {
    batches: Mutex<Vec<Vec<u64>>>,
    /// `None` until the loop started.
    reached: watch::Sender<Option<Seq>>,
    listening: AtomicBool,
    failing_handles: AtomicUsize,
    /// Events appended to this log by each handled batch, as many times as
    /// said: ingest that keeps the head moving while the consumer works.
    ingest: Mutex<Option<(Arc<MemLog>, usize)>>,
    /// An input sent to the loop by the batch that ends at this sequence
    /// number, while the loop is busy: (at, the inputs, the input).
    ask: Mutex<Option<Ask>>,
}

type Ask = (
    u64,
    mpsc::Sender<oneshot::Sender<Seq>>,
    oneshot::Sender<Seq>,
);

impl Seen {
    fn new() -> Arc<Seen> {
        Arc::new(Seen {
            batches: Mutex::new(Vec::new()),
            reached: watch::Sender::new(None),
            listening: AtomicBool::new(true),
            failing_handles: AtomicUsize::new(0),
            ingest: Mutex::new(None),
            ask: Mutex::new(None),
        })
    }

    fn batches(&self) -> Vec<Vec<u64>> {
        lock(&self.batches).clone()
    }

    /// Waits until the loop reached `seq`.
    async fn reach(&self, seq: u64) {
        let mut rx = self.reached.subscribe();
        tokio::time::timeout(DEADLINE, rx.wait_for(|p| p.is_some_and(|p| p.0 >= seq)))
            .await
            .unwrap_or_else(|_| panic!("position {seq} not reached"))
            .expect("the recorder is alive");
    }
}

/// A consumer that records the batches it handles.
struct Recorder {
    checkpoint: Checkpoint,
    seen: Arc<Seen>,
    inputs: Option<mpsc::Receiver<oneshot::Sender<Seq>>>,
}

/// A recorder keeping its position as `checkpoint` says, and what it does.
fn recorder(checkpoint: Checkpoint) -> (Recorder, Arc<Seen>) {
    let seen = Seen::new();
    let consumer = Recorder {
        checkpoint,
        seen: Arc::clone(&seen),
        inputs: None,
    };
    (consumer, seen)
}

impl Consumer for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn checkpoint(&self) -> Checkpoint {
        self.checkpoint.clone()
    }
    fn is_listening(&self) -> bool {
        self.seen.listening.load(Ordering::SeqCst)
    }
    async fn handle(&mut self, batch: &[StoredEvent]) -> Result<(), ConsumerError> {
        let failing = self.seen.failing_handles.load(Ordering::SeqCst);
        if failing > 0 {
            self.seen
                .failing_handles
                .store(failing - 1, Ordering::SeqCst);
            return Err(ConsumerError::Handle(Box::new(Failing)));
        }
        lock(&self.seen.batches).push(batch.iter().map(|e| e.seq.0).collect());
        if let Some((log, left)) = lock(&self.seen.ingest).as_mut().filter(|(_, n)| *n > 0) {
            *left -= 1;
            log.push(1);
        }
        let last = batch.last().map_or(0, |e| e.seq.0);
        let mut ask = lock(&self.seen.ask);
        if ask.as_ref().is_some_and(|(at, _, _)| *at == last)
            && let Some((_, inputs, reply)) = ask.take()
        {
            inputs.try_send(reply).expect("room for the input");
        }
        Ok(())
    }
    async fn input(&mut self, position: Seq) -> std::ops::ControlFlow<()> {
        let Some(rx) = self.inputs.as_mut() else {
            return std::future::pending().await;
        };
        match rx.recv().await {
            Some(reply) => {
                let _ = reply.send(position);
                std::ops::ControlFlow::Continue(())
            }
            None => std::ops::ControlFlow::Break(()),
        }
    }
    fn reached(&mut self, position: Seq) {
        self.seen.reached.send_replace(Some(position));
    }
}

/// A recorder following the log on its own task.
struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Recorder>,
}

impl Running {
    async fn stop(self) -> Recorder {
        self.stop.cancel();
        let consumer = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the loop stops")
            .expect("the loop does not panic");
        consumer.seen.reached.send_replace(None);
        consumer
    }
}

/// Starts `follow` (default options, `batch` events per read) and waits
/// until it has taken its start position.
async fn start(log: &Arc<MemLog>, consumer: Recorder, batch: usize) -> Running {
    let seen = Arc::clone(&consumer.seen);
    let stop = CancellationToken::new();
    let log: Arc<dyn EventLog> = Arc::clone(log) as Arc<dyn EventLog>;
    let opts = FollowOptions {
        batch,
        ..FollowOptions::default()
    };
    let task = tokio::spawn(follow(log, consumer, opts, stop.clone()));
    seen.reach(0).await;
    Running { stop, task }
}

/// Starts `consumer`, appends `n` events, waits until it handled them and
/// stops it.
async fn follow_through(log: &Arc<MemLog>, consumer: Recorder, batch: usize, n: usize) -> Recorder {
    let seen = Arc::clone(&consumer.seen);
    let run = start(log, consumer, batch).await;
    let head = log.head.borrow().0;
    log.push(n);
    seen.reach(head + n as u64).await;
    run.stop().await
}

#[tokio::test(start_paused = true)]
async fn a_first_start_begins_at_the_head_and_stores_it() {
    let log = MemLog::new();
    log.push(3);
    let saves = Arc::new(Saves::default());
    let (consumer, seen) = recorder(Checkpoint::AfterBatch(saves.clone()));
    let run = start(&log, consumer, 10).await;
    seen.reach(3).await;
    assert_eq!(saves.all(), [3], "the head, stored at once");
    log.push(2);
    seen.reach(5).await;
    run.stop().await;
    assert_eq!(seen.batches(), [vec![4, 5]], "history is not replayed");
}

#[tokio::test(start_paused = true)]
async fn after_batch_the_position_is_stored_after_each_batch() {
    let log = MemLog::new();
    let saves = Arc::new(Saves::default());
    let (consumer, seen) = recorder(Checkpoint::AfterBatch(saves.clone()));
    follow_through(&log, consumer, 2, 5).await;
    assert_eq!(seen.batches(), [vec![1, 2], vec![3, 4], vec![5]]);
    assert_eq!(saves.all(), [0, 2, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn a_log_table_position_is_the_consumers_row() {
    let log = MemLog::new();
    let positions = Arc::new(LogPositions::new(log.clone(), "sink"));
    let (consumer, _) = recorder(Checkpoint::AfterBatch(positions.clone()));
    follow_through(&log, consumer, 10, 3).await;
    assert_eq!(
        log.consumer_position("sink").await.expect("position"),
        Some(Seq(3))
    );
    assert_eq!(positions.needs_from().await.expect("hold"), Some(Seq(4)));
}

#[tokio::test(start_paused = true)]
async fn with_batch_the_loop_leaves_a_handled_batch_position_to_the_consumer() {
    let log = MemLog::new();
    let saves = Arc::new(Saves::default());
    let (consumer, seen) = recorder(Checkpoint::WithBatch(saves.clone()));
    follow_through(&log, consumer, 2, 3).await;
    assert_eq!(seen.batches(), [vec![1, 2], vec![3]]);
    assert_eq!(saves.all(), [0], "only the first start's head");
}

#[tokio::test(start_paused = true)]
async fn resumes_from_its_stored_position_after_a_restart() {
    let log = MemLog::new();
    let positions = Arc::new(LogPositions::new(log.clone(), "sink"));
    let (consumer, seen) = recorder(Checkpoint::AfterBatch(positions));
    let consumer = follow_through(&log, consumer, 10, 2).await;
    // Appended while it was stopped: handled after the restart.
    log.push(3);
    let run = start(&log, consumer, 10).await;
    seen.reach(5).await;
    run.stop().await;
    assert_eq!(seen.batches(), [vec![1, 2], vec![3, 4, 5]]);
}

#[tokio::test(start_paused = true)]
async fn a_position_beyond_the_head_starts_at_the_head() {
    let log = MemLog::new();
    log.push(2);
    let saves = Arc::new(Saves::default());
    saves.save(Seq(9)).await.expect("save");
    let (consumer, seen) = recorder(Checkpoint::WithBatch(saves.clone()));
    let run = start(&log, consumer, 10).await;
    log.push(1);
    seen.reach(3).await;
    run.stop().await;
    assert_eq!(seen.batches(), [vec![3]]);
    assert_eq!(saves.all(), [9, 2]);
}

#[tokio::test(start_paused = true)]
async fn follows_the_head_without_reading_while_nobody_listens() {
    let log = MemLog::new();
    let saves = Arc::new(Saves::default());
    let (consumer, seen) = recorder(Checkpoint::WithBatch(saves.clone()));
    seen.listening.store(false, Ordering::SeqCst);
    let run = start(&log, consumer, 10).await;
    let started = Instant::now();
    log.push(4);
    seen.reach(4).await;
    log.push(2);
    seen.reach(6).await;
    assert_eq!(log.reads(), 0, "nothing read while nobody listens");
    // Stored once the idle period is over, not at every head change.
    let idle_persist = FollowOptions::default().idle_persist;
    let mut stored = Vec::new();
    for _ in 0..100 {
        stored = saves.all();
        if stored.last() == Some(&6) {
            break;
        }
        tokio::time::sleep(idle_persist / 10).await;
    }
    assert_eq!(stored, [0, 6]);
    assert!(started.elapsed() >= idle_persist);
    // Someone listens: only what comes next is read.
    seen.listening.store(true, Ordering::SeqCst);
    log.push(1);
    seen.reach(7).await;
    run.stop().await;
    assert_eq!(seen.batches(), [vec![7]]);
}

/// Regression (f7d6948): with nobody listening, a stop that won the race
/// with the head change of the last append stored the old position, and
/// those events were handled for a listener created after the restart.
#[tokio::test(start_paused = true)]
async fn a_stop_with_nobody_listening_stores_the_head_it_has_seen() {
    let log = MemLog::new();
    let saves = Arc::new(Saves::default());
    let (consumer, seen) = recorder(Checkpoint::WithBatch(saves.clone()));
    seen.listening.store(false, Ordering::SeqCst);
    let run = start(&log, consumer, 10).await;
    // Both ready at once: the stop goes first.
    log.push(3);
    run.stop().await;
    assert_eq!(saves.all(), [0, 3]);
    assert_eq!(log.reads(), 0);
}

#[tokio::test(start_paused = true)]
async fn stops_cleanly_and_reads_nothing_after_the_stop() {
    let log = MemLog::new();
    let positions = Arc::new(LogPositions::new(log.clone(), "sink"));
    let (consumer, seen) = recorder(Checkpoint::AfterBatch(positions));
    let run = start(&log, consumer, 10).await;
    log.push(2);
    seen.reach(2).await;
    let reads = log.reads();
    run.stop().await;
    log.push(2);
    tokio::task::yield_now().await;
    assert_eq!(log.reads(), reads);
    assert_eq!(
        log.consumer_position("sink").await.expect("position"),
        Some(Seq(2))
    );
}

#[tokio::test(start_paused = true)]
async fn retries_a_failed_read_and_a_failed_batch_after_a_pause() {
    let log = MemLog::new();
    let (consumer, seen) = recorder(Checkpoint::Volatile);
    let run = start(&log, consumer, 10).await;
    log.failing_reads.store(1, Ordering::SeqCst);
    seen.failing_handles.store(1, Ordering::SeqCst);
    let started = Instant::now();
    log.push(3);
    seen.reach(3).await;
    let retry = FollowOptions::default().retry;
    assert!(started.elapsed() >= retry * 2, "{:?}", started.elapsed());
    assert_eq!(log.reads(), 3, "a failed read, a failed batch, then one");
    run.stop().await;
    assert_eq!(seen.batches(), [vec![1, 2, 3]], "handled once");
}

#[tokio::test(start_paused = true)]
async fn inputs_are_served_while_waiting_with_the_position_reached() {
    let log = MemLog::new();
    let (tx, rx) = mpsc::channel(1);
    let (mut consumer, seen) = recorder(Checkpoint::Volatile);
    consumer.inputs = Some(rx);
    let run = start(&log, consumer, 10).await;
    let ask = || async {
        let (reply, answer) = oneshot::channel();
        tx.send(reply).await.expect("the loop is running");
        answer.await.expect("answered")
    };
    assert_eq!(ask().await, Seq(0));
    log.push(4);
    seen.reach(4).await;
    assert_eq!(ask().await, Seq(4));
    // Its inputs closed: the loop stops by itself.
    drop(tx);
    tokio::time::timeout(DEADLINE, run.task)
        .await
        .expect("the loop stops")
        .expect("no panic");
}

#[tokio::test(start_paused = true)]
async fn inputs_are_served_while_ingest_keeps_the_head_moving() {
    const INGESTED: usize = 1000;
    let log = MemLog::new();
    let (tx, rx) = mpsc::channel(1);
    let (mut consumer, seen) = recorder(Checkpoint::Volatile);
    consumer.inputs = Some(rx);
    let run = start(&log, consumer, 1).await;
    // Every batch handled appends one more event, a thousand times over,
    // and the tenth one asks the loop something meanwhile.
    let (reply, answer) = oneshot::channel();
    *lock(&seen.ask) = Some((10, tx.clone(), reply));
    *lock(&seen.ingest) = Some((Arc::clone(&log), INGESTED));
    log.push(1);
    let served_at = tokio::time::timeout(DEADLINE, answer)
        .await
        .expect("answered")
        .expect("answered");
    assert!(
        served_at.0 < INGESTED as u64,
        "the input waited until ingest stopped (served at {served_at})"
    );
    seen.reach(INGESTED as u64 + 1).await;
    drop(tx);
    tokio::time::timeout(DEADLINE, run.task)
        .await
        .expect("the loop stops")
        .expect("no panic");
}

#[derive(Debug)]
struct Holds(&'static str, Result<Option<u64>, ()>);

#[async_trait]
impl RetentionHold for Holds {
    fn name(&self) -> &str {
        self.0
    }
    async fn needs_from(&self) -> Result<Option<Seq>, ConsumerError> {
        self.1
            .map(|s| s.map(Seq))
            .map_err(|()| ConsumerError::Hold(Box::new(Failing)))
    }
}

#[tokio::test]
async fn the_low_water_mark_is_the_lowest_hold_and_an_error_is_the_answer() {
    let consumers = DurableConsumers::default();
    assert_eq!(consumers.low_water_mark().await.expect("mark"), None);
    consumers.register(Arc::new(Holds("idle", Ok(None))));
    consumers.register(Arc::new(Holds("ahead", Ok(Some(9)))));
    consumers.register(Arc::new(Holds("behind", Ok(Some(4)))));
    assert_eq!(
        consumers.low_water_mark().await.expect("mark"),
        Some(Seq(4))
    );
    consumers.register(Arc::new(Holds("broken", Err(()))));
    let e = consumers.low_water_mark().await.expect_err("unknown");
    assert_eq!(e.consumer, "broken");
}
