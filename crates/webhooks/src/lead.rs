//! Leading: of the instances sharing a store, the one that holds its lead
//! runs the dispatcher (every committed event becomes its deliveries once)
//! and the purge of old deliveries; every instance runs workers.
//!
//! This task waits for the lead ([`NotificationStore::lead`]), runs both
//! under it until it is lost or the engine stops, then gives it up and
//! waits for it again. A new holder's dispatcher starts from the stored
//! position, which its predecessor moved with each batch: nothing is lost
//! and nothing dispatched twice (a batch written under a lost lead is
//! refused by the store). With SQLite the engine takes the lead at once and
//! keeps it.
//!
//! [`NotificationStore::lead`]: crate::store::NotificationStore::lead

use crate::dispatcher;
use crate::engine::Inner;
use crate::store::Lead;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often finished deliveries and deleted notifications' rows are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// The wait before asking again for a lead the store could not give.
const RETRY: Duration = Duration::from_secs(1);

/// Leads whenever it can, until `shutdown`.
pub(crate) async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
    loop {
        let lead = tokio::select! {
            _ = shutdown.cancelled() => return,
            lead = inner.store.lead(&inner.instance) => lead,
        };
        match lead {
            Ok(lead) => under(&inner, Arc::new(lead), &shutdown).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take the webhooks lead; trying again");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY) => {}
                }
            }
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// Runs the dispatcher and the purge until the lead is lost or `shutdown`;
/// returns once both stopped (the caller then drops the lead).
async fn under(inner: &Arc<Inner>, lead: Arc<Lead>, shutdown: &CancellationToken) {
    tracing::info!(instance = %inner.instance, term = lead.term(), "leading webhooks: the dispatcher runs here");
    inner.leading.store(true, Ordering::Release);
    let scope = shutdown.child_token();
    let tasks = TaskTracker::new();
    tasks.spawn(dispatcher::run(
        Arc::clone(inner),
        Arc::clone(&lead),
        scope.clone(),
    ));
    tasks.spawn(purge(Arc::clone(inner), scope.clone()));
    tasks.close();
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = lead.lost() => {
            tracing::warn!(instance = %inner.instance, term = lead.term(), "lost the webhooks lead; the dispatcher stops here");
        }
    }
    scope.cancel();
    tasks.wait().await;
    inner.leading.store(false, Ordering::Release);
}

/// Purges old deliveries every [`PURGE_INTERVAL`] until `stop`.
async fn purge(inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PURGE_INTERVAL) => {}
        }
        match inner.purge().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "webhook deliveries purged"),
            Err(e) => tracing::warn!(error = %e, "webhook delivery purge failed"),
        }
    }
}
