//! From the outbox to the log. Every notification change writes its event
//! to the store's outbox in the change's own transaction, so a crash or a
//! failing log between the change and the append loses nothing; this module
//! appends what waits there, oldest first, and only then removes it.
//!
//! It never builds an event (the change did) and never drops one that the
//! log did not take, except one that no longer decodes.

use crate::engine::Inner;
use crate::store::NotificationId;
use cds_events_log::NewEvent;

/// Outbox events appended per log append.
const FLUSH_PAGE: usize = 256;

impl Inner {
    /// Appends the events waiting in the outbox to the log, oldest first,
    /// and removes them. Runs after each change, at start and every few
    /// seconds. The log ignores an event id it already has, so an append
    /// repeated after a crash stores nothing twice.
    pub(crate) async fn flush_outbox(&self) {
        let _one = self.outbox_flush.lock().await;
        loop {
            let rows = match self.store.outbox(FLUSH_PAGE).await {
                Ok(rows) if rows.is_empty() => return,
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the notification events outbox");
                    return;
                }
            };
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                match cds_events_model::decode_stored(&row.event) {
                    Ok(e) => events.push(NewEvent::from(e)),
                    Err(e) => {
                        tracing::error!(error = %e, "an outbox event does not decode; dropped")
                    }
                }
            }
            if let Err(e) = self.log.append(events).await {
                tracing::warn!(error = %e, "cannot append notification events; they stay in the outbox");
                return;
            }
            let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
            if let Err(e) = self.store.remove_from_outbox(ids).await {
                tracing::warn!(error = %e, "cannot clear the notification events outbox");
                return;
            }
        }
    }

    /// After a failure disabled a notification: announce it.
    pub(crate) async fn after_auto_disable(&self, id: NotificationId) {
        let Some(n) = self.registry.get(id) else {
            return;
        };
        tracing::warn!(
            project_key = %n.project,
            notification = %n.name,
            reason = n.disabled_reason.as_deref().unwrap_or(""),
            "webhook notification disabled"
        );
        // Its NotificationUpdated was written with the change.
        self.flush_outbox().await;
    }
}
