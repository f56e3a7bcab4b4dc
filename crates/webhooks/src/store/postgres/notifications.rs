//! Notification rows: loading them (opening their sealed values), writing
//! them (sealing), the changes with their events, deletion, re-sealing
//! under a new key, and the announcement other instances hear.

use super::Shared;
use super::deliveries::outbox_put;
use super::schema::CHANNEL;
use crate::crypto::Keyring;
use crate::error::WebhooksError;
use crate::model::{Actor, NotificationFilter};
use crate::signing::SigningSecret;
use crate::store::{
    Edit, NotificationId, NotificationRecord, stored_format, stored_ordered_by, stored_project,
};
use cds_events_model::{EventType, ProjectKey};
use cds_events_store::pg::tokio_postgres::error::SqlState;
use cds_events_store::pg::tokio_postgres::{GenericClient, Row, Transaction};
use std::collections::BTreeMap;

const SEALED_COLUMNS: [&str; 3] = ["headers", "secret", "previous_secret"];

const COLUMNS: &str = "id, uid, project, name, url, filters, headers, secret, previous_secret,
     previous_valid_until, enabled, ordered, disabled_reason, failing_since, last_modified,
     format, content_mode, ordered_by";

/// The first key of the two-key advisory locks a creation takes per project
/// (`pg_advisory_xact_lock(PROJECT_LOCK, hashtext(project))`): "wh". The
/// two-key space does not overlap the one-key space of the migrations' lock.
const PROJECT_LOCK: i32 = 0x7768;

/// The unique constraint on (project, name).
const NAME_CONSTRAINT: &str = "webhook_notifications_project_name_key";

impl Shared {
    pub(super) async fn create_notification(
        &self,
        mut n: NotificationRecord,
        limit: usize,
        actor: &Actor,
    ) -> Result<NotificationRecord, WebhooksError> {
        let mut ordered = self.ordered.lock().await;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // Creations in this project, on every instance, wait here: the
        // count below cannot be passed by a concurrent one.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&PROJECT_LOCK, &n.project.as_str()],
        )
        .await?;
        let count: i64 = tx
            .query_one(
                "SELECT count(*) FROM webhook_notifications WHERE project = $1",
                &[&n.project.as_str()],
            )
            .await?
            .try_get(0)?;
        if count >= limit as i64 {
            return Err(WebhooksError::TooMany {
                project: n.project,
                limit,
            });
        }
        n.id = write_notification(&tx, &ordered.keyring, &n, true).await?;
        outbox_put(&tx, &n.event(EventType::NotificationCreated, actor)?).await?;
        announce(&tx, n.id).await?;
        tx.commit().await?;
        ordered.put(self.mirror.as_ref(), n.clone());
        Ok(n)
    }

    pub(super) async fn update_notification(
        &self,
        project: &ProjectKey,
        name: &str,
        edit: Edit,
        actor: &Actor,
    ) -> Result<NotificationRecord, WebhooksError> {
        let mut ordered = self.ordered.lock().await;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // Locked: a change on another instance waits, then edits this one.
        let mut n = load_one(
            &*tx,
            &ordered.keyring,
            Which::Named(project.as_str(), name),
            Lock::Change,
        )
        .await?
        .ok_or_else(|| WebhooksError::no_notification(project, name))?;
        edit(&mut n)?;
        write_notification(&tx, &ordered.keyring, &n, false).await?;
        outbox_put(&tx, &n.event(EventType::NotificationUpdated, actor)?).await?;
        announce(&tx, n.id).await?;
        tx.commit().await?;
        ordered.put(self.mirror.as_ref(), n.clone());
        Ok(n)
    }

    /// Deletes a notification and puts its NotificationDeleted in the
    /// outbox, in one transaction. Its deliveries go later, in small
    /// transactions (`purge_step`).
    pub(super) async fn delete_notification(
        &self,
        project: &ProjectKey,
        name: &str,
        actor: &Actor,
    ) -> Result<(), WebhooksError> {
        let mut ordered = self.ordered.lock().await;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let n = load_one(
            &*tx,
            &ordered.keyring,
            Which::Named(project.as_str(), name),
            Lock::Delete,
        )
        .await?
        .ok_or_else(|| WebhooksError::no_notification(project, name))?;
        outbox_put(&tx, &n.event(EventType::NotificationDeleted, actor)?).await?;
        tx.execute(
            "INSERT INTO webhook_purge_queue (notification_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&n.id.0],
        )
        .await?;
        tx.execute(
            "DELETE FROM webhook_notifications WHERE id = $1",
            &[&n.id.0],
        )
        .await?;
        announce(&tx, n.id).await?;
        tx.commit().await?;
        ordered.remove(self.mirror.as_ref(), n.id);
        Ok(())
    }

    /// Rotates a file-managed master key (see
    /// [`NotificationStore::rotate_key`](crate::store::NotificationStore::rotate_key));
    /// a configured one is refused by the keyring, with how to rotate it.
    pub(super) async fn rotate_key(&self) -> Result<usize, WebhooksError> {
        // Held throughout: no change seals a value in between.
        let mut ordered = self.ordered.lock().await;
        let rotated = ordered.keyring.rotated()?;
        // From here on new values are sealed with the new key, even if
        // re-sealing fails (the old key stays in the file then, and the next
        // start finishes the job).
        ordered.keyring = rotated;
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let n = reseal(&tx, &ordered.keyring, true).await?;
        tx.commit().await?;
        ordered.keyring = ordered.keyring.pruned()?;
        Ok(n)
    }
}

/// Tells every instance's listener that notification `id` changed, once the
/// transaction commits (and not at all if it does not).
pub(super) async fn announce(
    tx: &Transaction<'_>,
    id: NotificationId,
) -> Result<(), WebhooksError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &id.0.to_string()])
        .await?;
    Ok(())
}

/// Which notification to open.
pub(super) enum Which<'a> {
    Named(&'a str, &'a str),
    Id(NotificationId),
}

/// How a transaction that reads a notification locks its row.
pub(super) enum Lock {
    /// Not at all: a read.
    None,
    /// For a change of its values: other changes wait; a batch of
    /// deliveries or results (which holds `FOR KEY SHARE`) does not.
    Change,
    /// For its deletion: everything that locks it waits.
    Delete,
}

/// One notification, opened, its row locked as `lock` says.
pub(super) async fn load_one<C: GenericClient + Sync>(
    c: &C,
    keyring: &Keyring,
    which: Which<'_>,
    lock: Lock,
) -> Result<Option<NotificationRecord>, WebhooksError> {
    let lock = match lock {
        Lock::None => "",
        Lock::Change => "FOR NO KEY UPDATE",
        Lock::Delete => "FOR UPDATE",
    };
    let row = match which {
        Which::Named(project, name) => {
            c.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM webhook_notifications
                     WHERE project = $1 AND name = $2 {lock}"
                ),
                &[&project, &name],
            )
            .await?
        }
        Which::Id(id) => {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM webhook_notifications WHERE id = $1 {lock}"),
                &[&id.0],
            )
            .await?
        }
    };
    row.map(|r| record_of(&r, keyring)).transpose()
}

/// Every notification, opened.
pub(super) async fn load_all<C: GenericClient + Sync>(
    c: &C,
    keyring: &Keyring,
) -> Result<Vec<NotificationRecord>, WebhooksError> {
    c.query(
        &format!("SELECT {COLUMNS} FROM webhook_notifications ORDER BY id"),
        &[],
    )
    .await?
    .iter()
    .map(|r| record_of(r, keyring))
    .collect()
}

fn record_of(r: &Row, keyring: &Keyring) -> Result<NotificationRecord, WebhooksError> {
    let uid: String = r.try_get(1)?;
    let filters: String = r.try_get(5)?;
    let filters: BTreeMap<String, NotificationFilter> =
        serde_json::from_str(&filters).map_err(|e| WebhooksError::Unreadable {
            uid: uid.clone(),
            problem: format!("filters: {e}"),
        })?;
    let headers = keyring.open(r.try_get::<_, &[u8]>(6)?, &uid, "headers")?;
    let headers: BTreeMap<String, String> =
        serde_json::from_slice(&headers).map_err(|e| WebhooksError::Unreadable {
            uid: uid.clone(),
            problem: format!("headers: {e}"),
        })?;
    let secret = open_secret(keyring, r.try_get(7)?, &uid, "secret")?;
    let previous = match (
        r.try_get::<_, Option<&[u8]>>(8)?,
        r.try_get::<_, Option<i64>>(9)?,
    ) {
        (Some(b), Some(until)) => Some((open_secret(keyring, b, &uid, "previous_secret")?, until)),
        _ => None,
    };
    let (format, content_mode) = stored_format(&uid, r.try_get(15)?, r.try_get(16)?)?;
    let project = stored_project(&uid, r.try_get(2)?)?;
    let ordered_by = stored_ordered_by(&uid, r.try_get(17)?)?;
    Ok(NotificationRecord {
        id: NotificationId(r.try_get(0)?),
        uid,
        project,
        name: r.try_get(3)?,
        url: r.try_get(4)?,
        filters,
        headers,
        secret,
        previous,
        enabled: r.try_get(10)?,
        ordered: r.try_get(11)?,
        ordered_by,
        format,
        content_mode,
        disabled_reason: r.try_get(12)?,
        failing_since: r.try_get(13)?,
        last_modified: r.try_get(14)?,
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
async fn write_notification(
    tx: &Transaction<'_>,
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
    let written = if new {
        tx.query_one(
            "INSERT INTO webhook_notifications (uid, project, name, url, filters, headers, secret,
                 previous_secret, previous_valid_until, enabled, ordered, disabled_reason,
                 failing_since, last_modified, format, content_mode, ordered_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             RETURNING id",
            &[
                &f.uid,
                &f.project.as_str(),
                &f.name,
                &f.url,
                &filters,
                &headers,
                &secret,
                &previous,
                &until,
                &f.enabled,
                &f.ordered,
                &f.disabled_reason,
                &f.failing_since,
                &f.last_modified,
                &f.format.as_str(),
                &f.content_mode.as_str(),
                &f.ordered_by.map(|o| o.as_str()),
            ],
        )
        .await
        .and_then(|r| r.try_get(0))
    } else {
        tx.execute(
            "UPDATE webhook_notifications SET name = $2, url = $3, filters = $4, headers = $5,
                 secret = $6, previous_secret = $7, previous_valid_until = $8, enabled = $9,
                 ordered = $10, disabled_reason = $11, failing_since = $12, last_modified = $13,
                 format = $14, content_mode = $15, ordered_by = $16
             WHERE id = $1",
            &[
                &f.id.0,
                &f.name,
                &f.url,
                &filters,
                &headers,
                &secret,
                &previous,
                &until,
                &f.enabled,
                &f.ordered,
                &f.disabled_reason,
                &f.failing_since,
                &f.last_modified,
                &f.format.as_str(),
                &f.content_mode.as_str(),
                &f.ordered_by.map(|o| o.as_str()),
            ],
        )
        .await
        .map(|_| f.id.0)
    };
    match written {
        Ok(id) => Ok(NotificationId(id)),
        Err(e)
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                && e.as_db_error().and_then(|d| d.constraint()) == Some(NAME_CONSTRAINT) =>
        {
            Err(WebhooksError::AlreadyExists {
                name: f.name.clone(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Re-seals every sealed value under the current key (`all`), or only those
/// under another key, inside the caller's transaction; the rows are locked,
/// so instances starting together re-seal each value once. Returns how many
/// were re-sealed.
pub(super) async fn reseal(
    tx: &Transaction<'_>,
    keyring: &Keyring,
    all: bool,
) -> Result<usize, WebhooksError> {
    let rows = tx
        .query(
            "SELECT id, uid, headers, secret, previous_secret FROM webhook_notifications
             ORDER BY id FOR UPDATE",
            &[],
        )
        .await?;
    let mut count = 0;
    for r in rows {
        let id: i64 = r.try_get(0)?;
        let uid: String = r.try_get(1)?;
        for (i, column) in SEALED_COLUMNS.iter().enumerate() {
            let Some(sealed) = r.try_get::<_, Option<&[u8]>>(2 + i)? else {
                continue;
            };
            if !all && !keyring.is_stale(sealed) {
                continue;
            }
            let plain = keyring.open(sealed, &uid, column)?;
            let resealed = keyring.seal(&plain, &uid, column);
            // Column names come from the constant list above.
            tx.execute(
                &format!("UPDATE webhook_notifications SET {column} = $2 WHERE id = $1"),
                &[&id, &resealed],
            )
            .await?;
            count += 1;
        }
    }
    Ok(count)
}
