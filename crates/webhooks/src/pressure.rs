//! Ingest first: while events are being ingested and the machine's CPU is
//! saturated, the delivery engine slows down so that ingest keeps the CPU.
//!
//! Deliveries are durable (the log and `webhooks.db` hold them), so a
//! delivery made later loses nothing; an ingest request that waits holds up
//! the CDS process that sends it. On a machine that cannot do both at full
//! speed, ingest therefore goes first.
//!
//! A controller samples the machine's CPU (`/proc/stat`) and the log's head
//! every [`SAMPLE`]. It starts yielding when, during one sample, events were
//! ingested, the CPU was busy at least `yield_cpu` of the time, and the
//! engine fell behind ingest (its backlog — events not yet dispatched plus
//! deliveries not yet tried once — grew by more than a quarter of what was
//! ingested): an engine that keeps up is never slowed. While yielding, the
//! dispatcher reads and the workers start attempts at a paced rate: it starts
//! at `yield_rate` per second, grows by that much after each sample in which
//! the CPU had room, and halves (never below `yield_rate`) after each sample
//! in which it had none — so deliveries take what ingest leaves. It stops
//! yielding when a sample saw no ingest, or a CPU busy less than
//! `yield_cpu - HYSTERESIS`. Where `/proc/stat` cannot be read (not Linux),
//! it never yields.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often the CPU and the log's head are sampled.
pub(crate) const SAMPLE: Duration = Duration::from_millis(250);
/// How far below `yield_cpu` the CPU must fall to stop yielding while
/// ingest goes on.
pub(crate) const HYSTERESIS: f64 = 0.15;

/// What the engine does now, as seen by the dispatcher and the workers.
pub(crate) struct Pressure {
    /// `Some(rate)` (per second) while yielding.
    state: watch::Sender<Option<u64>>,
    reads: Pacer,
    sends: Pacer,
    /// The dispatcher's position (a sequence number).
    dispatched: AtomicU64,
    /// Deliveries created, less first attempts started: how many wait for
    /// their first try (up to a constant: rows left from a previous run are
    /// not counted in, only the changes matter).
    untried: AtomicI64,
}

impl Pressure {
    pub(crate) fn new() -> Pressure {
        Pressure {
            state: watch::Sender::new(None),
            reads: Pacer::default(),
            sends: Pacer::default(),
            dispatched: AtomicU64::new(0),
            untried: AtomicI64::new(0),
        }
    }

    /// The dispatcher reached `position`, creating `created` deliveries.
    pub(crate) fn dispatched(&self, position: u64, created: usize) {
        self.dispatched.store(position, Ordering::Relaxed);
        self.untried.fetch_add(created as i64, Ordering::Relaxed);
    }

    /// The engine's backlog, given the log's head (up to a constant).
    fn backlog(&self, head: u64) -> i64 {
        let undispatched = head.saturating_sub(self.dispatched.load(Ordering::Relaxed));
        undispatched as i64 + self.untried.load(Ordering::Relaxed)
    }

    /// The rate while yielding, `None` at full speed.
    pub(crate) fn rate(&self) -> Option<u64> {
        *self.state.borrow()
    }

    fn set(&self, rate: Option<u64>) {
        if let Some(r) = rate {
            if self.rate().is_none() {
                // Slots reserved by waiters let go when the last yield
                // ended must not delay this one.
                self.reads.reset();
                self.sends.reset();
            }
            self.reads.set_rate(r);
            self.sends.set_rate(r);
        }
        self.state.send_if_modified(|s| {
            let changed = *s != rate;
            *s = rate;
            changed
        });
    }

    /// Waits for the turn of one attempt (`first`: the delivery's first):
    /// at once at full speed, paced while yielding (and at once if yielding
    /// ends meanwhile).
    pub(crate) async fn admit_send(&self, first: bool) {
        self.admit(&self.sends, 1).await;
        if first {
            self.untried.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// How many events the dispatcher may read now, after waiting for their
    /// turn: `max` at full speed; while yielding, a quarter of a second's
    /// worth.
    pub(crate) async fn admit_reads(&self, max: usize) -> usize {
        let Some(rate) = self.rate() else {
            return max;
        };
        let n = ((rate / 4) as usize).clamp(1, max);
        self.admit(&self.reads, n as u64).await;
        n
    }

    async fn admit(&self, pacer: &Pacer, n: u64) {
        if self.rate().is_none() {
            return;
        }
        let mut state = self.state.subscribe();
        if state.borrow_and_update().is_none() {
            return;
        }
        let at = pacer.reserve(n);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = state.wait_for(Option::is_none) => {}
        }
    }
}

/// Spaces reservations `1 / rate` apart; a reservation made when the pacer
/// has been idle starts now (no burst is saved up).
#[derive(Default)]
struct Pacer {
    next: Mutex<Option<Instant>>,
    /// Nanoseconds between two reservations.
    interval_ns: AtomicU64,
}

impl Pacer {
    fn set_rate(&self, per_second: u64) {
        self.interval_ns
            .store(1_000_000_000 / per_second.max(1), Ordering::Relaxed);
    }

    fn reset(&self) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The instant `n` units may start.
    fn reserve(&self, n: u64) -> Instant {
        let step = Duration::from_nanos(self.interval_ns.load(Ordering::Relaxed).saturating_mul(n));
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let start = next.map_or(now, |t| t.max(now));
        *next = Some(start + step);
        start
    }
}

/// What one sample saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Busy fraction of the machine's CPU.
    pub(crate) busy: f64,
    /// Events appended to the log.
    pub(crate) ingested: u64,
    /// How much the engine's backlog grew (negative: shrank).
    pub(crate) behind: i64,
}

/// The policy, one sample at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Policy {
    /// Busy fraction of the CPU that counts as saturated.
    pub(crate) cpu: f64,
    /// The slowest pace (per second) while yielding, and the step it grows by.
    pub(crate) floor: u64,
}

impl Policy {
    /// The next state from the current one and what one sample saw.
    pub(crate) fn step(&self, current: Option<u64>, s: Sample) -> Option<u64> {
        if s.ingested == 0 {
            return None;
        }
        let floor = self.floor.max(1);
        let busy = s.busy;
        match current {
            None if busy >= self.cpu && s.behind > (s.ingested / 4) as i64 => Some(floor),
            None => None,
            Some(_) if busy < self.cpu - HYSTERESIS => None,
            Some(rate) if busy >= self.cpu => Some((rate / 2).max(floor)),
            Some(rate) => Some(rate.saturating_add(floor)),
        }
    }
}

/// Cumulative CPU time of the machine, in `/proc/stat` ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    pub(crate) busy: u64,
    pub(crate) total: u64,
}

impl CpuTimes {
    /// Reads the machine's line of `/proc/stat`; `None` where there is none.
    pub(crate) fn read() -> Option<CpuTimes> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        CpuTimes::parse(&text)
    }

    /// Parses the aggregate `cpu` line: user nice system idle iowait irq
    /// softirq steal …; idle and iowait are the time the CPUs had nothing to
    /// run (guest time is already inside user and nice).
    pub(crate) fn parse(stat: &str) -> Option<CpuTimes> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        if fields.len() < 4 {
            return None;
        }
        let total: u64 = fields.iter().sum();
        let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
        Some(CpuTimes {
            busy: total - idle,
            total,
        })
    }

    /// The busy fraction between `earlier` and `self`.
    pub(crate) fn busy_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}

/// Samples until `shutdown`, moving `pressure` by `policy`.
pub(crate) async fn control(
    pressure: &Pressure,
    policy: Policy,
    log: &dyn cds_events_log::EventLog,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Some(mut cpu) = CpuTimes::read() else {
        tracing::info!("no /proc/stat here: webhook deliveries never yield to ingest");
        return;
    };
    let head = log.head();
    let mut seen = head.borrow().0;
    let mut backlog = pressure.backlog(seen);
    let mut tick = tokio::time::interval(SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let Some(now) = CpuTimes::read() else {
            continue;
        };
        let busy = now.busy_since(&cpu);
        cpu = now;
        let h = head.borrow().0;
        let now_backlog = pressure.backlog(h);
        let sample = Sample {
            busy,
            ingested: h.saturating_sub(seen),
            behind: now_backlog - backlog,
        };
        (seen, backlog) = (h, now_backlog);
        let before = pressure.rate();
        let after = policy.step(before, sample);
        if after == before {
            continue;
        }
        pressure.set(after);
        metrics::gauge!("cds_events_webhook_yield_rate").set(after.unwrap_or(0) as f64);
        match (before, after) {
            (None, Some(_)) => tracing::debug!(cpu = busy, "webhook deliveries yield to ingest"),
            (Some(_), None) => tracing::debug!(cpu = busy, "webhook deliveries back at full speed"),
            _ => {}
        }
    }
    pressure.set(None);
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        cpu: 0.9,
        floor: 500,
    };

    /// A sample of 4,000 events ingested.
    fn sample(busy: f64, behind: i64) -> Sample {
        Sample {
            busy,
            ingested: 4000,
            behind,
        }
    }

    #[test]
    fn yields_only_to_ingest_on_a_busy_machine_when_behind() {
        assert_eq!(P.step(None, sample(0.95, 3000)), Some(500));
        let idle = Sample {
            ingested: 0,
            ..sample(0.95, 3000)
        };
        assert_eq!(P.step(None, idle), None);
        assert_eq!(P.step(None, sample(0.85, 3000)), None);
        // Keeping up (the backlog grew by no more than a quarter of what
        // came in): full speed, however busy.
        assert_eq!(P.step(None, sample(1.0, 1000)), None);
        assert_eq!(P.step(None, sample(1.0, -200)), None);
        // Ingest stopped: full speed at once.
        assert_eq!(P.step(Some(4000), idle), None);
    }

    #[test]
    fn while_yielding_the_rate_takes_what_ingest_leaves() {
        // Room: grows by the floor (falling behind or not).
        assert_eq!(P.step(Some(500), sample(0.85, 3000)), Some(1000));
        assert_eq!(P.step(Some(1000), sample(0.8, 0)), Some(1500));
        // None: halves, never below the floor.
        assert_eq!(P.step(Some(1500), sample(0.92, 0)), Some(750));
        assert_eq!(P.step(Some(750), sample(0.99, 0)), Some(500));
        assert_eq!(P.step(Some(500), sample(0.99, 0)), Some(500));
        // Well below the threshold: full speed.
        assert_eq!(P.step(Some(3000), sample(0.7, 3000)), None);
        // A threshold of 0 yields while ingesting and falling behind, and
        // then stays.
        let always = Policy {
            cpu: 0.0,
            floor: 20,
        };
        assert_eq!(always.step(None, sample(0.0, 3000)), Some(20));
        assert_eq!(always.step(Some(20), sample(0.0, 0)), Some(20));
    }

    #[tokio::test]
    async fn the_backlog_counts_undispatched_events_and_untried_deliveries() {
        let p = Pressure::new();
        p.dispatched(100, 0);
        assert_eq!(p.backlog(150), 50);
        p.dispatched(150, 30);
        assert_eq!(p.backlog(150), 30);
        p.admit_send(true).await;
        p.admit_send(false).await;
        assert_eq!(p.backlog(160), 39);
    }

    #[test]
    fn proc_stat_busy_fraction() {
        let a = CpuTimes::parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").expect("parse");
        assert_eq!(
            a,
            CpuTimes {
                busy: 150,
                total: 1000
            }
        );
        let b = CpuTimes::parse("cpu  250 0 100 850 50 0 0 0 0 0\n").expect("parse");
        assert!((b.busy_since(&a) - 0.8).abs() < 1e-9);
        assert_eq!(a.busy_since(&a), 0.0);
        assert_eq!(CpuTimes::parse("intr 1 2 3\n"), None);
        assert_eq!(CpuTimes::parse("cpu  x y\n"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn paced_attempts_are_spaced_by_the_rate_and_released_when_yielding_ends() {
        let p = std::sync::Arc::new(Pressure::new());
        // Full speed: no wait at all.
        let t0 = Instant::now();
        p.admit_send(false).await;
        assert_eq!(t0.elapsed(), Duration::ZERO);
        p.set(Some(10));
        for i in 0..5u64 {
            p.admit_send(false).await;
            assert_eq!(t0.elapsed(), Duration::from_millis(100 * i), "attempt {i}");
        }
        assert_eq!(p.admit_reads(512).await, 2);
        // A waiter far in the queue is let go when yielding ends.
        let waiter = {
            let p = std::sync::Arc::clone(&p);
            tokio::spawn(async move {
                for _ in 0..100 {
                    p.admit_send(false).await;
                }
                Instant::now()
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.set(None);
        let done = waiter.await.expect("join");
        assert!(done - t0 < Duration::from_millis(1600), "{:?}", done - t0);
        assert_eq!(p.admit_reads(512).await, 512);
        // Yielding again starts a fresh schedule, whatever was reserved.
        p.set(Some(10));
        let t1 = Instant::now();
        p.admit_send(false).await;
        assert_eq!(t1.elapsed(), Duration::ZERO);
    }
}
