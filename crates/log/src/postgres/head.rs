//! Keeps `head()` current with the commits of other instances.
//!
//! Each append transaction notifies `cds_events_head` with its last sequence
//! number; one task per `PgLog` listens on a connection of its own and moves
//! the watch. Notifications are lost while that connection is down, so the
//! task also reads `log_head` every `poll` (the safety net), and once right
//! after (re)opening the listener; a lost listener is reopened with backoff.
//! The watch only moves forward: a value below what it holds (a late
//! notification) is ignored. Since `log_head` and the events are written in
//! one transaction, and appends commit in sequence order, every event up to
//! a value read here is readable.

use super::schema::HEAD_CHANNEL;
use crate::Seq;
use cds_events_store::Error;
use cds_events_store::pg::{Listener, PgOptions, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// First wait before reopening a lost listener; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Moves `head` forward to `seq`; whether it moved.
pub(super) fn advance(head: &watch::Sender<Seq>, seq: Seq) -> bool {
    head.send_if_modified(|h| {
        let moved = seq > *h;
        if moved {
            *h = seq;
        }
        moved
    })
}

/// The last sequence number committed by any instance.
pub(super) async fn read(pool: &PgPool) -> Result<Seq, Error> {
    let conn = pool.get().await?;
    let row = conn.query_one("SELECT seq FROM log_head", &[]).await?;
    Ok(Seq(row.get::<_, i64>(0) as u64))
}

/// Runs until dropped (the log cancels it at close).
pub(super) async fn follow(
    options: PgOptions,
    pool: PgPool,
    head: Arc<watch::Sender<Seq>>,
    poll: Duration,
) {
    let mut listener: Option<Listener> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut reopen_at = Instant::now();
    let mut ticks = tokio::time::interval(poll.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        if listener.is_none() && Instant::now() >= reopen_at {
            match Listener::open(&options, &[HEAD_CHANNEL]).await {
                Ok(l) => {
                    listener = Some(l);
                    backoff = FIRST_BACKOFF;
                    // What was committed while nobody listened.
                    poll_once(&pool, &head).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot listen for the log's head");
                    reopen_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tokio::select! {
            n = next(&mut listener) => match n {
                Some(payload) => match payload.parse::<u64>() {
                    Ok(seq) => {
                        advance(&head, Seq(seq));
                    }
                    Err(_) => tracing::warn!(payload, "unreadable head notification"),
                },
                None => {
                    listener = None;
                    reopen_at = Instant::now() + backoff;
                    poll_once(&pool, &head).await;
                }
            },
            _ = tokio::time::sleep_until(reopen_at), if listener.is_none() => {}
            _ = ticks.tick() => poll_once(&pool, &head).await,
        }
    }
}

/// The next notification's payload; `None` when the listener is gone. Pends
/// forever without a listener.
async fn next(listener: &mut Option<Listener>) -> Option<String> {
    match listener {
        Some(l) => l.recv().await.map(|n| n.payload),
        None => std::future::pending().await,
    }
}

async fn poll_once(pool: &PgPool, head: &watch::Sender<Seq>) {
    match read(pool).await {
        Ok(seq) => {
            advance(head, seq);
        }
        Err(e) => tracing::debug!(error = %e, "cannot read the log's head"),
    }
}
