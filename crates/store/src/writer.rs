//! The single writer thread: owns the one read-write connection and
//! group-commits.
//!
//! Requests are queued on a bounded channel, of two kinds: members, which
//! join groups, and commands, which run alone. When the thread takes a
//! member it also takes every other member already waiting, up to a total
//! weight of [`Handler::MAX_GROUP`], and hands the group to the handler to
//! commit in one transaction, so a burst of requests costs one commit. A
//! command ends the group and runs next, in queue order. The handler answers
//! each request itself, after its commit.
//!
//! Closing answers what was queued before anyone hears that the writer is
//! closed: the channel is closed to new requests, what it still holds is
//! run (commands may be refused by [`Handler::after_close`]), the WAL is
//! checkpointed and truncated, the connection is closed, and only then is the
//! close answered, so that the database can be opened again at once.
//!
//! A panic in the thread ends the process (see [`Writer::spawn`]).
//!
//! This module must never know what a request does: it never commits
//! anything itself.

use crate::Error;
use rusqlite::Connection;
use std::fmt;
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};

/// Where a command's answer goes.
pub type Reply<T, E = Error> = oneshot::Sender<Result<T, E>>;

/// What a writer does with its requests; it lives on the writer thread and
/// owns the connection.
pub trait Handler: Send + 'static {
    /// A request that joins groups.
    type Member: Send + 'static;

    /// A request that runs alone.
    type Command: Send + 'static;

    /// The largest total weight of one group.
    const MAX_GROUP: usize;

    /// How much a member weighs in a group (e.g. its number of rows).
    fn weight(member: &Self::Member) -> usize;

    /// Commits `group` (in queue order) and answers each member, after the
    /// commit.
    fn commit_group(&mut self, group: Vec<Self::Member>);

    /// Runs a command, and answers it.
    fn run(&mut self, cmd: Self::Command);

    /// A command that was still queued when the writer was asked to close:
    /// returns it to run it as usual, or answers it (e.g. "closed") and
    /// returns `None`. By default everything queued runs; members queued
    /// behind a close are always committed.
    fn after_close(&mut self, cmd: Self::Command) -> Option<Self::Command> {
        Some(cmd)
    }

    /// The read-write connection, checkpointed at close.
    fn connection(&self) -> &Connection;
}

enum Msg<H: Handler> {
    Member(H::Member),
    Command(H::Command),
    Close(Reply<()>),
}

/// The handle to a writer thread. Requests are answered through the
/// [`Reply`] they carry.
pub struct Writer<H: Handler> {
    tx: mpsc::Sender<Msg<H>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl<H: Handler> fmt::Debug for Writer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("closed", &self.tx.is_closed())
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Writer<H> {
    /// Starts the thread `name` with `handler`; at most `queue` requests
    /// wait (senders wait beyond that).
    pub fn spawn(name: &str, queue: usize, handler: H) -> Result<Writer<H>, Error> {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // A writer that panicked leaves its database mid-request and
                // every later write refused as "closed": a server that only
                // answers 503 and cannot stop cleanly. Ending the process
                // instead lets its supervisor start it again on the same
                // files, where everything committed is.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run(handler, rx);
                }));
                if ran.is_err() {
                    tracing::error!("a store writer thread panicked; ending the process");
                    std::process::abort();
                }
            })
            .map_err(|source| Error::Spawn {
                name: name.to_owned(),
                source,
            })?;
        Ok(Writer {
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Requests waiting in the queue (for metrics and tests).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues a member built around its reply, and waits for the answer
    /// (after its group's commit). Fails with [`Error::Closed`] (converted
    /// to `E`) when the writer is closed.
    pub async fn request_grouped<T, E>(
        &self,
        make: impl FnOnce(Reply<T, E>) -> H::Member,
    ) -> Result<T, E>
    where
        E: From<Error>,
    {
        self.send(|reply| Msg::Member(make(reply))).await
    }

    /// Queues a command built around its reply, and waits for the answer.
    /// Fails with [`Error::Closed`] (converted to `E`) when the writer is
    /// closed.
    pub async fn request<T, E>(&self, make: impl FnOnce(Reply<T, E>) -> H::Command) -> Result<T, E>
    where
        E: From<Error>,
    {
        self.send(|reply| Msg::Command(make(reply))).await
    }

    async fn send<T, E>(&self, make: impl FnOnce(Reply<T, E>) -> Msg<H>) -> Result<T, E>
    where
        E: From<Error>,
    {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Runs what is queued, checkpoints, closes the connection, then
    /// answers (with the checkpoint's outcome) and waits for the thread to
    /// end. A close queued behind the first is answered `Ok(())`; one sent
    /// after the thread ended fails with [`Error::Closed`].
    pub async fn close(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        let r = match self.tx.send(Msg::Close(reply)).await {
            Ok(()) => rx.await.unwrap_or(Err(Error::Closed)),
            Err(_) => Err(Error::Closed),
        };
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            // The thread ends right after answering.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        r
    }
}

fn run<H: Handler>(mut handler: H, mut rx: mpsc::Receiver<Msg<H>>) {
    // A request taken while gathering a group that could not join it: the
    // next one to run.
    let mut next: Option<Msg<H>> = None;
    // Who asked to close: answered once what was queued has run (the
    // channel, closed, then drains and ends the loop).
    let mut closing: Vec<Reply<()>> = Vec::new();
    loop {
        let msg = match next.take() {
            Some(msg) => msg,
            None => match rx.blocking_recv() {
                Some(msg) => msg,
                None => break,
            },
        };
        match msg {
            Msg::Close(reply) => {
                rx.close();
                closing.push(reply);
            }
            Msg::Command(cmd) => {
                let cmd = if closing.is_empty() {
                    Some(cmd)
                } else {
                    handler.after_close(cmd)
                };
                if let Some(cmd) = cmd {
                    handler.run(cmd);
                }
            }
            Msg::Member(first) => {
                let mut total = H::weight(&first);
                let mut group = vec![first];
                while total < H::MAX_GROUP {
                    match rx.try_recv() {
                        Ok(Msg::Member(member)) => {
                            total += H::weight(&member);
                            group.push(member);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                handler.commit_group(group);
            }
        }
    }
    let r = handler
        .connection()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(Error::from);
    drop(handler);
    // The first to ask hears how the close went; anyone else asking
    // meanwhile, that it is done.
    let mut first = Some(r);
    for reply in closing {
        let _ = reply.send(first.take().unwrap_or(Ok(())));
    }
}
