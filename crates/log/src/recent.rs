//! The newest committed events, kept in memory for the readers that follow
//! the head.
//!
//! Every consumer (the hub, the webhooks dispatcher, each sink) reads the log
//! forward from its own position, and while it keeps up that position is a
//! few events behind the head. Reading those events back from the database
//! costs a reader connection, a page walk and a copy of each body, per
//! consumer, for events the writer had in hand a moment before. The writer
//! puts what it has just committed here (before it moves the head, so a
//! consumer woken by the head finds them), and
//! [`read_after`](Recent::read_after) answers from memory whenever the asked
//! range starts inside what is kept; anything older falls back to the
//! backend's read. What is kept is bounded in bytes: the oldest go first.

use crate::{Seq, StoredEvent};
use std::collections::VecDeque;
use std::sync::Mutex;

/// A bounded, contiguous run of the newest committed events.
#[derive(Debug)]
pub(crate) struct Recent {
    inner: Mutex<Kept>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Kept {
    events: VecDeque<StoredEvent>,
    bytes: usize,
}

/// What one kept event is counted as: its body, its head's strings and
/// their bookkeeping.
fn weight(e: &StoredEvent) -> usize {
    let head = e.known.as_deref().map_or(0, |k| {
        k.id.len()
            + k.project_key.len()
            + k.workflow_run_id.len()
            + k.workflow.len()
            + k.repository.len()
            + 16
            + 5 * std::mem::size_of::<String>()
    });
    e.json.len() + head + 48
}

impl Recent {
    /// Keeps up to `capacity` bytes of events; 0 keeps nothing.
    pub(crate) fn new(capacity: usize) -> Recent {
        Recent {
            inner: Mutex::new(Kept::default()),
            capacity,
        }
    }

    /// Whether anything is kept (a capacity of 0 keeps nothing, and the
    /// writer then copies nothing for it).
    pub(crate) fn keeps(&self) -> bool {
        self.capacity > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds events just committed, in sequence order. A batch that does not
    /// follow the last kept event (which the single writer never produces)
    /// replaces what was kept, so that what is kept stays contiguous.
    pub(crate) fn committed(&self, events: Vec<StoredEvent>) {
        if self.capacity == 0 || events.is_empty() {
            return;
        }
        let mut k = self.lock();
        let follows = k
            .events
            .back()
            .is_none_or(|last| last.seq.0 + 1 == events[0].seq.0);
        if !follows {
            k.events.clear();
            k.bytes = 0;
        }
        for e in events {
            k.bytes += weight(&e);
            k.events.push_back(e);
        }
        while k.bytes > self.capacity {
            match k.events.pop_front() {
                Some(e) => k.bytes -= weight(&e),
                None => break,
            }
        }
    }

    /// Forgets every event at or below `seq` (they were purged).
    pub(crate) fn purged_through(&self, seq: Seq) {
        let mut k = self.lock();
        while k.events.front().is_some_and(|e| e.seq <= seq) {
            if let Some(e) = k.events.pop_front() {
                k.bytes -= weight(&e);
            }
        }
    }

    /// The events after `after`, up to `limit`, if what is kept covers the
    /// start of that range: the kept events are contiguous and end at the
    /// last commit this writer made, so the answer is the backend's own.
    /// `None` when the range starts before what is kept (or nothing is).
    pub(crate) fn read_after(&self, after: Seq, limit: usize) -> Option<Vec<StoredEvent>> {
        let k = self.lock();
        let first = k.events.front()?.seq.0;
        if after.0 + 1 < first {
            return None;
        }
        let skip = (after.0 + 1 - first) as usize;
        Some(k.events.iter().skip(skip).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ev(seq: u64) -> StoredEvent {
        StoredEvent::new(Seq(seq), Arc::from(format!("{{\"n\":{seq:04}}}")))
    }

    fn seqs(v: Option<Vec<StoredEvent>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.seq.0).collect())
    }

    #[test]
    fn answers_only_ranges_that_start_inside_what_is_kept() {
        let r = Recent::new(1 << 20);
        assert_eq!(seqs(r.read_after(Seq(0), 10)), None);
        r.committed((5..=9).map(ev).collect());
        assert_eq!(seqs(r.read_after(Seq(3), 10)), None, "6.. is not all kept");
        assert_eq!(seqs(r.read_after(Seq(4), 10)), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(seqs(r.read_after(Seq(6), 2)), Some(vec![7, 8]));
        assert_eq!(seqs(r.read_after(Seq(9), 10)), Some(vec![]));
        assert_eq!(seqs(r.read_after(Seq(12), 10)), Some(vec![]));
    }

    #[test]
    fn the_oldest_go_first_when_full() {
        let each = weight(&ev(1));
        let r = Recent::new(each * 3);
        r.committed((1..=2).map(ev).collect());
        r.committed((3..=5).map(ev).collect());
        assert_eq!(seqs(r.read_after(Seq(1), 10)), None);
        assert_eq!(seqs(r.read_after(Seq(2), 10)), Some(vec![3, 4, 5]));
    }

    #[test]
    fn a_kept_head_counts_against_the_capacity() {
        let with_head = |seq| StoredEvent {
            known: Some(Arc::new(crate::KnownHead {
                id: "0".repeat(36),
                event_type: cds_events_model::EventType::RunJobEnded,
                project_key: "PROJ".into(),
                workflow_run_id: "1".repeat(36),
                workflow: "deploy".into(),
                repository: "proj/repo".into(),
            })),
            ..ev(seq)
        };
        let r = Recent::new(weight(&ev(1)) * 3);
        r.committed((1..=3).map(with_head).collect());
        assert_eq!(
            seqs(r.read_after(Seq(0), 10)),
            None,
            "three bodies fit, not three heads too"
        );
    }

    #[test]
    fn a_batch_that_does_not_follow_replaces_what_is_kept() {
        let r = Recent::new(1 << 20);
        r.committed((1..=3).map(ev).collect());
        r.committed((7..=8).map(ev).collect());
        assert_eq!(seqs(r.read_after(Seq(3), 10)), None);
        assert_eq!(seqs(r.read_after(Seq(6), 10)), Some(vec![7, 8]));
    }

    #[test]
    fn purged_events_are_forgotten() {
        let r = Recent::new(1 << 20);
        r.committed((1..=5).map(ev).collect());
        r.purged_through(Seq(3));
        assert_eq!(seqs(r.read_after(Seq(0), 10)), None);
        assert_eq!(seqs(r.read_after(Seq(3), 10)), Some(vec![4, 5]));
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let r = Recent::new(0);
        r.committed((1..=5).map(ev).collect());
        assert_eq!(seqs(r.read_after(Seq(0), 10)), None);
    }
}
