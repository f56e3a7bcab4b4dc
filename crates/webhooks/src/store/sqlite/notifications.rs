//! Notification rows: loading them (opening their sealed values), writing
//! them (sealing), the changes with their events, deletion, and re-sealing
//! under a new key.

use super::outbox::outbox_put;
use super::schema::NOTIFICATION_ID_HIGH;
use super::writer::WriterCtx;
use crate::crypto::Keyring;
use crate::error::WebhooksError;
use crate::model::{Actor, NotificationFilter};
use crate::signing::SigningSecret;
use crate::store::{
    Edit, NotificationId, NotificationRecord, stored_format, stored_ordered_by, stored_project,
};
use cds_events_model::{EventType, ProjectKey};
use rusqlite::{Connection, Row, params};
use std::collections::BTreeMap;

const SEALED_COLUMNS: [&str; 3] = ["headers", "secret", "previous_secret"];

const COLUMNS: &str = "id, uid, project, name, url, filters, headers, secret, previous_secret,
     previous_valid_until, enabled, ordered, disabled_reason, failing_since, last_modified,
     format, content_mode, ordered_by";

impl WriterCtx {
    pub(super) fn create_notification(
        &mut self,
        mut n: NotificationRecord,
        limit: usize,
        actor: &Actor,
    ) -> Result<NotificationRecord, WebhooksError> {
        let tx = self.conn.transaction()?;
        // Counted on the writer, where creations are serialized.
        let count: i64 = tx.query_row(
            "SELECT COUNT(*) FROM notifications WHERE project = ?1",
            [n.project.as_str()],
            |r| r.get(0),
        )?;
        if count >= limit as i64 {
            return Err(WebhooksError::TooMany {
                project: n.project,
                limit,
            });
        }
        n.id = write_notification(&tx, &self.keyring, &n, true)?;
        outbox_put(&tx, &n.event(EventType::NotificationCreated, actor)?)?;
        tx.commit()?;
        self.live.insert(n.id);
        self.tell(n.clone());
        Ok(n)
    }

    pub(super) fn update_notification(
        &mut self,
        project: &ProjectKey,
        name: &str,
        edit: Edit,
        actor: &Actor,
    ) -> Result<NotificationRecord, WebhooksError> {
        let tx = self.conn.transaction()?;
        let mut n = open_one(&tx, &self.keyring, Which::Named(project.as_str(), name))?
            .ok_or_else(|| WebhooksError::no_notification(project, name))?;
        edit(&mut n)?;
        write_notification(&tx, &self.keyring, &n, false)?;
        outbox_put(&tx, &n.event(EventType::NotificationUpdated, actor)?)?;
        tx.commit()?;
        self.tell(n.clone());
        Ok(n)
    }

    /// Deletes a notification and puts its NotificationDeleted in the
    /// outbox, in one transaction.
    pub(super) fn delete_notification(
        &mut self,
        project: &ProjectKey,
        name: &str,
        actor: &Actor,
    ) -> Result<(), WebhooksError> {
        let tx = self.conn.transaction()?;
        let n = open_one(&tx, &self.keyring, Which::Named(project.as_str(), name))?
            .ok_or_else(|| WebhooksError::no_notification(project, name))?;
        outbox_put(&tx, &n.event(EventType::NotificationDeleted, actor)?)?;
        let pending: i64 = tx.query_row(
            "SELECT COUNT(*) FROM deliveries WHERE notification_id = ?1 AND status = 'pending'",
            [n.id.0],
            |r| r.get(0),
        )?;
        // Its deliveries, however many, go later in small transactions
        // (`purge_step`): one long delete would hold the writer that every
        // other notification's results wait for.
        tx.execute(
            "INSERT OR IGNORE INTO purge_queue(notification_id) VALUES (?1)",
            [n.id.0],
        )?;
        tx.execute("DELETE FROM notifications WHERE id = ?1", [n.id.0])?;
        tx.commit()?;
        self.add_pending(-pending);
        self.live.remove(&n.id);
        self.forget_leases(n.id);
        self.mirror.remove(n.id);
        Ok(())
    }

    /// Rotates the file-managed master key (see
    /// [`NotificationStore::rotate_key`](crate::store::NotificationStore::rotate_key)).
    pub(super) fn rotate_key(&mut self) -> Result<usize, WebhooksError> {
        let rotated = self.keyring.rotated()?;
        // From here on new values are sealed with the new key, even if
        // re-sealing fails (the old key stays in the file then, and the next
        // start finishes the job).
        self.keyring = rotated;
        let n = reseal(&mut self.conn, &self.keyring, true)?;
        self.keyring = self.keyring.pruned()?;
        Ok(n)
    }

    /// Tells the mirror of a committed notification.
    pub(super) fn tell(&self, n: NotificationRecord) {
        let id = n.id;
        if let Err(e) = self.mirror.put(n) {
            tracing::error!(error = %e, notification = id.0, "a stored notification cannot be used");
        }
    }
}

/// Which notification to open.
pub(super) enum Which<'a> {
    Named(&'a str, &'a str),
    Id(NotificationId),
}

/// One notification, opened.
pub(super) fn open_one(
    conn: &Connection,
    keyring: &Keyring,
    which: Which<'_>,
) -> Result<Option<NotificationRecord>, WebhooksError> {
    let (filter, args): (&str, &[&dyn rusqlite::ToSql]) = match &which {
        Which::Named(project, name) => ("project = ?1 AND name = ?2", params![*project, *name]),
        Which::Id(id) => ("id = ?1", params![id.0]),
    };
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE {filter}"
    ))?;
    let mut rows = st.query(args)?;
    match rows.next()? {
        Some(r) => Ok(Some(record_of(r, keyring)?)),
        None => Ok(None),
    }
}

/// Every notification, opened.
pub(super) fn load_all(
    conn: &Connection,
    keyring: &Keyring,
) -> Result<Vec<NotificationRecord>, WebhooksError> {
    let mut st = conn.prepare(&format!("SELECT {COLUMNS} FROM notifications"))?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(record_of(r, keyring)?);
    }
    Ok(out)
}

fn record_of(r: &Row<'_>, keyring: &Keyring) -> Result<NotificationRecord, WebhooksError> {
    let uid: String = r.get(1)?;
    let filters: String = r.get(5)?;
    let filters: BTreeMap<String, NotificationFilter> =
        serde_json::from_str(&filters).map_err(|e| WebhooksError::Unreadable {
            uid: uid.clone(),
            problem: format!("filters: {e}"),
        })?;
    let headers = keyring.open(&r.get::<_, Vec<u8>>(6)?, &uid, "headers")?;
    let headers: BTreeMap<String, String> =
        serde_json::from_slice(&headers).map_err(|e| WebhooksError::Unreadable {
            uid: uid.clone(),
            problem: format!("headers: {e}"),
        })?;
    let secret = open_secret(keyring, &r.get::<_, Vec<u8>>(7)?, &uid, "secret")?;
    let previous = match (r.get::<_, Option<Vec<u8>>>(8)?, r.get::<_, Option<i64>>(9)?) {
        (Some(b), Some(until)) => Some((open_secret(keyring, &b, &uid, "previous_secret")?, until)),
        _ => None,
    };
    let (format, content_mode) =
        stored_format(&uid, &r.get::<_, String>(15)?, &r.get::<_, String>(16)?)?;
    let project = stored_project(&uid, r.get(2)?)?;
    let ordered_by = stored_ordered_by(&uid, r.get::<_, Option<String>>(17)?)?;
    Ok(NotificationRecord {
        id: NotificationId(r.get(0)?),
        uid,
        project,
        name: r.get(3)?,
        url: r.get(4)?,
        filters,
        headers,
        secret,
        previous,
        enabled: r.get(10)?,
        ordered: r.get(11)?,
        ordered_by,
        format,
        content_mode,
        disabled_reason: r.get(12)?,
        failing_since: r.get(13)?,
        last_modified: r.get(14)?,
    })
}

fn open_secret(
    keyring: &Keyring,
    sealed: &[u8],
    uid: &str,
    column: &str,
) -> Result<SigningSecret, WebhooksError> {
    let plain = keyring.open(sealed, uid, column)?;
    std::str::from_utf8(&plain)
        .ok()
        .and_then(SigningSecret::parse)
        .ok_or_else(|| WebhooksError::Unreadable {
            uid: uid.to_owned(),
            problem: format!("{column} is not a secret"),
        })
}

/// Inserts (`new`) or updates a notification row; returns its id.
/// The id of a new notification: never one given before. SQLite would give
/// the highest id in the table plus one, so deleting the newest notification
/// made its id come back; a deleted notification's deliveries are purged by
/// its id later (`purge_queue`), and they took the new one's deliveries with
/// them. Above every id ever given (kept in `meta`, the table, the purge
/// queue and the deliveries, for databases from before the mark).
fn next_id(conn: &Connection) -> Result<i64, WebhooksError> {
    let seen: i64 = conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM notifications), 0),
                    COALESCE((SELECT MAX(notification_id) FROM purge_queue), 0),
                    COALESCE((SELECT MAX(notification_id) FROM deliveries), 0))",
        [],
        |r| r.get(0),
    )?;
    Ok(seen.max(NOTIFICATION_ID_HIGH.get(conn)?.unwrap_or(0)) + 1)
}

fn write_notification(
    conn: &Connection,
    keyring: &Keyring,
    f: &NotificationRecord,
    new: bool,
) -> Result<NotificationId, WebhooksError> {
    let filters = serde_json::to_string(&f.filters).map_err(|source| WebhooksError::Encode {
        what: "filters",
        source,
    })?;
    let headers = serde_json::to_vec(&f.headers).map_err(|source| WebhooksError::Encode {
        what: "headers",
        source,
    })?;
    let headers = keyring.seal(&headers, &f.uid, "headers");
    let secret = keyring.seal(f.secret.expose().as_bytes(), &f.uid, "secret");
    let (previous, until) = match &f.previous {
        Some((s, until)) => (
            Some(keyring.seal(s.expose().as_bytes(), &f.uid, "previous_secret")),
            Some(*until),
        ),
        None => (None, None),
    };
    let map_unique = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => WebhooksError::AlreadyExists {
            name: f.name.clone(),
        },
        _ => WebhooksError::from(e),
    };
    if new {
        let id = next_id(conn)?;
        conn.execute(
            "INSERT INTO notifications(id, uid, project, name, url, filters, headers, secret, previous_secret,
                 previous_valid_until, enabled, ordered, disabled_reason, failing_since, last_modified,
                 format, content_mode, ordered_by)
             VALUES (?18, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            params![
                f.uid, f.project.as_str(), f.name, f.url, filters, headers, secret, previous, until,
                f.enabled, f.ordered, f.disabled_reason, f.failing_since, f.last_modified,
                f.format.as_str(), f.content_mode.as_str(), f.ordered_by.map(|o| o.as_str()), id
            ],
        )
        .map_err(map_unique)?;
        NOTIFICATION_ID_HIGH.set(conn, &id)?;
        Ok(NotificationId(id))
    } else {
        conn.execute(
            "UPDATE notifications SET name = ?2, url = ?3, filters = ?4, headers = ?5, secret = ?6,
                 previous_secret = ?7, previous_valid_until = ?8, enabled = ?9, ordered = ?10,
                 disabled_reason = ?11, failing_since = ?12, last_modified = ?13, format = ?14,
                 content_mode = ?15, ordered_by = ?16
             WHERE id = ?1",
            params![
                f.id.0,
                f.name,
                f.url,
                filters,
                headers,
                secret,
                previous,
                until,
                f.enabled,
                f.ordered,
                f.disabled_reason,
                f.failing_since,
                f.last_modified,
                f.format.as_str(),
                f.content_mode.as_str(),
                f.ordered_by.map(|o| o.as_str())
            ],
        )
        .map_err(map_unique)?;
        Ok(f.id)
    }
}

/// Re-seals every sealed value under the current key (`all`), or only those
/// under another key, in one transaction. Returns how many were re-sealed.
pub(super) fn reseal(
    conn: &mut Connection,
    keyring: &Keyring,
    all: bool,
) -> Result<usize, WebhooksError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut count = 0;
    {
        let mut st =
            tx.prepare("SELECT id, uid, headers, secret, previous_secret FROM notifications")?;
        type Sealed = [Option<Vec<u8>>; 3];
        let rows: Vec<(i64, String, Sealed)> = st
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, [r.get(2)?, r.get(3)?, r.get(4)?]))
            })?
            .collect::<Result<_, _>>()?;
        for (id, uid, values) in rows {
            for (column, value) in SEALED_COLUMNS.iter().zip(values) {
                let Some(sealed) = value else { continue };
                if !all && !keyring.is_stale(&sealed) {
                    continue;
                }
                let plain = keyring.open(&sealed, &uid, column)?;
                let resealed = keyring.seal(&plain, &uid, column);
                // Column names come from the constant list above.
                tx.execute(
                    &format!("UPDATE notifications SET {column} = ?2 WHERE id = ?1"),
                    params![id, resealed],
                )?;
                count += 1;
            }
        }
    }
    tx.commit()?;
    Ok(count)
}
