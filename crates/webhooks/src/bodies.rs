//! The bodies of the events being delivered: from the in-memory cache of
//! freshly dispatched events, or else from the log, one read at a time
//! (see `Inner::log_reads`). A body the log no longer has is `None`: the
//! worker cancels that delivery. Nothing here writes anything.

use crate::engine::Inner;
use crate::error::WebhooksError;
use crate::store::Due;
use cds_events_log::Seq;
use std::sync::Arc;

/// A due delivery, with its event's JSON once known.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub due: Due,
    pub body: Option<Arc<str>>,
}

impl From<Due> for Job {
    fn from(due: Due) -> Job {
        Job { due, body: None }
    }
}

impl Inner {
    /// An event's JSON: from the cache, or else from the log (`None` when the
    /// log no longer has it).
    pub(crate) async fn event_body(
        &self,
        seq: Seq,
        event_id: &str,
    ) -> Result<Option<Arc<str>>, WebhooksError> {
        if let Some(b) = self.cache.get(seq) {
            return Ok(Some(b));
        }
        let _permit = self.log_reads.acquire().await;
        Ok(self.log.get(event_id).await?.map(|e| e.json))
    }

    /// Sets the bodies of a page of deliveries: from the cache, the rest in
    /// one read of the log (a backlog larger than the cache would otherwise
    /// cost one log read per delivery). Those left without (a failed read,
    /// an event purged) are looked up again when sent.
    pub(crate) async fn fill_bodies<'a>(&self, page: impl Iterator<Item = &'a mut Job>) {
        let mut missing: Vec<&'a mut Job> = Vec::new();
        for d in page.filter(|d| d.body.is_none()) {
            match self.cache.get(d.due.seq) {
                Some(b) => d.body = Some(b),
                None => missing.push(d),
            }
        }
        if missing.is_empty() {
            return;
        }
        let seqs = missing.iter().map(|d| d.due.seq).collect();
        let read = {
            let _permit = self.log_reads.acquire().await;
            self.log.read_seqs(seqs).await
        };
        match read {
            Ok(events) => {
                let mut events = events.into_iter().peekable();
                for d in missing {
                    if let Some(e) = events.next_if(|e| e.seq == d.due.seq) {
                        d.body = Some(e.json);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read a page of event bodies"),
        }
    }
}
