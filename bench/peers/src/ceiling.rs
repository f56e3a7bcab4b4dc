//! The bare-SQLite ceiling: the same rows (sequence number, id, time, the
//! event's JSON) into one table without any index, committed `--batch` rows
//! at a time by one writer thread, fed by `--connections` threads rendering
//! the events. The connection is opened by the store crate with the log's
//! settings under `process-crash` durability (WAL, `synchronous=NORMAL`,
//! 32 MiB page cache, no automatic checkpoint) and the log's checkpointer
//! beside it (its own connection, `synchronous=OFF`): what is left out is
//! everything the log does beyond storing the rows — validation, the
//! indexes, the id filter, HTTP, authentication.

use crate::{Budget, Load, report};
use anyhow::{Context, bail};
use cds_events_store::{CheckpointOptions, Checkpointer, ConnOptions, Synchronous};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// One row as the writer stores it.
type Row = (String, i64, String);

pub async fn ingest(load: &Load, db: &Path) -> anyhow::Result<()> {
    if db.exists() {
        bail!(
            "{} exists: the ceiling starts from an empty file",
            db.display()
        );
    }
    let conn = cds_events_store::open(
        db,
        &ConnOptions {
            synchronous: Synchronous::Normal,
            cache_kib: Some(32 * 1024),
            ..ConnOptions::default()
        },
    )?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.execute_batch(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL);",
    )?;
    let checkpointer = Checkpointer::spawn(
        db,
        "peers-ceiling-checkpoint",
        CheckpointOptions {
            synchronous: Synchronous::Off,
            ..CheckpointOptions::default()
        },
    )?;
    let templates: Vec<_> = (0..load.connections).map(|w| load.templates(w)).collect();
    let budget = Arc::new(Budget::new(load.events));
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Row>>(load.connections);
    let started = Instant::now();
    let mut producers = Vec::new();
    for mut t in templates {
        let (tx, budget, batch) = (tx.clone(), Arc::clone(&budget), load.batch as u64);
        producers.push(std::thread::spawn(move || {
            loop {
                let n = budget.take(batch);
                if n == 0 {
                    break;
                }
                let rows: Vec<Row> = (0..n)
                    .map(|_| {
                        let mut body = String::with_capacity(700);
                        t.write(&mut body);
                        // `{"id":"` + 36 characters.
                        let id = body.get(7..43).unwrap_or_default().to_owned();
                        (id, now_nanos(), body)
                    })
                    .collect();
                if tx.send(rows).is_err() {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let writer =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, rusqlite::Connection)> {
            let mut conn = conn;
            let mut seq = 0i64;
            for rows in rx {
                let tx = conn.transaction()?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO events (seq, id, ts, body) VALUES (?1, ?2, ?3, ?4)",
                    )?;
                    for (id, ts, body) in &rows {
                        seq += 1;
                        insert.execute(rusqlite::params![seq, id, ts, body])?;
                    }
                }
                tx.commit()?;
            }
            Ok((seq as u64, conn))
        });
    let (stored, conn) = writer.await.context("the writer thread")??;
    let secs = started.elapsed().as_secs_f64();
    for p in producers {
        p.join()
            .map_err(|_| anyhow::anyhow!("a producer panicked"))?;
    }
    checkpointer.stop().await;
    let rows: i64 = conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
    if rows as u64 != stored {
        bail!("{rows} rows in the table, {stored} inserted");
    }
    report("sqlite-bare", stored, secs, None);
    Ok(())
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
