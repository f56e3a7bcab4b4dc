//! The outbox: Notification events written in the transaction of their
//! change, until they are in the log (see [`crate::engine::Inner::flush_outbox`]).

use super::Store;
use crate::error::WebhooksError;
use rusqlite::Connection;

impl Store {
    /// The oldest events of the outbox, with their row ids.
    pub(crate) async fn outbox(&self, limit: usize) -> Result<Vec<(i64, String)>, WebhooksError> {
        self.read(move |c| outbox_page(c, limit)).await
    }

    /// Removes events from the outbox (once they are in the log).
    pub(crate) async fn remove_from_outbox(&self, ids: Vec<i64>) -> Result<(), WebhooksError> {
        self.call(move |ctx| outbox_remove(&ctx.conn, &ids)).await
    }
}

/// Puts an event in the outbox (see [`crate::engine::Inner::flush_outbox`]).
pub(crate) fn outbox_put(
    conn: &Connection,
    event: &cds_events_model::FullEvent,
) -> Result<(), WebhooksError> {
    conn.prepare_cached("INSERT INTO outbox(event) VALUES (?1)")?
        .execute([event.to_json()])?;
    Ok(())
}

fn outbox_page(conn: &Connection, limit: usize) -> Result<Vec<(i64, String)>, WebhooksError> {
    let mut st = conn.prepare_cached("SELECT id, event FROM outbox ORDER BY id LIMIT ?1")?;
    let rows = st.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn outbox_remove(conn: &Connection, ids: &[i64]) -> Result<(), WebhooksError> {
    let mut st = conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    for id in ids {
        st.execute([id])?;
    }
    Ok(())
}
