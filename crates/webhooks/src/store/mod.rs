//! `webhooks.db`: notifications (headers and secrets sealed), deliveries,
//! attempts and the dispatcher's log position.
//!
//! One writer thread ([`writer`]) makes every change; a small pool of
//! read-only connections serves the workers' pages of due deliveries and the
//! listings, concurrently with it (WAL readers never block the writer).

mod schema;
pub(crate) mod writer;

use crate::crypto::Keyring;
use crate::error::{WebhooksError, io_err};
use crate::model::{AttemptOut, DeliveryOut, DeliveryStatus, NotificationFilter};
use crate::registry::{Fields, Notification, Registry};
use crate::signing::SigningSecret;
use crate::time::to_datetime;
use cds_events_log::Seq;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, mpsc, oneshot};
use writer::Cmd;
pub(crate) use writer::{AttemptRecord, NewDelivery, RecordAck, WriterCtx};

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "webhooks.db";

const READERS: usize = 4;

#[derive(Debug)]
pub(crate) struct Store {
    tx: mpsc::Sender<Cmd>,
    readers: Arc<Readers>,
    /// Random, fixed at creation: part of every public delivery id, so that
    /// ids from a recreated database never collide with earlier ones.
    epoch: String,
}

#[derive(Debug)]
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    async fn with<T, F>(self: &Arc<Self>, f: F) -> Result<T, WebhooksError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, WebhooksError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| WebhooksError::Closed)?;
        let conn = self.idle.lock().map_err(|_| WebhooksError::Closed)?.pop();
        let me = Arc::clone(self);
        let (conn, r) = tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(c) => c,
                None => match me.open_one() {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                },
            };
            let r = f(&conn);
            (Some(conn), r)
        })
        .await
        .map_err(|e| WebhooksError::Storage(format!("reader task failed: {e}")))?;
        if let (Some(conn), Ok(mut idle)) = (conn, self.idle.lock()) {
            idle.push(conn);
        }
        r
    }

    fn open_one(&self) -> Result<Connection, WebhooksError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }
}

/// A due (or, for ordered notifications, next) delivery.
#[derive(Debug, Clone)]
pub(crate) struct Due {
    pub id: i64,
    pub seq: i64,
    pub event_id: String,
    pub attempts: i64,
    pub tries: i64,
    pub next_attempt_at: i64,
    /// The event's JSON, when fetched with its page.
    pub body: Option<Arc<str>>,
}

impl Store {
    /// Opens (creating) the database, re-seals values written under a
    /// previous key, loads every notification into `registry` and starts the
    /// writer thread.
    pub(crate) fn open(
        data_dir: &Path,
        keyring: Keyring,
        registry: Arc<Registry>,
        disable_after_ms: i64,
    ) -> Result<Store, WebhooksError> {
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let path = data_dir.join(DB_FILE);
        let mut conn = Connection::open(&path)?;
        schema::configure(&conn)?;
        conn.execute_batch(schema::SCHEMA)?;
        match schema::migrate(&conn)? {
            None | Some(1) => {}
            Some(v) if v == schema::SCHEMA_VERSION => {}
            Some(v) => {
                return Err(WebhooksError::Storage(format!(
                    "{} has schema version {v}, this build knows {}",
                    path.display(),
                    schema::SCHEMA_VERSION
                )));
            }
        }
        let epoch = match schema::meta_get::<String>(&conn, "epoch")? {
            Some(e) => e,
            None => {
                let e = random_epoch();
                schema::meta_set(&conn, "epoch", &e)?;
                e
            }
        };
        let resealed = reseal(&mut conn, &keyring, false)?;
        if resealed > 0 {
            tracing::info!(
                values = resealed,
                "re-sealed webhook secrets under the current key"
            );
        }
        let keyring = if keyring.has_previous()
            && matches!(keyring.source, crate::crypto::KeySource::File(_))
        {
            // Every value is under the current key now (an interrupted
            // rotation is finished here).
            keyring.pruned()?
        } else {
            keyring
        };
        for f in load_all(&conn, &keyring)? {
            let uid = f.uid.clone();
            let n = Notification::build(f).map_err(|e| {
                WebhooksError::Storage(format!("notification {uid} does not load: {e}"))
            })?;
            registry.put(n);
        }
        // Rows of deleted notifications waiting for the purge are not pending.
        let pending: i64 = conn.query_row(
            "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'
             AND notification_id NOT IN (SELECT notification_id FROM purge_queue)",
            [],
            |r| r.get(0),
        )?;
        let mut ctx = WriterCtx {
            conn,
            keyring,
            registry,
            disable_after_ms,
            pending: 0,
        };
        ctx.add_pending(pending);
        let (tx, rx) = mpsc::channel(8192);
        std::thread::Builder::new()
            .name("cds-events-webhooks-writer".into())
            .spawn(move || ctx.run(rx))
            .map_err(io_err(&path))?;
        Ok(Store {
            tx,
            readers: Arc::new(Readers {
                path,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(READERS),
            }),
            epoch,
        })
    }

    async fn send<T>(
        &self,
        cmd: Cmd,
        rx: oneshot::Receiver<Result<T, WebhooksError>>,
    ) -> Result<T, WebhooksError> {
        self.tx.send(cmd).await.map_err(|_| WebhooksError::Closed)?;
        rx.await.map_err(|_| WebhooksError::Closed)?
    }

    /// Runs `f` on the writer thread.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T, WebhooksError>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriterCtx) -> Result<T, WebhooksError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd::Call(Box::new(move |ctx: &mut WriterCtx| {
            let _ = reply.send(f(ctx));
        }));
        self.send(cmd, rx).await
    }

    /// Runs `f` on a read connection, off the async runtime.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, WebhooksError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, WebhooksError> + Send + 'static,
    {
        self.readers.with(f).await
    }

    /// Stores the dispatcher's position alone (no delivery to create).
    pub(crate) async fn set_position(&self, position: Seq) -> Result<(), WebhooksError> {
        self.insert_deliveries(Vec::new(), position.0 as i64).await
    }

    pub(crate) async fn insert_deliveries(
        &self,
        rows: Vec<NewDelivery>,
        position: i64,
    ) -> Result<(), WebhooksError> {
        let (reply, rx) = oneshot::channel();
        self.send(
            Cmd::Deliveries {
                rows,
                position,
                reply,
            },
            rx,
        )
        .await
    }

    pub(crate) async fn record(&self, rec: AttemptRecord) -> Result<RecordAck, WebhooksError> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Record { rec, reply }, rx).await
    }

    /// Finishes queued writes and closes the database.
    pub(crate) async fn close(&self) -> Result<(), WebhooksError> {
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Close { reply }, rx).await
    }

    pub(crate) async fn position(&self) -> Result<Option<i64>, WebhooksError> {
        self.read(|c| Ok(schema::meta_get::<i64>(c, "position")?))
            .await
    }

    /// The public id of a delivery (also its `webhook-id`).
    pub(crate) fn delivery_uid(&self, id: i64) -> String {
        format!("msg_{}{id}", self.epoch)
    }

    /// The row id of a public delivery id of this database.
    pub(crate) fn delivery_row(&self, uid: &str) -> Option<i64> {
        uid.strip_prefix("msg_")?
            .strip_prefix(self.epoch.as_str())?
            .parse()
            .ok()
    }
}

fn random_epoch() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

// ---- notifications -------------------------------------------------------

const SEALED_COLUMNS: [&str; 3] = ["headers", "secret", "previous_secret"];

fn load_all(conn: &Connection, keyring: &Keyring) -> Result<Vec<Fields>, WebhooksError> {
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
    let filters: BTreeMap<String, NotificationFilter> = serde_json::from_str(&filters)
        .map_err(|e| WebhooksError::Storage(format!("notification {uid}: filters: {e}")))?;
    let headers = keyring.open(&r.get::<_, Vec<u8>>(6)?, &uid, "headers")?;
    let headers: BTreeMap<String, String> = serde_json::from_slice(&headers)
        .map_err(|e| WebhooksError::Storage(format!("notification {uid}: headers: {e}")))?;
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
        .ok_or_else(|| {
            WebhooksError::Storage(format!("notification {uid}: {column} is not a secret"))
        })
}

/// Inserts (id 0) or updates a notification row; returns its id.
pub(crate) fn write_notification(
    conn: &Connection,
    keyring: &Keyring,
    f: &Fields,
) -> Result<i64, WebhooksError> {
    let filters = serde_json::to_string(&f.filters)
        .map_err(|e| WebhooksError::Storage(format!("filters: {e}")))?;
    let headers = serde_json::to_vec(&f.headers)
        .map_err(|e| WebhooksError::Storage(format!("headers: {e}")))?;
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
pub(crate) fn delete_notification(
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

/// Deliveries (with their attempts) deleted per transaction by the purge.
pub(crate) const PURGE_CHUNK: i64 = 1000;

/// One small transaction of clean-up: up to [`PURGE_CHUNK`] deliveries of a
/// deleted notification, or else of those finished (not pending) and
/// created before `finished_before` (ms). Returns how many deliveries went,
/// and whether there may be more to do.
pub(crate) fn purge_step(
    conn: &mut Connection,
    finished_before: i64,
) -> Result<(u64, bool), WebhooksError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let deleted_notification: Option<i64> = tx
        .query_row("SELECT notification_id FROM purge_queue LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    // Deletes the deliveries `pick` selects (`?1` = `arg`, `?2` = the chunk
    // size) with their attempts; returns how many.
    let delete = |pick: &str, arg: i64| -> rusqlite::Result<usize> {
        tx.execute(
            &format!("DELETE FROM attempts WHERE delivery_id IN ({pick})"),
            params![arg, PURGE_CHUNK],
        )?;
        tx.execute(
            &format!("DELETE FROM deliveries WHERE id IN ({pick})"),
            params![arg, PURGE_CHUNK],
        )
    };
    let n = match deleted_notification {
        Some(nid) => {
            let n = delete(
                "SELECT id FROM deliveries WHERE notification_id = ?1 ORDER BY id LIMIT ?2",
                nid,
            )?;
            if n == 0 {
                tx.execute("DELETE FROM purge_queue WHERE notification_id = ?1", [nid])?;
            }
            (n, true)
        }
        None => {
            // Oldest first: ids grow with creation time, so the scan stops
            // at the first chunk of old finished rows.
            let n = delete(
                "SELECT id FROM deliveries WHERE status != 'pending' AND created_at < ?1
                 ORDER BY id LIMIT ?2",
                finished_before,
            )?;
            (n, n > 0)
        }
    };
    tx.commit()?;
    Ok((n.0 as u64, n.1))
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

// ---- deliveries -----------------------------------------------------------

/// The next deliveries a worker may send: pending, by due time (or, for an
/// ordered notification, by id: sequence order), at most `limit`.
pub(crate) fn pending_page(
    conn: &Connection,
    notification: i64,
    ordered: bool,
    limit: usize,
) -> Result<Vec<Due>, WebhooksError> {
    let sql = if ordered {
        "SELECT id, event_seq, event_id, attempts, tries, next_attempt_at FROM deliveries
         WHERE notification_id = ?1 AND status = 'pending' ORDER BY id LIMIT ?2"
    } else {
        "SELECT id, event_seq, event_id, attempts, tries, next_attempt_at FROM deliveries
         WHERE notification_id = ?1 AND status = 'pending' ORDER BY next_attempt_at, id LIMIT ?2"
    };
    let mut st = conn.prepare_cached(sql)?;
    let rows = st.query_map(params![notification, limit as i64], |r| {
        Ok(Due {
            id: r.get(0)?,
            seq: r.get(1)?,
            event_id: r.get(2)?,
            attempts: r.get(3)?,
            tries: r.get(4)?,
            next_attempt_at: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
            body: None,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) struct DeliveryRow {
    pub id: i64,
    pub event_id: String,
    pub event_seq: i64,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The successful attempt kept in the row: status code, latency,
    /// response excerpt.
    pub ok: Option<(Option<u16>, i64, Option<String>)>,
}

const DELIVERY_COLUMNS: &str =
    "id, event_id, event_seq, status, attempts, next_attempt_at, created_at, updated_at,
     ok_status_code, ok_latency_ms, ok_response";

fn delivery_of(r: &Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: r.get(0)?,
        event_id: r.get(1)?,
        event_seq: r.get(2)?,
        status: r.get(3)?,
        attempts: r.get(4)?,
        next_attempt_at: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        ok: match r.get::<_, Option<i64>>(9)? {
            Some(latency) => Some((r.get(8)?, latency, r.get(10)?)),
            None => None,
        },
    })
}

impl DeliveryRow {
    pub(crate) fn out(self, store: &Store) -> DeliveryOut {
        let status = DeliveryStatus::parse(&self.status).unwrap_or(DeliveryStatus::Pending);
        DeliveryOut {
            id: store.delivery_uid(self.id),
            event_id: self.event_id,
            event_seq: self.event_seq.max(0) as u64,
            status,
            attempts: self.attempts.clamp(0, u32::MAX as i64) as u32,
            next_attempt_at: (status == DeliveryStatus::Pending)
                .then(|| self.next_attempt_at.map(to_datetime))
                .flatten(),
            created_at: to_datetime(self.created_at),
            updated_at: to_datetime(self.updated_at),
        }
    }
}

/// A notification's deliveries with id below `before`, newest first, of the
/// given statuses: one index range per status, merged, so each costs at most
/// `limit` rows however many other deliveries there are.
pub(crate) fn list_deliveries(
    conn: &Connection,
    notification: i64,
    statuses: &[DeliveryStatus],
    before: i64,
    limit: usize,
) -> Result<Vec<DeliveryRow>, WebhooksError> {
    // One snapshot for all the ranges: a delivery changing status between
    // two of them would otherwise be listed twice, or not at all.
    let tx = conn.unchecked_transaction()?;
    let mut all = Vec::new();
    {
        let mut st = tx.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE notification_id = ?1 AND status = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4"
        ))?;
        for s in statuses {
            let rows = st.query_map(
                params![notification, s.as_str(), before, limit as i64],
                delivery_of,
            )?;
            for r in rows {
                all.push(r?);
            }
        }
    }
    tx.finish()?;
    all.sort_by_key(|r| std::cmp::Reverse(r.id));
    all.truncate(limit);
    Ok(all)
}

pub(crate) fn get_delivery(
    conn: &Connection,
    notification: i64,
    id: i64,
) -> Result<Option<DeliveryRow>, WebhooksError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1 AND notification_id = ?2"
        ))?
        .query_row(params![id, notification], delivery_of)
        .optional()?)
}

/// Every attempt of a delivery, in order: its `attempts` rows, then the
/// success kept in its row, if any.
pub(crate) fn list_attempts(
    conn: &Connection,
    delivery: &DeliveryRow,
) -> Result<Vec<AttemptOut>, WebhooksError> {
    let mut st = conn.prepare_cached(
        "SELECT n, at, status_code, latency_ms, error, response FROM attempts
         WHERE delivery_id = ?1 ORDER BY n",
    )?;
    let rows = st.query_map([delivery.id], |r| {
        Ok(AttemptOut {
            n: r.get::<_, i64>(0)?.clamp(0, u32::MAX as i64) as u32,
            at: to_datetime(r.get(1)?),
            status_code: r.get(2)?,
            latency_ms: r.get::<_, i64>(3)?.max(0) as u64,
            error: r.get(4)?,
            response: r.get(5)?,
        })
    })?;
    let mut all: Vec<AttemptOut> = rows.collect::<Result<_, _>>()?;
    if let Some((status_code, latency, response)) = &delivery.ok {
        all.push(AttemptOut {
            n: delivery.attempts.clamp(0, u32::MAX as i64) as u32,
            at: to_datetime(delivery.updated_at),
            status_code: *status_code,
            latency_ms: (*latency).max(0) as u64,
            error: None,
            response: response.clone(),
        });
    }
    Ok(all)
}

/// Puts an event in the outbox (see [`crate::Inner::flush_outbox`]).
pub(crate) fn outbox_put(
    conn: &Connection,
    event: &cds_events_model::FullEvent,
) -> Result<(), WebhooksError> {
    conn.prepare_cached("INSERT INTO outbox(event) VALUES (?1)")?
        .execute([event.to_json()])?;
    Ok(())
}

/// The oldest events of the outbox, with their row ids.
pub(crate) fn outbox_page(
    conn: &Connection,
    limit: usize,
) -> Result<Vec<(i64, String)>, WebhooksError> {
    let mut st = conn.prepare_cached("SELECT id, event FROM outbox ORDER BY id LIMIT ?1")?;
    let rows = st.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn outbox_remove(conn: &Connection, ids: &[i64]) -> Result<(), WebhooksError> {
    let mut st = conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
    for id in ids {
        st.execute([id])?;
    }
    Ok(())
}

/// See [`crate::Webhooks::retention_hold`]. Deliveries are created in log
/// order, so a notification's oldest pending delivery (lowest id, found in
/// `deliveries_by_status`) has its oldest pending event.
pub(crate) fn retention_hold(
    conn: &Connection,
    notifications: &[i64],
) -> Result<Option<Seq>, WebhooksError> {
    let mut hold: Option<i64> = schema::meta_get::<i64>(conn, "position")?.map(|p| p + 1);
    let mut st = conn.prepare_cached(
        "SELECT event_seq FROM deliveries WHERE notification_id = ?1 AND status = 'pending'
         ORDER BY id LIMIT 1",
    )?;
    for id in notifications {
        if let Some(seq) = st.query_row([id], |r| r.get::<_, i64>(0)).optional()? {
            hold = Some(hold.map_or(seq, |h| h.min(seq)));
        }
    }
    Ok(hold.map(|s| Seq(s.max(0) as u64)))
}

/// Moves a success kept in a delivery's row into `attempts`, before the row
/// is reused by a redelivery.
pub(crate) fn keep_success_as_attempt(
    conn: &Connection,
    notification: i64,
    delivery: i64,
) -> Result<(), WebhooksError> {
    conn.execute(
        "INSERT OR IGNORE INTO attempts(delivery_id, n, at, status_code, latency_ms, error, response)
         SELECT id, attempts, updated_at, ok_status_code, ok_latency_ms, NULL, ok_response
         FROM deliveries WHERE id = ?1 AND notification_id = ?2 AND ok_latency_ms IS NOT NULL",
        params![delivery, notification],
    )?;
    conn.execute(
        "UPDATE deliveries SET ok_status_code = NULL, ok_latency_ms = NULL, ok_response = NULL
         WHERE id = ?1 AND notification_id = ?2 AND ok_latency_ms IS NOT NULL",
        params![delivery, notification],
    )?;
    Ok(())
}
