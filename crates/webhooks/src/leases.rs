//! This instance's claims while their attempts run: the set of deliveries
//! its workers hold, and the task that renews their leases every third of
//! [`WebhooksConfig::lease`](crate::WebhooksConfig::lease), so that an
//! attempt slower than the lease (paced, or towards a slow endpoint) keeps
//! it while the instance lives, and a dead instance's claims end one lease
//! after its last renewal.

use crate::engine::Inner;
use crate::store::DeliveryId;
use crate::time::{millis, now_ms};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// The deliveries claimed here and not finished.
#[derive(Debug, Default)]
pub(crate) struct Held(Mutex<HashSet<DeliveryId>>);

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<DeliveryId>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes `id`; false when it is held here already (a lease that ended
    /// while its attempt still ran, claimed again by this instance).
    pub(crate) fn take(&self, id: DeliveryId) -> bool {
        self.lock().insert(id)
    }

    /// `id`'s attempt is over.
    pub(crate) fn done(&self, id: DeliveryId) {
        self.lock().remove(&id);
    }

    fn all(&self) -> Vec<DeliveryId> {
        self.lock().iter().copied().collect()
    }
}

/// Renews this instance's leases until `shutdown`.
pub(crate) async fn renew(inner: Arc<Inner>, shutdown: CancellationToken) {
    let every = inner.config.lease / 3;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let ids = inner.held.all();
        if ids.is_empty() {
            continue;
        }
        let until = now_ms() + millis(inner.config.lease);
        if let Err(e) = inner.store.renew(&inner.instance, ids, until).await {
            tracing::warn!(error = %e, "cannot renew this instance's webhook claims");
        }
    }
}
