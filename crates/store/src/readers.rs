//! A bounded pool of read-only connections.

use crate::Error;
use crate::conn::{ConnOptions, open_read_only};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// At most `size` read-only connections, opened on first use and kept.
/// In WAL mode they read concurrently with the writer and never block it.
/// Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct ReaderPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    opts: ConnOptions,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: a use waits for a free one.
    permits: Semaphore,
}

impl ReaderPool {
    /// A pool of `size` (at least one) connections to `path`, an existing
    /// database.
    pub fn new(path: &Path, size: usize, opts: ConnOptions) -> ReaderPool {
        ReaderPool {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                opts,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(size.max(1)),
            }),
        }
    }

    /// Runs `f` on a pooled connection, on a blocking thread (a query never
    /// holds an async worker). Fails with [`Error::Closed`] once the pool is
    /// closed.
    pub async fn with<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Error> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Closed)?;
        let conn = self.inner.idle.lock().map_err(|_| Error::Closed)?.pop();
        let inner = Arc::clone(&self.inner);
        let (conn, r) = tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(c) => c,
                None => match open_read_only(&inner.path, &inner.opts) {
                    Ok(c) => c,
                    Err(e) => return (None, Err(E::from(e))),
                },
            };
            let r = f(&conn);
            (Some(conn), r)
        })
        .await
        .map_err(Error::Task)?;
        if let (Some(conn), Ok(mut idle)) = (conn, self.inner.idle.lock())
            && !self.inner.permits.is_closed()
        {
            idle.push(conn);
        }
        r
    }

    /// Refuses new uses and closes the idle connections (those in use close
    /// when their use ends).
    pub fn close(&self) {
        self.inner.permits.close();
        if let Ok(mut idle) = self.inner.idle.lock() {
            idle.clear();
        }
    }
}
