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
//! The lock's connection and its checks are `store::pg::LockSession`'s.

use super::Shared;
use crate::error::WebhooksError;
use crate::store::Lead;
use cds_events_store::pg::LockSession;
use cds_events_store::pg::tokio_postgres;
use tokio_util::sync::CancellationToken;

/// The advisory lock key of the lead ("cdswhlea"); advisory locks are per
/// database, so each database has its own lead.
const LEAD_LOCK: i64 = 0x6364_7377_686c_6561;

impl Shared {
    /// Waits for the lock, takes the next term, and keeps the lock until
    /// the returned lead is dropped or lost.
    pub(super) async fn lead(&self, instance: &str) -> Result<Lead, WebhooksError> {
        let config = self.options.config()?;
        let session = LockSession::connect(&config, "the webhooks lead".into()).await?;
        let taken = async {
            let client = session.client();
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
        let lost = session.lost();
        let release = CancellationToken::new();
        session.keep(release.clone());
        Ok(Lead::new(term, lost, release.drop_guard()))
    }
}
