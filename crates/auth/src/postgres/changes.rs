//! Hearing the token changes of every instance sharing the database.
//!
//! Each transaction that changes the tokens raises `auth_version` and sends
//! the new number on [`CHANNEL`] (delivered at its commit). One task per
//! [`PgTokens`](super::PgTokens) listens on a connection of its own and
//! publishes the highest number heard in a `watch`; the token store reloads
//! its copy when it moves. A notification sent while the listener is down
//! is lost, so the same task also reads `auth_version` every [`POLL`] (and
//! at once when the listener comes back): a change is seen within a poll
//! even with no listener at all. Nothing here reads or writes a token.

use crate::AuthError;
use cds_events_store::pg::{Listener, Notification, PgOptions, PgPool};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// The channel the changes are announced on, with the new version as text.
pub(super) const CHANNEL: &str = "cds_events_auth";

/// How often the version is read whatever the listener hears: the bound on
/// how late an instance learns of a revocation when notifications are lost.
pub(super) const POLL: Duration = Duration::from_millis(500);

/// The version of the tokens, as committed.
pub(super) async fn read_version(pool: &PgPool) -> Result<i64, AuthError> {
    let conn = pool.get().await?;
    let row = conn
        .query_one("SELECT version FROM auth_version", &[])
        .await?;
    Ok(row.try_get(0)?)
}

/// Runs until aborted: listens (reopening the listener when it is lost) and
/// polls, publishing every version it learns of.
pub(super) async fn follow(options: PgOptions, pool: PgPool, version: watch::Sender<i64>) {
    let mut listener: Option<Listener> = None;
    let mut deaf = false;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if listener.is_none() {
            match Listener::open(&options, &[CHANNEL]).await {
                Ok(l) => {
                    if deaf {
                        tracing::info!("listening for token changes again");
                    }
                    listener = Some(l);
                    deaf = false;
                    // What changed while nobody listened.
                    tick.reset_immediately();
                }
                Err(error) if !deaf => {
                    tracing::warn!(%error, "cannot listen for token changes; polling");
                    deaf = true;
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            heard = next(&mut listener) => match heard {
                Some(n) => match n.payload.parse() {
                    Ok(v) => publish(&version, v),
                    Err(_) => tick.reset_immediately(),
                },
                None => {
                    tracing::warn!("lost the token changes listener; polling until it is back");
                    listener = None;
                    deaf = true;
                }
            },
            _ = tick.tick() => match read_version(&pool).await {
                Ok(v) => publish(&version, v),
                Err(error) => tracing::debug!(%error, "cannot read the token version"),
            },
        }
    }
}

/// The listener's next notification; never, without a listener.
async fn next(listener: &mut Option<Listener>) -> Option<Notification> {
    match listener {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

/// Announces `v` if it differs from the version last announced (a database
/// restored from a backup may go back: any difference is a change).
fn publish(version: &watch::Sender<i64>, v: i64) {
    version.send_if_modified(|current| {
        let changed = *current != v;
        *current = v;
        changed
    });
}
