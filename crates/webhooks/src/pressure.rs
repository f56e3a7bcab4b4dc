//! Ingest first: while events are being ingested and the machine's CPU is
//! saturated, the delivery engine slows down so that ingest keeps the CPU.
//!
//! Deliveries are durable (the log and `webhooks.db` hold them), so a
//! delivery made later loses nothing; an ingest request that waits holds up
//! the CDS process that sends it. On a machine that cannot do both at full
//! speed, ingest therefore goes first.
//!
//! A controller samples the CPU, the log's head and the attempts started
//! every [`SAMPLE`]. The CPU's busy fraction is the machine's (`/proc/stat`)
//! or, in a container limited by a cgroup v2 `cpu.max`, the quota's if that
//! is busier: the machine may be idle while the container is throttled. Whenever events are being ingested
//! (appended within the last [`QUIET`]) and a sample finds the CPU busy at
//! least `yield_cpu` of the time, the dispatcher's reads and the workers'
//! attempts are paced at `yield_rate` per second — unless ingest is only a
//! trickle beside the deliveries (fewer events per second than half the
//! attempts): its share of the CPU is then small, and a backlog being
//! drained would be slowed for nothing. After a sample with a
//! little room (less than [`BAND`] below the threshold) the pace is kept: on
//! two cores ingest alone may leave that much idle, and deliveries growing
//! into it slowed ingest by a quarter. After a sample with more room, it
//! doubles — so deliveries take what ingest leaves. Full speed again when
//! ingest stops, or when the CPU has room and the pace no longer holds
//! deliveries back (fewer than half the attempts it allowed were made).
//! Where neither can be read (not Linux), it never yields.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// How often the CPU and the log's head are sampled.
pub(crate) const SAMPLE: Duration = Duration::from_millis(250);
/// Below `yield_cpu` by less than this, the pace is kept; further below,
/// it doubles.
pub(crate) const BAND: f64 = 0.15;

/// Ingest counts as stopped after this long without an append.
pub(crate) const QUIET: Duration = Duration::from_secs(1);

/// How often a paced rate hands out its permits.
pub(crate) const REFILL: Duration = Duration::from_millis(10);

/// What the engine does now, as seen by the dispatcher and the workers.
pub(crate) struct Pressure {
    /// `Some(rate)` (per second) while yielding.
    state: watch::Sender<Option<u64>>,
    reads: Pacer,
    sends: Pacer,
    /// Attempts started, ever.
    attempts: AtomicU64,
}

impl Pressure {
    pub(crate) fn new() -> Pressure {
        Pressure {
            state: watch::Sender::new(None),
            reads: Pacer::default(),
            sends: Pacer::default(),
            attempts: AtomicU64::new(0),
        }
    }

    /// The rate while yielding, `None` at full speed.
    pub(crate) fn rate(&self) -> Option<u64> {
        *self.state.borrow()
    }

    fn set(&self, rate: Option<u64>) {
        if rate.is_some() && self.rate().is_none() {
            // A new yield starts from nothing saved up.
            self.reads.clear();
            self.sends.clear();
        }
        self.state.send_if_modified(|s| {
            let changed = *s != rate;
            *s = rate;
            changed
        });
    }

    /// Hands out the permits of `elapsed` at the current rate (called every
    /// [`REFILL`] while yielding). A rate change applies from the next
    /// refill: waiters hold no reservation that would keep the old pace.
    pub(crate) fn refill(&self, elapsed: Duration) {
        if let Some(rate) = self.rate() {
            self.reads.refill(rate, elapsed);
            self.sends.refill(rate, elapsed);
        }
    }

    /// Waits for the turn of one attempt: at once at full speed, paced
    /// while yielding (and at once if yielding ends meanwhile).
    pub(crate) async fn admit_send(&self) {
        self.admit(&self.sends, 1).await;
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// How many events the dispatcher may read now, after waiting for their
    /// turn: `max` at full speed; while yielding, a twentieth of a second's
    /// worth.
    pub(crate) async fn admit_reads(&self, max: usize) -> usize {
        let Some(rate) = self.rate() else {
            return max;
        };
        let n = ((rate / 20) as usize).clamp(1, max);
        self.admit(&self.reads, n as u32).await;
        n
    }

    async fn admit(&self, pacer: &Pacer, n: u32) {
        if self.rate().is_none() {
            return;
        }
        // `wait_for` looks at the current state first: a yield that ended
        // since the check above lets this go at once.
        let mut state = self.state.subscribe();
        tokio::select! {
            permit = pacer.permits.acquire_many(n) => {
                if let Ok(p) = permit {
                    p.forget();
                }
            }
            _ = state.wait_for(Option::is_none) => {}
        }
    }
}

/// Permits handed out at a rate; waiters take them in turn (the semaphore
/// is fair). At most a twentieth of a second's worth is saved up while no
/// one waits.
struct Pacer {
    permits: Semaphore,
    /// The fraction of a permit not handed out yet.
    carry: Mutex<f64>,
}

impl Default for Pacer {
    fn default() -> Pacer {
        Pacer {
            permits: Semaphore::new(0),
            carry: Mutex::new(0.0),
        }
    }
}

impl Pacer {
    fn refill(&self, rate: u64, elapsed: Duration) {
        let mut carry = self.carry.lock().unwrap_or_else(|e| e.into_inner());
        let due = rate as f64 * elapsed.as_secs_f64() + *carry;
        let whole = due.floor();
        *carry = due - whole;
        let cap = (rate / 20).max(1) as usize;
        let available = self.permits.available_permits();
        if available > cap {
            // Saved up at a higher rate.
            self.permits.forget_permits(available - cap);
        } else {
            self.permits
                .add_permits((whole as usize).min(cap - available));
        }
    }

    fn clear(&self) {
        self.permits
            .forget_permits(self.permits.available_permits());
        *self.carry.lock().unwrap_or_else(|e| e.into_inner()) = 0.0;
    }
}

/// What one sample saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample {
    /// Busy fraction of the machine's CPU.
    pub(crate) busy: f64,
    /// Events appended to the log per second: over this sample or over the
    /// last [`QUIET`], whichever is more (the sample sees a burst start at
    /// once; ingest pauses for a checkpoint now and then, and yielding must
    /// not end on each pause); not 0 if any was appended.
    pub(crate) ingested: u64,
    /// Attempts started, per second.
    pub(crate) attempts: u64,
}

/// The policy, one sample at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Policy {
    /// Busy fraction of the CPU that counts as saturated.
    pub(crate) cpu: f64,
    /// The slowest pace (per second) while yielding.
    pub(crate) floor: u64,
}

impl Policy {
    /// The next state from the current one and what one sample saw.
    pub(crate) fn step(&self, current: Option<u64>, s: Sample) -> Option<u64> {
        if s.ingested == 0 {
            return None;
        }
        let floor = self.floor.max(1);
        let trickle = s.ingested.saturating_mul(2) < s.attempts;
        match current {
            None if trickle => None,
            // No room: the floor at once (halving took a second to get
            // there, a second of ingest at half speed after each of its
            // pauses).
            _ if s.busy >= self.cpu => Some(floor),
            None => None,
            // Room, and the pace holds nothing back: full speed.
            Some(rate) if s.attempts < rate / 2 => None,
            Some(rate) if s.busy >= self.cpu - BAND => Some(rate),
            Some(rate) => Some(rate.saturating_mul(2)),
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

/// A CPU quota this process runs under (cgroup v2 `cpu.max`, as a container
/// limit sets it): the machine may be idle while the quota is spent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Quota {
    /// The `cpu.stat` of the cgroup that sets the limit.
    stat: PathBuf,
    /// The limit, in CPUs.
    cpus: f64,
}

impl Quota {
    /// This process's quota, if any.
    fn find() -> Option<Quota> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        Quota::at(Path::new("/sys/fs/cgroup"), &own)
    }

    /// The smallest quota set on the process's cgroup (from the text of
    /// `/proc/self/cgroup`) or one of its ancestors, under `root`.
    pub(crate) fn at(root: &Path, own: &str) -> Option<Quota> {
        let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
        let mut dir = root.join(rel.trim().trim_start_matches('/'));
        let mut best: Option<Quota> = None;
        while dir.starts_with(root) {
            let cpus = std::fs::read_to_string(dir.join("cpu.max"))
                .ok()
                .and_then(|t| parse_cpu_max(&t));
            if let Some(cpus) = cpus
                && best.as_ref().is_none_or(|b| cpus < b.cpus)
            {
                best = Some(Quota {
                    stat: dir.join("cpu.stat"),
                    cpus,
                });
            }
            if !dir.pop() {
                break;
            }
        }
        best
    }

    /// CPU time used by the cgroup so far.
    fn usage(&self) -> Option<Duration> {
        let text = std::fs::read_to_string(&self.stat).ok()?;
        parse_usage(&text)
    }
}

/// `cpu.max`: `"max 100000"` (no limit) or `"QUOTA PERIOD"` (µs), in CPUs.
pub(crate) fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// `usage_usec` of a `cpu.stat`.
pub(crate) fn parse_usage(text: &str) -> Option<Duration> {
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_micros)
}

/// How busy the CPU this process may use is: the machine's (`/proc/stat`)
/// or its quota's, whichever is busier.
struct CpuMeter {
    machine: Option<CpuTimes>,
    quota: Option<(Quota, Duration, Instant)>,
}

impl CpuMeter {
    /// `None` where neither can be read (not Linux).
    fn new() -> Option<CpuMeter> {
        let machine = CpuTimes::read();
        let quota = Quota::find().and_then(|q| {
            let used = q.usage()?;
            Some((q, used, Instant::now()))
        });
        (machine.is_some() || quota.is_some()).then_some(CpuMeter { machine, quota })
    }

    /// The busy fraction since the last call.
    fn busy(&mut self) -> f64 {
        let mut busy: f64 = 0.0;
        if let Some(earlier) = self.machine
            && let Some(now) = CpuTimes::read()
        {
            busy = now.busy_since(&earlier);
            self.machine = Some(now);
        }
        if let Some((q, used, at)) = &mut self.quota
            && let Some(now) = q.usage()
        {
            let wall = at.elapsed().as_secs_f64() * q.cpus;
            if wall > 0.0 {
                busy = busy.max(now.saturating_sub(*used).as_secs_f64() / wall);
            }
            (*used, *at) = (now, Instant::now());
        }
        busy.min(1.0)
    }
}

/// `n` over `d`, per second; at least 1 if `n` is not 0.
fn per_second(n: u64, d: Duration) -> u64 {
    if n == 0 {
        return 0;
    }
    ((n as f64 / d.as_secs_f64().max(1e-3)) as u64).max(1)
}

/// Samples until `shutdown`, moving `pressure` by `policy`.
pub(crate) async fn control(
    pressure: &Pressure,
    policy: Policy,
    log: &dyn cds_events_log::EventLog,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Some(mut cpu) = CpuMeter::new() else {
        tracing::info!(
            "neither /proc/stat nor a cgroup v2 CPU quota here: webhook deliveries never yield to ingest"
        );
        return;
    };
    if let Some((q, ..)) = &cpu.quota {
        tracing::info!(
            cpus = q.cpus,
            "webhook pacing counts against the CPU quota too"
        );
    }
    let head = log.head();
    // The head at each of the last samples, oldest first.
    let window = (QUIET.as_millis() / SAMPLE.as_millis()).max(1) as usize;
    let mut heads = std::collections::VecDeque::from(vec![head.borrow().0; window]);
    let mut attempts = pressure.attempts.load(Ordering::Relaxed);
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refill = tokio::time::interval(REFILL);
    refill.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refilled = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = refill.tick(), if pressure.rate().is_some() => {
                pressure.refill(refilled.elapsed());
                refilled = Instant::now();
                continue;
            }
            _ = tick.tick() => {}
        }
        let busy = cpu.busy();
        let h = head.borrow().0;
        let a = pressure.attempts.load(Ordering::Relaxed);
        let elapsed = last.elapsed();
        let previous = heads.back().copied().unwrap_or(h);
        let oldest = heads.pop_front().unwrap_or(h);
        last = Instant::now();
        let sample = Sample {
            busy,
            ingested: per_second(h.saturating_sub(previous), elapsed)
                .max(per_second(h.saturating_sub(oldest), QUIET)),
            attempts: per_second(a.saturating_sub(attempts), elapsed),
        };
        heads.push_back(h);
        attempts = a;
        let before = pressure.rate();
        tracing::trace!(
            busy = sample.busy,
            ingested = sample.ingested,
            attempts = sample.attempts,
            rate = ?before,
            "webhook pacing sample"
        );
        let after = policy.step(before, sample);
        if after == before {
            continue;
        }
        if before.is_none() {
            refilled = Instant::now();
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

    /// A sample of 4,000 events ingested per second, with `attempts` per
    /// second.
    fn sample(busy: f64, attempts: u64) -> Sample {
        Sample {
            busy,
            ingested: 4000,
            attempts,
        }
    }

    #[test]
    fn yields_only_to_ingest_on_a_busy_machine() {
        // The floor at once.
        assert_eq!(P.step(None, sample(0.95, 5000)), Some(500));
        let idle = Sample {
            ingested: 0,
            ..sample(0.95, 20_000)
        };
        assert_eq!(P.step(None, idle), None);
        assert_eq!(P.step(None, sample(0.85, 5000)), None);
        // A trickle of ingest beside a backlog being drained: full speed.
        let trickle = Sample {
            ingested: 100,
            ..sample(1.0, 20_000)
        };
        assert_eq!(P.step(None, trickle), None);
        // Ingest stopped: full speed at once.
        assert_eq!(P.step(Some(4000), idle), None);
    }

    #[test]
    fn while_yielding_the_rate_takes_what_ingest_leaves() {
        // No room: back to the floor.
        assert_eq!(P.step(Some(10_000), sample(0.97, 10_000)), Some(500));
        assert_eq!(P.step(Some(500), sample(0.99, 500)), Some(500));
        // A little room: kept; more: doubles.
        assert_eq!(P.step(Some(500), sample(0.85, 500)), Some(500));
        assert_eq!(P.step(Some(500), sample(0.76, 500)), Some(500));
        assert_eq!(P.step(Some(1000), sample(0.6, 1000)), Some(2000));
        // Room, and the pace no longer binds: full speed.
        assert_eq!(P.step(Some(8000), sample(0.6, 3000)), None);
        assert_eq!(P.step(Some(8000), sample(0.8, 3000)), None);
        // A threshold of 0 always yields while ingesting.
        let always = Policy {
            cpu: 0.0,
            floor: 20,
        };
        assert_eq!(always.step(None, sample(0.0, 0)), Some(20));
        assert_eq!(always.step(Some(20), sample(0.0, 20)), Some(20));
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

    #[test]
    fn a_container_quota_is_found_on_the_cgroup_or_an_ancestor() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("50000 100000"), Some(0.5));
        assert_eq!(parse_cpu_max("x"), None);
        assert_eq!(
            parse_usage("usage_usec 1500000\nuser_usec 1000000\n"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_usage("user_usec 1\n"), None);

        let root = tempfile::tempdir().expect("tempdir");
        let pod = root.path().join("kubepods/pod1");
        let own = pod.join("ctr");
        std::fs::create_dir_all(&own).expect("mkdir");
        std::fs::write(own.join("cpu.max"), "max 100000\n").expect("write");
        let proc_self = "0::/kubepods/pod1/ctr\n";
        // No limit anywhere.
        assert_eq!(Quota::at(root.path(), proc_self), None);
        // The pod's limit holds for the container.
        std::fs::write(pod.join("cpu.max"), "150000 100000\n").expect("write");
        assert_eq!(
            Quota::at(root.path(), proc_self),
            Some(Quota {
                stat: pod.join("cpu.stat"),
                cpus: 1.5
            })
        );
        // The smallest wins.
        std::fs::write(own.join("cpu.max"), "50000 100000\n").expect("write");
        assert_eq!(Quota::at(root.path(), proc_self).map(|q| q.cpus), Some(0.5));
        // cgroup v1 only: nothing to read.
        assert_eq!(Quota::at(root.path(), "4:cpu,cpuacct:/docker/x\n"), None);
    }

    #[test]
    fn a_spent_quota_counts_as_a_busy_cpu() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stat = dir.path().join("cpu.stat");
        std::fs::write(&stat, "usage_usec 1000\n").expect("write");
        let q = Quota { stat, cpus: 0.5 };
        // The meter's last sample is set 20 ms back instead of waiting 20 ms.
        let ago = || {
            Instant::now()
                .checked_sub(Duration::from_millis(20))
                .expect("an uptime over 20 ms")
        };
        let mut meter = CpuMeter {
            machine: None,
            quota: Some((q.clone(), q.usage().expect("usage"), ago())),
        };
        assert_eq!(meter.busy(), 0.0);
        if let Some((_, _, at)) = &mut meter.quota {
            *at = ago();
        }
        // A second of CPU in 20 ms of a half-CPU quota: spent.
        std::fs::write(&q.stat, "usage_usec 1001000\n").expect("write");
        assert_eq!(meter.busy(), 1.0);
    }

    /// Refills `p` every [`REFILL`], as the controller does.
    fn refilling(p: &std::sync::Arc<Pressure>) -> tokio::task::JoinHandle<()> {
        let p = std::sync::Arc::clone(p);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFILL);
            tick.tick().await;
            loop {
                tick.tick().await;
                p.refill(REFILL);
            }
        })
    }

    /// How long `n` attempts take to be admitted.
    async fn time_of(p: &Pressure, n: usize) -> Duration {
        let t = Instant::now();
        for _ in 0..n {
            p.admit_send().await;
        }
        t.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn paced_attempts_follow_the_rate_and_are_released_when_yielding_ends() {
        let p = std::sync::Arc::new(Pressure::new());
        let _refill = refilling(&p);
        // Full speed: no wait at all.
        assert_eq!(time_of(&p, 1000).await, Duration::ZERO);
        assert_eq!(p.admit_reads(512).await, 512);
        // 100 per second.
        p.set(Some(100));
        let t = time_of(&p, 50).await;
        assert!(
            t >= Duration::from_millis(490) && t <= Duration::from_millis(510),
            "{t:?}"
        );
        // A new rate applies at the next refill, to the waiters already
        // there too.
        p.set(Some(1000));
        let t = time_of(&p, 500).await;
        assert!(
            t >= Duration::from_millis(490) && t <= Duration::from_millis(510),
            "{t:?}"
        );
        // The dispatcher reads a twentieth of a second's worth at a time.
        assert_eq!(p.admit_reads(512).await, 50);
        // Idle for a second: at most a twentieth of a second saved up.
        p.set(Some(100));
        tokio::time::sleep(Duration::from_secs(1)).await;
        // 5 at once, 5 more at 100 per second.
        let t = time_of(&p, 10).await;
        assert!(
            t >= Duration::from_millis(40) && t <= Duration::from_millis(60),
            "{t:?}"
        );
        // Waiters far in the queue are let go when yielding ends.
        p.set(Some(10));
        let waiter = {
            let p = std::sync::Arc::clone(&p);
            tokio::spawn(async move { time_of(&p, 100).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.set(None);
        let t = waiter.await.expect("join");
        assert!(
            t >= Duration::from_secs(1) && t < Duration::from_millis(1100),
            "{t:?}"
        );
        // Yielding again starts from nothing saved up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        p.set(Some(10));
        assert!(time_of(&p, 1).await > Duration::ZERO);
    }
}
