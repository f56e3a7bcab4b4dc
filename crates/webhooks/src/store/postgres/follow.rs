//! How the mirror follows a database that other instances change too.
//!
//! [`Ordered`] is what the mirror was last told of each notification (and
//! the keyring): this instance's changes hold it from their transaction's
//! start until they have told the mirror, so the mirror hears them in
//! commit order. Every change, on any instance, also announces the
//! notification's id on [`CHANNEL`] inside its transaction. The
//! [`Follower`] listens there; for each id it reads the notification as
//! committed now (under the same lock) and tells the mirror what differs
//! from what it was last told: nothing for this instance's own changes,
//! the change for another's, a removal when the row is gone. Reading the
//! row as it is now, rather than trusting the message, means a late or
//! repeated message never takes the mirror back in time.
//!
//! The same listener hears the dispatcher's announcements of new
//! deliveries ([`DUE_CHANNEL`]), whichever instance leads, and tells the
//! mirror, whose workers claim them.
//!
//! Messages sent while no listener is connected are lost: at every
//! (re)connection, and every [`RELOAD_EVERY`] as a safety net (a message
//! dropped by a full queue), every notification is read again the same way,
//! and every worker told to claim again (which also finds a retry that an
//! instance scheduled, then died before sending). Until the listener is
//! back, the reload runs at each retry.

use super::Shared;
use super::notifications::{Lock, Which, load_all, load_one};
use super::schema::{CHANNEL, DUE_CHANNEL};
use crate::crypto::Keyring;
use crate::error::WebhooksError;
use crate::store::{Mirror, NotificationId, NotificationRecord};
use cds_events_store::pg::{Listener, PgOptions};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often every notification is read again while the listener is up.
const RELOAD_EVERY: Duration = Duration::from_secs(10);

/// The first wait before reconnecting a lost listener, doubled after each
/// failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The keyring, and each notification as the mirror was last told of it.
pub(super) struct Ordered {
    pub(super) keyring: Keyring,
    told: HashMap<NotificationId, NotificationRecord>,
}

impl Ordered {
    pub(super) fn new(keyring: Keyring) -> Ordered {
        Ordered {
            keyring,
            told: HashMap::new(),
        }
    }

    /// Tells the mirror of every stored notification, at open: one that
    /// cannot be used fails the open.
    pub(super) fn open(
        &mut self,
        mirror: &dyn Mirror,
        all: Vec<NotificationRecord>,
    ) -> Result<(), WebhooksError> {
        for n in all {
            self.told.insert(n.id, n.clone());
            mirror.put(n)?;
        }
        Ok(())
    }

    /// A notification as committed now.
    pub(super) fn put(&mut self, mirror: &dyn Mirror, n: NotificationRecord) {
        let id = n.id;
        self.told.insert(id, n.clone());
        if let Err(e) = mirror.put(n) {
            tracing::error!(error = %e, notification = id.0, "a stored notification cannot be used");
        }
    }

    /// A notification deleted.
    pub(super) fn remove(&mut self, mirror: &dyn Mirror, id: NotificationId) {
        if self.told.remove(&id).is_some() {
            mirror.remove(id);
        }
    }

    /// A notification's failure state changed.
    pub(super) fn failing(&mut self, mirror: &dyn Mirror, id: NotificationId, since: Option<i64>) {
        if let Some(n) = self.told.get_mut(&id) {
            n.failing_since = since;
        }
        mirror.failing_since(id, since);
    }

    /// Tells the mirror what differs between what it was told of `id` and
    /// `now`, the notification as committed now (`None`: deleted).
    fn sync(&mut self, mirror: &dyn Mirror, id: NotificationId, now: Option<NotificationRecord>) {
        let Some(now) = now else {
            self.remove(mirror, id);
            return;
        };
        let only_failing = match self.told.get(&id) {
            Some(told) if *told == now => return,
            Some(told) => {
                let mut same = told.clone();
                same.failing_since = now.failing_since;
                same == now
            }
            None => false,
        };
        if only_failing {
            self.failing(mirror, id, now.failing_since);
        } else {
            self.put(mirror, now);
        }
    }

    /// Every notification the mirror was told of.
    fn known(&self) -> Vec<NotificationId> {
        self.told.keys().copied().collect()
    }

    /// [`Ordered::sync`] for every notification: `all` is every one stored.
    fn sync_all(&mut self, mirror: &dyn Mirror, all: Vec<NotificationRecord>) {
        let stored: HashSet<NotificationId> = all.iter().map(|n| n.id).collect();
        let gone: Vec<NotificationId> = self
            .told
            .keys()
            .filter(|id| !stored.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.remove(mirror, id);
        }
        for n in all {
            self.sync(mirror, n.id, Some(n));
        }
    }
}

impl Shared {
    /// Reads notification `id` as committed now and tells the mirror.
    async fn reload_one(&self, id: NotificationId) -> Result<(), WebhooksError> {
        let mut ordered = self.ordered.lock().await;
        let conn = self.conn().await?;
        let now = load_one(&**conn, &ordered.keyring, Which::Id(id), Lock::None).await?;
        ordered.sync(self.mirror.as_ref(), id, now);
        Ok(())
    }

    /// Tells the mirror of the notifications a due announcement names
    /// (ids, comma-separated; anything else means all).
    async fn tell_due(&self, payload: &str) {
        let named: Result<Vec<NotificationId>, _> = payload
            .split(',')
            .map(|id| id.parse().map(NotificationId))
            .collect();
        let ids = match named {
            Ok(ids) => ids,
            Err(_) => self.ordered.lock().await.known(),
        };
        self.mirror.due(&ids);
    }

    /// Reads every notification as committed now and tells the mirror.
    async fn reload_all(&self) -> Result<(), WebhooksError> {
        {
            let mut ordered = self.ordered.lock().await;
            let conn = self.conn().await?;
            let all = load_all(&**conn, &ordered.keyring).await?;
            ordered.sync_all(self.mirror.as_ref(), all);
            // Deliveries announced while no one listened, or scheduled by
            // an instance that died.
            self.mirror.due(&ordered.known());
        }
        // The pending gauge too: other instances move it.
        self.pending().await?;
        Ok(())
    }
}

/// The task that follows other instances' changes.
pub(super) struct Follower {
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Follower {
    pub(super) fn spawn(shared: Arc<Shared>, options: PgOptions) -> Follower {
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(shared, options, stop.clone()));
        Follower {
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    pub(super) fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops following and waits for the task to end.
    pub(super) async fn close(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn follow(shared: Arc<Shared>, options: PgOptions, stop: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let listener = tokio::select! {
            _ = stop.cancelled() => return,
            l = Listener::open(&options, &[CHANNEL, DUE_CHANNEL]) => l,
        };
        // What changed while no one listened.
        if let Err(e) = shared.reload_all().await {
            tracing::warn!(error = %e, "cannot read the webhook notifications again");
        }
        let mut listener = match listener {
            Ok(l) => {
                backoff = MIN_BACKOFF;
                l
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for webhook notification changes");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut reload = tokio::time::interval(RELOAD_EVERY);
        reload.reset();
        loop {
            let r = tokio::select! {
                _ = stop.cancelled() => return,
                message = listener.recv() => match message {
                    Some(m) if m.channel == DUE_CHANNEL => {
                        shared.tell_due(&m.payload).await;
                        Ok(())
                    }
                    Some(m) => match m.payload.parse::<i64>() {
                        Ok(id) => shared.reload_one(NotificationId(id)).await,
                        Err(_) => shared.reload_all().await,
                    },
                    None => {
                        tracing::warn!("lost the webhook notification changes listener; reconnecting");
                        break;
                    }
                },
                _ = reload.tick() => shared.reload_all().await,
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot read the webhook notifications again");
            }
        }
    }
}
