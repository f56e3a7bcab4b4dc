//! The decision, one sample at a time: a pure function from the current
//! pace and what a sample saw to the next pace. No clock, no I/O.

use super::BAND;

/// What one sample saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Sample {
    /// Busy fraction of the machine's CPU.
    pub(super) busy: f64,
    /// Events appended to the log per second: over this sample or over the
    /// last [`QUIET`](super::QUIET), whichever is more (the sample sees a
    /// burst start at once; ingest pauses for a checkpoint now and then, and
    /// yielding must not end on each pause); not 0 if any was appended.
    pub(super) ingested: u64,
    /// Attempts started, per second.
    pub(super) attempts: u64,
    /// Events admitted to be read while yielding, per second.
    pub(super) reads: u64,
}

/// When to yield, and how slowly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Busy fraction of the CPU that counts as saturated.
    pub cpu: f64,
    /// The slowest pace (per second) while yielding.
    pub floor: u64,
}

impl Policy {
    /// The next state from the current one and what one sample saw.
    pub(super) fn step(&self, current: Option<u64>, s: Sample) -> Option<u64> {
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
            // Room, and the pace holds nothing back (neither the reads nor
            // the attempts take half of their permits): full speed.
            Some(rate) if s.attempts.max(s.reads) < rate / 2 => None,
            Some(rate) if s.busy >= self.cpu - BAND => Some(rate),
            Some(rate) => Some(rate.saturating_mul(2)),
        }
    }
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
            reads: 0,
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
        // A consumer that sends batches (a sink): few attempts, but its
        // reads take every permit. The pace binds: kept.
        let batches = Sample {
            reads: 500,
            ..sample(0.86, 19)
        };
        assert_eq!(P.step(Some(500), batches), Some(500));
        let caught_up = Sample {
            reads: 100,
            ..sample(0.86, 19)
        };
        assert_eq!(P.step(Some(500), caught_up), None);
        // A threshold of 0 always yields while ingesting.
        let always = Policy {
            cpu: 0.0,
            floor: 20,
        };
        assert_eq!(always.step(None, sample(0.0, 0)), Some(20));
        assert_eq!(always.step(Some(20), sample(0.0, 20)), Some(20));
    }
}
