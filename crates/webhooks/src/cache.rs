//! Recently dispatched event bodies, so that a fresh delivery is sent without
//! reading the log again. Bounded in bytes; the oldest sequence numbers go
//! first. A miss (a retry hours later, a restart) reads the log by event id.

use cds_events_log::Seq;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub(crate) struct EventCache {
    inner: Mutex<Inner>,
    budget: usize,
}

#[derive(Debug, Default)]
struct Inner {
    by_seq: BTreeMap<Seq, Arc<str>>,
    bytes: usize,
}

impl EventCache {
    pub(crate) fn new(budget: usize) -> Self {
        EventCache {
            inner: Mutex::new(Inner::default()),
            budget,
        }
    }

    pub(crate) fn put(&self, seq: Seq, json: Arc<str>) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.bytes += json.len();
        if let Some(old) = c.by_seq.insert(seq, json) {
            c.bytes -= old.len();
        }
        while c.bytes > self.budget {
            match c.by_seq.pop_first() {
                Some((_, old)) => c.bytes -= old.len(),
                None => break,
            }
        }
    }

    pub(crate) fn get(&self, seq: Seq) -> Option<Arc<str>> {
        let c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        c.by_seq.get(&seq).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_beyond_budget() {
        let c = EventCache::new(10);
        c.put(Seq(1), Arc::from("aaaa"));
        c.put(Seq(2), Arc::from("bbbb"));
        c.put(Seq(3), Arc::from("cccc"));
        assert!(c.get(Seq(1)).is_none());
        assert_eq!(c.get(Seq(3)).as_deref(), Some("cccc"));
    }
}
