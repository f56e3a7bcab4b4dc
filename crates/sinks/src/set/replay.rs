//! Replays: a sink sends again every event from a sequence number on. The
//! instance running the sink stops its run, moves the stored position under
//! its lead and follows again; the caller hears whether it was done there.

use super::{Sinks, SinksError};
use crate::driver::Shared;
use cds_events_api::ReplayOut;
use cds_events_log::{LogError, RetentionHold, Seq};
use std::time::Duration;

impl Sinks {
    /// Sends again every event from `from` on (the oldest kept one if `from`
    /// was purged): the sink's position moves back to `from - 1`.
    pub async fn replay(&self, name: &str, from: u64) -> Result<ReplayOut, SinksError> {
        let shared = self.find(name)?;
        let stats = self.inner.log.stats().await?;
        let head = stats.head_seq.0;
        if from > head + 1 {
            return Err(SinksError::BeyondHead { from, head });
        }
        let from = from.max(stats.oldest_seq.0).max(1);
        let (done, outcome) = tokio::sync::oneshot::channel();
        *shared.replay.lock().unwrap_or_else(|e| e.into_inner()) = Some((Seq(from - 1), done));
        let running = shared.run.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match running {
            // The run stops, moves the position and follows again; a lead
            // lost meanwhile leaves the position to the new holder. (A later
            // replay that replaced this one answers for both.)
            Some(run) => {
                run.cancel();
                if outcome.await == Ok(false) {
                    return Err(self.not_leading(shared, name).await?);
                }
            }
            // Not running: the position alone, unless another instance
            // runs the sink (it would overwrite it).
            None => {
                shared
                    .replay
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                let saved = shared.position_store().save(Seq(from - 1)).await;
                match saved {
                    Ok(()) => {}
                    Err(cds_events_log::ConsumerError::Log(LogError::LostLead)) => {
                        return Err(self.not_leading(shared, name).await?);
                    }
                    Err(e) => return Err(SinksError::Log(LogError::Backend(Box::new(e)))),
                }
                shared.status().position = Seq(from - 1);
            }
        }
        Ok(ReplayOut {
            name: name.to_owned(),
            from,
        })
    }

    /// The refusal of an operation only the sink's lead holder may do.
    async fn not_leading(&self, shared: &Shared, name: &str) -> Result<SinksError, SinksError> {
        let holder = match self.inner.log.leads() {
            Some(leads) => leads.holder(shared.positions.name()).await?,
            None => None,
        };
        Ok(SinksError::NotLeading {
            name: name.to_owned(),
            holder: holder.unwrap_or_else(|| "none yet".into()),
        })
    }
}

/// Moves the position for a pending replay; answers whether there was one.
/// Under a lead that is lost meanwhile, the replay is dropped (the new
/// holder's position stands).
pub(super) async fn take_replay(shared: &Shared) -> bool {
    let pending = shared
        .replay
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let Some((position, done)) = pending else {
        return false;
    };
    let store = shared.position_store();
    loop {
        match store.save(position).await {
            Ok(()) => break,
            Err(cds_events_log::ConsumerError::Log(LogError::LostLead)) => {
                tracing::warn!(sink = %shared.config.name, "the sink's lead was lost: the replay is not done here");
                let _ = done.send(false);
                return false;
            }
            Err(e) => {
                tracing::warn!(sink = %shared.config.name, error = %e, "cannot move the position for a replay; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    shared.status().position = position;
    tracing::info!(sink = %shared.config.name, from = position.0 + 1, "sink replays");
    let _ = done.send(true);
    true
}
