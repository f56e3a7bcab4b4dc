//! A dedicated connection that holds session-level advisory locks: the
//! lead of the webhooks dispatcher and the leads of the broker sinks.
//!
//! The lock belongs to the session, so it is never taken on a pooled
//! connection. It dies with its session: the holder killed (`kill -9`, a
//! crash) or its connection cut, the server ends the session and the next
//! waiter gets the lock at once. The session asks the server for TCP
//! keepalives, so that a holder whose machine vanished is noticed within
//! seconds rather than the system's hours, and the holder checks its
//! connection every [`PING`]: a failed or slow check marks the lock lost
//! (another instance may have it by then).

use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};
use tokio_util::sync::CancellationToken;

/// How often the holder checks its connection, and how long a check may
/// take.
pub const PING: Duration = Duration::from_secs(1);
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// For the lock's session: no statement timeout (waiting for the lock is
/// one long statement); the server probes an idle client every few seconds
/// and ends its session after a few silent probes; PostgreSQL 14+ also
/// notices a client gone while it waits for the lock.
const SESSION: &str = "SET statement_timeout = 0;
     SET tcp_keepalives_idle = 5;
     SET tcp_keepalives_interval = 2;
     SET tcp_keepalives_count = 3;";
const CLIENT_CHECK: &str = "SET client_connection_check_interval = 1000";

/// A connection of its own for a lock. Dropped before [`LockSession::keep`]
/// (a caller that gave up waiting for the lock), the connection closes
/// with it and the server stops the wait.
pub struct LockSession {
    client: Client,
    driver: Driver,
    lost: CancellationToken,
    /// What the lock is, for the log lines ("the webhooks lead").
    what: String,
}

impl std::fmt::Debug for LockSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockSession")
            .field("what", &self.what)
            .field("lost", &self.lost.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl LockSession {
    /// Connects with `config` and sets the session up for waiting on, and
    /// holding, a lock.
    pub async fn connect(
        config: &Config,
        what: String,
    ) -> Result<LockSession, tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        let lost = CancellationToken::new();
        let gone = lost.clone();
        let label = what.clone();
        let driver = Driver(tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "the connection of {label} ended");
            }
            // The session, and the lock with it, is gone.
            gone.cancel();
        }));
        client.batch_execute(SESSION).await?;
        // Older servers do not have it: the keepalives still work.
        let _ = client.batch_execute(CLIENT_CHECK).await;
        Ok(LockSession {
            client,
            driver,
            lost,
            what,
        })
    }

    /// The session's connection, to take the lock and what goes with it.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Cancelled once the session, and any lock it holds, is gone.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Holds the session (and its locks) in a task until `release` is
    /// cancelled (the lead dropped) or a check fails, which cancels
    /// [`lost`](LockSession::lost).
    pub fn keep(self, release: CancellationToken) {
        tokio::spawn(self.hold(release));
    }

    async fn hold(self, release: CancellationToken) {
        let LockSession {
            client,
            mut driver,
            lost,
            what,
        } = self;
        let mut ping = tokio::time::interval(PING);
        ping.reset();
        loop {
            tokio::select! {
                _ = release.cancelled() => break,
                _ = lost.cancelled() => break,
                _ = ping.tick() => {
                    let alive = tokio::time::timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        tracing::warn!("the connection of {what} does not answer; leaving the lock");
                        lost.cancel();
                        break;
                    }
                }
            }
        }
        // Closing the session frees the lock (the server notices at once).
        drop(client);
        let _ = tokio::time::timeout(PING_TIMEOUT, &mut driver.0).await;
    }
}

/// The task driving the lock's connection, stopped (closing the
/// connection) when dropped.
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}
