//! WAL checkpoints on their own thread, off the writer's path.

use crate::Error;
use crate::conn::{ConnOptions, Synchronous, open, wal_path};
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How the checkpointer works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// Pause between two passes.
    pub interval: Duration,
    /// Above this size the WAL is checkpointed and restarted even if that
    /// briefly holds the writer back (otherwise a pass never waits for it).
    pub max_wal_bytes: u64,
    /// The checkpointer's own `synchronous` level: whether copying pages
    /// into the database waits for the disk.
    pub synchronous: Synchronous,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions {
            interval: Duration::from_millis(100),
            max_wal_bytes: 256 * 1024 * 1024,
            synchronous: Synchronous::Full,
        }
    }
}

/// Copies committed pages from the WAL into the database every
/// [`CheckpointOptions::interval`], so that the writer never pays for
/// checkpoints inline (its connection should set `wal_autocheckpoint=0`). A
/// page rewritten by many commits between two passes is copied once.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Checkpointer {
    /// Starts the thread `name` on its own connection to `path`.
    pub fn spawn(path: &Path, name: &str, opts: CheckpointOptions) -> Result<Checkpointer, Error> {
        let conn = open(
            path,
            &ConnOptions {
                synchronous: opts.synchronous,
                foreign_keys: false,
                temp_store_memory: false,
                ..ConnOptions::default()
            },
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let wal = wal_path(path);
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Passes failed in a row: a full disk fails every pass until
                // space is freed, and one warning says so, not ten a second.
                let mut failing = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(opts.interval);
                    let big = std::fs::metadata(&wal)
                        .map(|m| m.len() > opts.max_wal_bytes)
                        .unwrap_or(false);
                    let mode = if big { "RESTART" } else { "PASSIVE" };
                    match conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
                    {
                        Err(e) if failing == 0 => {
                            failing = 1;
                            tracing::warn!(error = %e, mode, "checkpoint failed; retrying quietly");
                        }
                        Err(e) => {
                            failing += 1;
                            tracing::debug!(error = %e, mode, failing, "checkpoint failed again");
                        }
                        Ok(()) if failing > 0 => {
                            tracing::info!(failed_passes = failing, "checkpoints work again");
                            failing = 0;
                        }
                        Ok(()) => {}
                    }
                }
            })
            .map_err(|source| Error::Spawn {
                name: name.to_owned(),
                source,
            })?;
        Ok(Checkpointer {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread and waits for it (at most one pass).
    pub async fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
