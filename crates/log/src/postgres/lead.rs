//! The leads of named consumers (broker sinks) on a shared database: for
//! each, a session-level advisory lock held by a connection of its own, and
//! a term that fences the holder's position writes.
//!
//! The same design as the webhooks dispatcher's lead. Every instance asks
//! for the consumer's lock with `pg_advisory_lock` on a dedicated
//! connection (never a pooled one: the lock belongs to the session) and
//! waits in the server until it is free. The lock dies with its session:
//! the holder killed (`kill -9`, a crash) or its connection cut, the server
//! ends the session and the next waiter gets the lock at once. The new
//! holder then adds one to the consumer's `log_consumer_leads.term`; a
//! position write goes through only where the term is still the writer's
//! (the row read `FOR SHARE`, so a new term waits for a write in flight and
//! a write after it finds the new term), so a former holder that has not
//! noticed yet writes nothing after its successor started.
//!
//! Each consumer's lock key is the pair ([`LOCK_CLASS`], its row's
//! `lock_key`): distinct for every name, and apart from the single-key
//! locks (the schema's, the webhooks lead), which PostgreSQL keeps in a
//! key space of their own.
//!
//! The lock's connection and its checks are `store::pg::LockSession`'s.

use super::{PgLog, log_error};
use crate::{Lead, LogError, Seq};
use cds_events_store::Error;
use cds_events_store::pg::LockSession;
use cds_events_store::pg::tokio_postgres;
use tokio_util::sync::CancellationToken;

/// The first half of every consumer lead's advisory lock key ("cdsc").
const LOCK_CLASS: i32 = 0x6364_7363;

/// The application name of a lead's session, which an operator sees in
/// `pg_stat_activity` (and tests find it by).
pub fn session_name(consumer: &str) -> String {
    format!("cds-events lead {consumer}")
}

impl PgLog {
    /// Waits for `consumer`'s lock, takes the next term, and keeps the lock
    /// until the returned lead is dropped or lost.
    pub(super) async fn take_lead(&self, consumer: &str, instance: &str) -> Result<Lead, LogError> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(LogError::Closed);
        }
        let mut config = self.pool.options().config().map_err(log_error)?;
        config.application_name(session_name(consumer));
        let session = LockSession::connect(&config, format!("the lead of consumer {consumer}"))
            .await
            .map_err(|e| log_error(Error::from(e)))?;
        let taken = async {
            let client = session.client();
            client
                .execute(
                    "INSERT INTO log_consumer_leads (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                    &[&consumer],
                )
                .await?;
            let key: i32 = client
                .query_one(
                    "SELECT lock_key FROM log_consumer_leads WHERE name = $1",
                    &[&consumer],
                )
                .await?
                .try_get(0)?;
            client
                .execute("SELECT pg_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
                .await?;
            let term: i64 = client
                .query_one(
                    "UPDATE log_consumer_leads SET term = term + 1, holder = $2, taken_at = now()
                     WHERE name = $1 RETURNING term",
                    &[&consumer, &instance],
                )
                .await?
                .try_get(0)?;
            Ok::<i64, tokio_postgres::Error>(term)
        }
        .await;
        let term = taken.map_err(|e| log_error(Error::from(e)))?;
        let lost = session.lost();
        let release = CancellationToken::new();
        session.keep(release.clone());
        Ok(Lead::new(term, lost, release.drop_guard()))
    }

    /// See [`ConsumerLeads::save_position`](crate::ConsumerLeads::save_position).
    pub(super) async fn save_led(
        &self,
        lead: &Lead,
        consumer: &str,
        seq: Seq,
    ) -> Result<(), LogError> {
        let conn = self.conn().await?;
        let written = async {
            let st = conn
                .prepare_cached(
                    "WITH lead AS (
                         SELECT name FROM log_consumer_leads
                         WHERE name = $1 AND term = $3::BIGINT FOR SHARE
                     )
                     INSERT INTO log_consumers (name, seq, updated_at)
                     SELECT name, $2::BIGINT, now() FROM lead
                     ON CONFLICT (name) DO UPDATE
                     SET seq = excluded.seq, updated_at = excluded.updated_at",
                )
                .await?;
            Ok::<u64, Error>(
                conn.execute(&st, &[&consumer, &(seq.0 as i64), &lead.term()])
                    .await?,
            )
        }
        .await
        .map_err(|e| self.error(e))?;
        if written == 0 {
            lead.lose();
            return Err(LogError::LostLead);
        }
        Ok(())
    }

    /// See [`ConsumerLeads::holder`](crate::ConsumerLeads::holder).
    pub(super) async fn lead_holder(&self, consumer: &str) -> Result<Option<String>, LogError> {
        let conn = self.conn().await?;
        let r: Result<_, Error> = async {
            Ok(conn
                .query_opt(
                    "SELECT holder FROM log_consumer_leads WHERE name = $1",
                    &[&consumer],
                )
                .await?
                .and_then(|r| r.get::<_, Option<String>>(0)))
        }
        .await;
        r.map_err(|e| self.error(e))
    }
}
