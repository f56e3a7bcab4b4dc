//! Notification rows: loading them (opening their sealed values), writing
//! them (sealing), deleting them, and re-sealing under a new key.

use super::outbox::outbox_put;
use super::{Store, WriterCtx};
use crate::crypto::Keyring;
use crate::error::WebhooksError;
use crate::model::NotificationFilter;
use crate::registry::{Fields, Notification};
use crate::signing::SigningSecret;
use cds_events_model::FullEvent;
use rusqlite::{Connection, Row, params};
use std::collections::BTreeMap;

/// A change to a notification's fields, made on the writer with the fields
/// as they are there.
pub(crate) type Edit = Box<dyn FnOnce(&mut Fields) -> Result<(), WebhooksError> + Send>;

/// The event announcing a change, made of the notification as the change
/// leaves it (as it was, for a deletion); written to the outbox in the
/// change's own transaction.
pub(crate) type Announce =
    Box<dyn FnOnce(&Notification) -> Result<FullEvent, WebhooksError> + Send>;

impl Store {
    /// Stores a new notification (`id` 0) with the event `announce` makes of
    /// it, unless its project already has `limit`; returns it with its id.
    pub(crate) async fn create_notification(
        &self,
        fields: Fields,
        limit: usize,
        announce: Announce,
    ) -> Result<Notification, WebhooksError> {
        self.call(move |ctx| {
            // Checked on the writer, where creations are serialized.
            if ctx.registry.list(&fields.project).len() >= limit {
                return Err(WebhooksError::TooMany {
                    project: fields.project.clone(),
                    limit,
                });
            }
            let mut n = build(fields)?;
            let tx = ctx.conn.transaction()?;
            n.id = write_notification(&tx, &ctx.keyring, &n.fields())?;
            outbox_put(&tx, &announce(&n)?)?;
            tx.commit()?;
            ctx.registry.put(n.clone());
            Ok(n)
        })
        .await
    }

    /// Applies `edit` to the notification `name` of `project` and stores the
    /// result with the event `announce` makes of it; returns the
    /// notification as changed.
    pub(crate) async fn update_notification(
        &self,
        project: &str,
        name: &str,
        edit: Edit,
        announce: Announce,
    ) -> Result<Notification, WebhooksError> {
        let (project, name) = (project.to_owned(), name.to_owned());
        self.call(move |ctx| {
            let cur = ctx
                .registry
                .by_name(&project, &name)
                .ok_or_else(|| WebhooksError::no_notification(&project, &name))?;
            let mut fields = cur.fields();
            edit(&mut fields)?;
            let n = build(fields)?;
            let event = announce(&n)?;
            let tx = ctx.conn.transaction()?;
            write_notification(&tx, &ctx.keyring, &n.fields())?;
            outbox_put(&tx, &event)?;
            tx.commit()?;
            ctx.registry.put(n.clone());
            Ok(n)
        })
        .await
    }

    /// Deletes the notification `name` of `project` with the event
    /// `announce` makes of it (its deliveries go later, see
    /// [`delete_notification`]).
    pub(crate) async fn delete_notification(
        &self,
        project: &str,
        name: &str,
        announce: Announce,
    ) -> Result<(), WebhooksError> {
        let (project, name) = (project.to_owned(), name.to_owned());
        self.call(move |ctx| {
            let cur = ctx
                .registry
                .by_name(&project, &name)
                .ok_or_else(|| WebhooksError::no_notification(&project, &name))?;
            let event = announce(&cur)?;
            delete_notification(ctx, cur.id, &event)?;
            ctx.registry.remove(cur.id);
            Ok(())
        })
        .await
    }

    /// Rotates the file-managed master key: the new key is written to the
    /// keyring file beside the old one, every sealed value is re-sealed
    /// with it in one transaction, then the old key leaves the file.
    /// Returns how many values were re-sealed.
    pub(crate) async fn rotate_key(&self) -> Result<usize, WebhooksError> {
        self.call(|ctx| {
            let rotated = ctx.keyring.rotated()?;
            // From here on new values are sealed with the new key, even
            // if re-sealing fails (the old key stays in the file then,
            // and the next start finishes the job).
            ctx.keyring = rotated;
            let n = reseal(&mut ctx.conn, &ctx.keyring, true)?;
            ctx.keyring = ctx.keyring.pruned()?;
            Ok(n)
        })
        .await
    }
}

fn build(f: Fields) -> Result<Notification, WebhooksError> {
    let uid = f.uid.clone();
    Notification::build(f).map_err(|problem| WebhooksError::Compile { uid, problem })
}

const SEALED_COLUMNS: [&str; 3] = ["headers", "secret", "previous_secret"];

pub(super) fn load_all(conn: &Connection, keyring: &Keyring) -> Result<Vec<Fields>, WebhooksError> {
    let mut st = conn.prepare(
        "SELECT id, uid, project, name, url, filters, headers, secret, previous_secret,
                previous_valid_until, enabled, ordered, disabled_reason, failing_since, last_modified
         FROM notifications",
    )?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(fields_of(r, keyring)?);
    }
    Ok(out)
}

fn fields_of(r: &Row<'_>, keyring: &Keyring) -> Result<Fields, WebhooksError> {
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
    Ok(Fields {
        id: r.get(0)?,
        uid,
        project: r.get(2)?,
        name: r.get(3)?,
        url: r.get(4)?,
        filters,
        headers,
        secret,
        previous,
        enabled: r.get(10)?,
        ordered: r.get(11)?,
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

/// Inserts (id 0) or updates a notification row; returns its id.
pub(crate) fn write_notification(
    conn: &Connection,
    keyring: &Keyring,
    f: &Fields,
) -> Result<i64, WebhooksError> {
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
    if f.id == 0 {
        conn.execute(
            "INSERT INTO notifications(uid, project, name, url, filters, headers, secret, previous_secret,
                 previous_valid_until, enabled, ordered, disabled_reason, failing_since, last_modified)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                f.uid, f.project, f.name, f.url, filters, headers, secret, previous, until,
                f.enabled, f.ordered, f.disabled_reason, f.failing_since, f.last_modified
            ],
        )
        .map_err(map_unique)?;
        Ok(conn.last_insert_rowid())
    } else {
        conn.execute(
            "UPDATE notifications SET name = ?2, url = ?3, filters = ?4, headers = ?5, secret = ?6,
                 previous_secret = ?7, previous_valid_until = ?8, enabled = ?9, ordered = ?10,
                 disabled_reason = ?11, failing_since = ?12, last_modified = ?13
             WHERE id = ?1",
            params![
                f.id,
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
                f.last_modified
            ],
        )
        .map_err(map_unique)?;
        Ok(f.id)
    }
}

/// Deletes a notification with its deliveries and their attempts, and puts
/// `event` (its NotificationDeleted) in the outbox, in one transaction.
fn delete_notification(
    ctx: &mut WriterCtx,
    id: i64,
    event: &cds_events_model::FullEvent,
) -> Result<(), WebhooksError> {
    let tx = ctx.conn.transaction()?;
    outbox_put(&tx, event)?;
    let pending: i64 = tx.query_row(
        "SELECT COUNT(*) FROM deliveries WHERE notification_id = ?1 AND status = 'pending'",
        [id],
        |r| r.get(0),
    )?;
    // Its deliveries, however many, go later in small transactions
    // ([`purge_step`]): one long delete would hold the writer that every
    // other notification's results wait for.
    tx.execute(
        "INSERT OR IGNORE INTO purge_queue(notification_id) VALUES (?1)",
        [id],
    )?;
    tx.execute("DELETE FROM notifications WHERE id = ?1", [id])?;
    tx.commit()?;
    ctx.add_pending(-pending);
    Ok(())
}

/// Re-seals every sealed value under the current key (`all`), or only those
/// under another key, in one transaction. Returns how many were re-sealed.
pub(crate) fn reseal(
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
