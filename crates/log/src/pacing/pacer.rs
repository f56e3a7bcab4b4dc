//! The turns: a consumer's reads and attempts wait here for their permits
//! while yielding, and go at once at full speed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};

/// What one consumer does now, as seen by its reader and its workers; moved
/// by [`control`](super::control).
pub struct Pacing {
    /// Names the consumer in logs (`webhook deliveries`).
    pub(super) name: &'static str,
    /// The gauge of the rate while yielding (0 at full speed).
    pub(super) rate_metric: &'static str,
    /// `Some(rate)` (per second) while yielding.
    state: watch::Sender<Option<u64>>,
    reads: Pacer,
    sends: Pacer,
    /// Attempts started, ever.
    attempts: AtomicU64,
    /// Events admitted to be read while yielding, ever.
    paced_reads: AtomicU64,
}

impl std::fmt::Debug for Pacing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacing")
            .field("name", &self.name)
            .field("rate", &self.rate())
            .finish_non_exhaustive()
    }
}

impl Pacing {
    /// At full speed. `name` names the consumer in logs; `rate_metric` is
    /// the gauge that shows the pace (`cds_events_<consumer>_yield_rate`).
    pub fn new(name: &'static str, rate_metric: &'static str) -> Pacing {
        Pacing {
            name,
            rate_metric,
            state: watch::Sender::new(None),
            reads: Pacer::default(),
            sends: Pacer::default(),
            attempts: AtomicU64::new(0),
            paced_reads: AtomicU64::new(0),
        }
    }

    /// The rate while yielding, `None` at full speed.
    pub fn rate(&self) -> Option<u64> {
        *self.state.borrow()
    }

    /// Attempts started, ever.
    pub(super) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Events admitted to be read while yielding, ever: with the attempts,
    /// what tells whether the pace holds the consumer back. A consumer whose
    /// attempt is a batch (a sink) makes few attempts even when its reads
    /// take every permit.
    pub(super) fn paced_reads(&self) -> u64 {
        self.paced_reads.load(Ordering::Relaxed)
    }

    pub(super) fn set(&self, rate: Option<u64>) {
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
    /// [`REFILL`](super::REFILL) while yielding). A rate change applies from the next
    /// refill: waiters hold no reservation that would keep the old pace.
    pub(super) fn refill(&self, elapsed: Duration) {
        if let Some(rate) = self.rate() {
            self.reads.refill(rate, elapsed);
            self.sends.refill(rate, elapsed);
        }
    }

    /// Waits for the turn of one attempt (a delivery sent, a batch
    /// published): at once at full speed, paced while yielding (and at once
    /// if yielding ends meanwhile).
    pub async fn admit_attempt(&self) {
        self.admit(&self.sends, 1).await;
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// How many events the consumer may read now, after waiting for their
    /// turn: `max` at full speed; while yielding, a twentieth of a second's
    /// worth.
    pub async fn admit_reads(&self, max: usize) -> usize {
        let Some(rate) = self.rate() else {
            return max;
        };
        let n = ((rate / 20) as usize).clamp(1, max);
        self.admit(&self.reads, n as u32).await;
        self.paced_reads.fetch_add(n as u64, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::REFILL;
    use std::sync::Arc;
    use tokio::time::Instant;

    /// Refills `p` every [`REFILL`], as the controller does.
    fn refilling(p: &Arc<Pacing>) -> tokio::task::JoinHandle<()> {
        let p = Arc::clone(p);
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
    async fn time_of(p: &Pacing, n: usize) -> Duration {
        let t = Instant::now();
        for _ in 0..n {
            p.admit_attempt().await;
        }
        t.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn paced_attempts_follow_the_rate_and_are_released_when_yielding_ends() {
        let p = Arc::new(Pacing::new("test", "cds_events_test_yield_rate"));
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
        // The reader reads a twentieth of a second's worth at a time.
        assert_eq!(p.admit_reads(512).await, 50);
        // Only the reads admitted while yielding are counted.
        assert_eq!(p.paced_reads(), 50);
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
            let p = Arc::clone(&p);
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
