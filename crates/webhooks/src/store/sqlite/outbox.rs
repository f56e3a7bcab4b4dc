//! The outbox table: Notification events written in the transaction of
//! their change, until the engine has them in the log and removes them.

use crate::error::WebhooksError;
use crate::store::OutboxEntry;
use rusqlite::Connection;

/// Puts an event in the outbox, inside the caller's transaction.
pub(super) fn outbox_put(
    conn: &Connection,
    event: &cds_events_model::FullEvent,
) -> Result<(), WebhooksError> {
    conn.prepare_cached("INSERT INTO outbox(event) VALUES (?1)")?
        .execute([event.to_json()])?;
    Ok(())
}

/// The oldest events of the outbox, with their row ids.
pub(super) fn page(conn: &Connection, limit: usize) -> Result<Vec<OutboxEntry>, WebhooksError> {
    let mut st = conn.prepare_cached("SELECT id, event FROM outbox ORDER BY id LIMIT ?1")?;
    let rows = st.query_map([limit as i64], |r| {
        Ok(OutboxEntry {
            id: r.get(0)?,
            event: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn remove(conn: &Connection, ids: &[i64]) -> Result<(), WebhooksError> {
    let mut st = conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    for id in ids {
        st.execute([id])?;
    }
    Ok(())
}
