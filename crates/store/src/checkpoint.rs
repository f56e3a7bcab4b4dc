//! WAL checkpoints on their own thread, off the writer's path.

use crate::Error;
use crate::conn::{ConnOptions, Synchronous, open};
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A checkpoint pass this long is logged (at debug level).
const SLOW: Duration = Duration::from_millis(20);

/// How the checkpointer works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// Pause between two passes.
    pub interval: Duration,
    /// With more than this in the WAL (the frames written since it last
    /// started over, not the file's size: the file does not shrink), the
    /// WAL is checkpointed and restarted even if that briefly holds the
    /// writer back (otherwise a pass never waits for it).
    pub max_wal_bytes: u64,
    /// How long a restart may wait for readers still on the WAL, holding
    /// the writer back meanwhile, before it gives up until the next pass.
    pub restart_wait: Duration,
    /// The checkpointer's own `synchronous` level: whether copying pages
    /// into the database waits for the disk.
    pub synchronous: Synchronous,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions {
            interval: Duration::from_millis(100),
            max_wal_bytes: 256 * 1024 * 1024,
            restart_wait: Duration::from_millis(50),
            synchronous: Synchronous::Full,
        }
    }
}

/// Copies committed pages from the WAL into the database every
/// [`CheckpointOptions::interval`], so that the writer never pays for
/// checkpoints inline (its connection should set `wal_autocheckpoint=0`). A
/// page rewritten by many commits between two passes is copied once.
///
/// A pass is `PASSIVE`: it waits for no one. Under steady writes the WAL is
/// never wholly copied at the moment a write starts, so it never starts
/// over by itself; once it holds [`CheckpointOptions::max_wal_bytes`], a
/// `PASSIVE` pass is followed at once by a `RESTART`, which holds the writer
/// back only to copy what was committed during that pass and to wait (at
/// most [`CheckpointOptions::restart_wait`]) for the readers still on the
/// WAL.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What a pass saw: whether it could not finish (readers or the writer in
/// the way), and the frames in the WAL.
struct Pass {
    busy: bool,
    frames: u64,
}

/// One `PRAGMA wal_checkpoint(mode)`, timed (`cds_events_checkpoint_seconds`).
fn checkpoint(conn: &Connection, thread: &str, mode: &'static str) -> rusqlite::Result<Pass> {
    let started = Instant::now();
    let pass = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok(Pass {
            busy: r.get::<_, i64>(0)? != 0,
            frames: r.get::<_, i64>(1)?.max(0) as u64,
        })
    });
    let took = started.elapsed();
    metrics::histogram!("cds_events_checkpoint_seconds", "thread" => thread.to_owned(), "mode" => mode)
        .record(took.as_secs_f64());
    if took >= SLOW {
        tracing::debug!(
            thread,
            mode,
            took_ms = took.as_millis() as u64,
            "slow checkpoint pass"
        );
    }
    pass
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
                // Only a RESTART waits (PASSIVE never does).
                busy_timeout: opts.restart_wait,
                ..ConnOptions::default()
            },
        )?;
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        let frame_bytes = page.max(0) as u64 + 24;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread_name = name.to_owned();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Passes failed in a row: a full disk fails every pass until
                // space is freed, and one warning says so, not ten a second.
                let mut failing = 0u64;
                // The frames in the WAL after the last pass.
                let mut frames = 0u64;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(opts.interval);
                    let big = frames.saturating_mul(frame_bytes) > opts.max_wal_bytes;
                    let mut mode = "PASSIVE";
                    let mut pass = checkpoint(&conn, &thread_name, mode);
                    if big && pass.is_ok() {
                        mode = "RESTART";
                        pass = checkpoint(&conn, &thread_name, mode);
                    }
                    match pass {
                        Err(e) if failing == 0 => {
                            failing = 1;
                            tracing::warn!(error = %e, mode, "checkpoint failed; retrying quietly");
                        }
                        Err(e) => {
                            failing += 1;
                            tracing::debug!(error = %e, mode, failing, "checkpoint failed again");
                        }
                        Ok(p) => {
                            if failing > 0 {
                                tracing::info!(failed_passes = failing, "checkpoints work again");
                                failing = 0;
                            }
                            // A finished restart: the next write starts the
                            // WAL over.
                            frames = if mode == "RESTART" && !p.busy {
                                0
                            } else {
                                p.frames
                            };
                        }
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
