//! The controller: samples the CPU, the log's head and the attempts, and
//! moves a [`Pacing`] by a [`Policy`]. The only task that changes a pace.

use super::cpu::CpuMeter;
use super::policy::Sample;
use super::{Pacing, Policy, QUIET, REFILL, SAMPLE};
use crate::EventLog;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// `n` over `d`, per second; at least 1 if `n` is not 0.
fn per_second(n: u64, d: Duration) -> u64 {
    if n == 0 {
        return 0;
    }
    ((n as f64 / d.as_secs_f64().max(1e-3)) as u64).max(1)
}

/// Samples until `shutdown`, moving `pacing` by `policy`; full speed when
/// it returns. Returns at once where the CPU cannot be read: the consumer
/// then never yields.
pub async fn control(
    pacing: &Pacing,
    policy: Policy,
    log: &dyn EventLog,
    shutdown: CancellationToken,
) {
    let consumer = pacing.name;
    let Some(mut cpu) = CpuMeter::new() else {
        tracing::info!(
            consumer,
            "neither /proc/stat nor a cgroup v2 CPU quota here: never yields to ingest"
        );
        return;
    };
    if let Some((q, ..)) = &cpu.quota {
        tracing::info!(
            consumer,
            cpus = q.cpus,
            "pacing counts against the CPU quota too"
        );
    }
    let head = log.head();
    // The head at each of the last samples, oldest first.
    let window = (QUIET.as_millis() / SAMPLE.as_millis()).max(1) as usize;
    let mut heads = std::collections::VecDeque::from(vec![head.borrow().0; window]);
    let mut attempts = pacing.attempts();
    let mut reads = pacing.paced_reads();
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refill = tokio::time::interval(REFILL);
    refill.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refilled = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = refill.tick(), if pacing.rate().is_some() => {
                pacing.refill(refilled.elapsed());
                refilled = Instant::now();
                continue;
            }
            _ = tick.tick() => {}
        }
        let busy = cpu.busy();
        let h = head.borrow().0;
        let a = pacing.attempts();
        let r = pacing.paced_reads();
        let elapsed = last.elapsed();
        let previous = heads.back().copied().unwrap_or(h);
        let oldest = heads.pop_front().unwrap_or(h);
        last = Instant::now();
        let sample = Sample {
            busy,
            ingested: per_second(h.saturating_sub(previous), elapsed)
                .max(per_second(h.saturating_sub(oldest), QUIET)),
            attempts: per_second(a.saturating_sub(attempts), elapsed),
            reads: per_second(r.saturating_sub(reads), elapsed),
        };
        heads.push_back(h);
        (attempts, reads) = (a, r);
        let before = pacing.rate();
        tracing::trace!(
            consumer,
            busy = sample.busy,
            ingested = sample.ingested,
            attempts = sample.attempts,
            reads = sample.reads,
            rate = ?before,
            "pacing sample"
        );
        let after = policy.step(before, sample);
        if after == before {
            continue;
        }
        if before.is_none() {
            refilled = Instant::now();
        }
        pacing.set(after);
        metrics::gauge!(pacing.rate_metric).set(after.unwrap_or(0) as f64);
        match (before, after) {
            (None, Some(_)) => tracing::debug!(consumer, cpu = busy, "yielding to ingest"),
            (Some(_), None) => tracing::debug!(consumer, cpu = busy, "back at full speed"),
            _ => {}
        }
    }
    pacing.set(None);
}
