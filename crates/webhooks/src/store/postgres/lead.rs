//! The lead on a shared database: a session-level advisory lock held by a
//! connection of its own, and a term that fences the dispatcher's writes.
//!
//! Every instance asks for [`LEAD_LOCK`] with `pg_advisory_lock` on a
//! dedicated connection (never a pooled one: the lock belongs to the
//! session) and waits in the server until it is free. The lock dies with
//! its session: the holder killed (`kill -9`, a crash) or its connection
//! cut, the server ends the session and the next waiter gets the lock at
//! once. The new holder then adds one to `webhook_state.leader_term`; the
//! dispatcher's writes update `webhook_state` only where the term is still
//! theirs, so a former holder that has not noticed yet (its connection cut
//! while its pool still works) writes nothing after its successor started,
//! and its [`Lead`] is marked lost.
//!
//! The holder checks its connection every [`PING`]; a failed or slow check
//! loses the lead (another instance may have it by then). The session asks
//! the server for TCP keepalives, so that a holder whose machine vanished
//! is noticed within seconds rather than the system's hours.

use super::Shared;
use crate::error::WebhooksError;
use crate::store::Lead;
use cds_events_store::pg::tokio_postgres::{self, Client, NoTls};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The advisory lock key of the lead ("cdswhlea"); advisory locks are per
/// database, so each database has its own lead.
const LEAD_LOCK: i64 = 0x6364_7377_686c_6561;

/// How often the holder checks its connection, and how long a check may
/// take.
const PING: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// For the lock's session: no statement timeout (waiting for the lock is
/// one long statement); the server probes an idle client every few seconds
/// and ends its session after a few silent probes; PostgreSQL 14+ also
/// notices a client gone while it waits for the lock.
const SESSION: &str = "SET statement_timeout = 0;
     SET tcp_keepalives_idle = 5;
     SET tcp_keepalives_interval = 2;
     SET tcp_keepalives_count = 3;";
const CLIENT_CHECK: &str = "SET client_connection_check_interval = 1000";

impl Shared {
    /// Waits for the lock, takes the next term, and keeps the lock until
    /// the returned lead is dropped or lost.
    pub(super) async fn lead(&self, instance: &str) -> Result<Lead, WebhooksError> {
        let config = self.options.config()?;
        let (client, connection) = config.connect(NoTls).await?;
        let lost = CancellationToken::new();
        let gone = lost.clone();
        // Dropped before the lock is taken (the caller gave up waiting),
        // the connection closes with it, and the server stops the wait.
        let driver = Driver(tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "the webhooks lead connection ended");
            }
            // The session, and the lock with it, is gone.
            gone.cancel();
        }));
        let taken = async {
            client.batch_execute(SESSION).await?;
            // Older servers do not have it: the keepalives still work.
            let _ = client.batch_execute(CLIENT_CHECK).await;
            client
                .execute("SELECT pg_advisory_lock($1)", &[&LEAD_LOCK])
                .await?;
            let term: i64 = client
                .query_one(
                    "UPDATE webhook_state SET leader = $1, leader_term = leader_term + 1
                     RETURNING leader_term",
                    &[&instance],
                )
                .await?
                .try_get(0)?;
            Ok::<i64, tokio_postgres::Error>(term)
        }
        .await;
        let term = taken?;
        let release = CancellationToken::new();
        tokio::spawn(keep(client, driver, lost.clone(), release.clone()));
        Ok(Lead::new(term, lost, release.drop_guard()))
    }
}

/// Holds the lock's session until `release` (the lead dropped) or until the
/// session fails a check, which loses the lead.
async fn keep(
    client: Client,
    mut driver: Driver,
    lost: CancellationToken,
    release: CancellationToken,
) {
    let mut ping = tokio::time::interval(PING);
    ping.reset();
    loop {
        tokio::select! {
            _ = release.cancelled() => break,
            _ = lost.cancelled() => break,
            _ = ping.tick() => {
                let alive = tokio::time::timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await;
                if !matches!(alive, Ok(Ok(_))) {
                    tracing::warn!("the webhooks lead connection does not answer; leaving the lead");
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

/// The task driving the lock's connection, stopped (closing the
/// connection) when dropped.
struct Driver(tokio::task::JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}
