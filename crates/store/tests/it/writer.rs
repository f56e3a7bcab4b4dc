use crate::wait_until;
use cds_events_store::{ConnOptions, Error, Handler, ReaderPool, Reply, Writer, open, wal_path};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};

/// An insert: joins groups.
type Insert = (i64, Reply<()>);

/// Run alone: `Gate` holds the thread until the test lets it go (so that
/// requests pile up behind it); `Count` counts the rows.
enum Cmd {
    Gate {
        entered: tokio::sync::oneshot::Sender<()>,
        open: std_mpsc::Receiver<()>,
        reply: Reply<()>,
    },
    Count {
        reply: Reply<i64>,
    },
}

/// What the thread did, in order: `[n]` per committed group of `n` inserts,
/// `"count"` per count.
type Journal = Arc<Mutex<Vec<String>>>;

struct Test {
    conn: Connection,
    journal: Journal,
    /// Refuse counts queued behind a close.
    refuse_after_close: bool,
}

impl Handler for Test {
    type Member = Insert;
    type Command = Cmd;
    const MAX_GROUP: usize = 3;

    fn weight(_: &Insert) -> usize {
        1
    }

    fn commit_group(&mut self, group: Vec<Insert>) {
        let mut replies = Vec::new();
        let tx = self.conn.transaction().expect("tx");
        for (value, reply) in group {
            assert!(value >= 0, "the test asked this writer to panic");
            tx.execute("INSERT INTO t VALUES (?1)", [value])
                .expect("insert");
            replies.push(reply);
        }
        tx.commit().expect("commit");
        self.log(format!("[{}]", replies.len()));
        for reply in replies {
            let _ = reply.send(Ok(()));
        }
    }

    fn run(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Gate {
                entered,
                open,
                reply,
            } => {
                let _ = entered.send(());
                let _ = open.recv();
                let _ = reply.send(Ok(()));
            }
            Cmd::Count { reply } => {
                self.log("count".into());
                let _ = reply.send(count(&self.conn).map_err(Error::from));
            }
        }
    }

    fn after_close(&mut self, cmd: Cmd) -> Option<Cmd> {
        match cmd {
            Cmd::Count { reply } if self.refuse_after_close => {
                let _ = reply.send(Err(Error::Closed));
                None
            }
            other => Some(other),
        }
    }

    fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl Test {
    fn log(&self, what: String) {
        self.journal.lock().expect("journal").push(what);
    }
}

fn count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
}

struct World {
    _dir: tempfile::TempDir,
    path: PathBuf,
    writer: Arc<Writer<Test>>,
    journal: Journal,
}

fn start(refuse_after_close: bool) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let conn = open(&path, &ConnOptions::default()).expect("open");
    conn.execute_batch("CREATE TABLE t (v INTEGER)")
        .expect("table");
    let journal = Journal::default();
    let test = Test {
        conn,
        journal: journal.clone(),
        refuse_after_close,
    };
    let writer = Arc::new(Writer::spawn("test-writer", 64, test).expect("spawn"));
    World {
        _dir: dir,
        path,
        writer,
        journal,
    }
}

impl World {
    /// Holds the writer until the returned sender is used or dropped.
    async fn hold(
        &self,
    ) -> (
        std_mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<(), Error>>,
    ) {
        let (tx, open) = std_mpsc::channel();
        let (entered, running) = tokio::sync::oneshot::channel();
        let writer = self.writer.clone();
        let gate = tokio::spawn(async move {
            writer
                .request(|reply| Cmd::Gate {
                    entered,
                    open,
                    reply,
                })
                .await
        });
        running.await.expect("the gate runs");
        (tx, gate)
    }

    /// Queues an insert behind what is queued; its answer comes through the
    /// handle.
    async fn insert(&self, value: i64) -> tokio::task::JoinHandle<Result<(), Error>> {
        let writer = self.writer.clone();
        self.queue(async move { writer.request_grouped(|reply| (value, reply)).await })
            .await
    }

    /// Queues a count behind what is queued.
    async fn count(&self) -> tokio::task::JoinHandle<Result<i64, Error>> {
        let writer = self.writer.clone();
        self.queue(async move { writer.request(|reply| Cmd::Count { reply }).await })
            .await
    }

    /// Asks to close, behind what is queued.
    async fn close(&self) -> tokio::task::JoinHandle<Result<(), Error>> {
        let writer = self.writer.clone();
        self.queue(async move { writer.close().await }).await
    }

    /// Sends a request from a task of its own, and waits until it is queued
    /// (so that requests queue in the order the test makes them).
    async fn queue<T: Send + 'static>(
        &self,
        request: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        let n = self.writer.queued() + 1;
        let task = tokio::spawn(request);
        let writer = self.writer.clone();
        wait_until(&format!("{n} requests queued"), || writer.queued() == n).await;
        task
    }

    fn journal(&self) -> Vec<String> {
        self.journal.lock().expect("journal").clone()
    }
}

/// Waits for every insert to be answered, each successfully.
async fn answered(inserts: Vec<tokio::task::JoinHandle<Result<(), Error>>>) {
    for i in inserts {
        i.await.expect("task").expect("insert");
    }
}

fn rows(path: &Path) -> i64 {
    count(&Connection::open(path).expect("open")).expect("count")
}

/// Queues `n` inserts (of 0 to n - 1) behind what is queued.
async fn inserts(w: &World, n: i64) -> Vec<tokio::task::JoinHandle<Result<(), Error>>> {
    let mut out = Vec::new();
    for v in 0..n {
        out.push(w.insert(v).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_requests_commit_as_one_group_and_hear_after_the_commit() {
    let w = start(false);
    let (release, gate) = w.hold().await;
    let queued = inserts(&w, 3).await;
    release.send(()).expect("release");
    gate.await.expect("task").expect("gate");
    let readers = ReaderPool::new(&w.path, 1, ConnOptions::default());
    for i in queued {
        i.await.expect("task").expect("insert");
        // Answered: committed, visible to any reader.
        let seen = readers
            .with(|c| Ok::<_, Error>(count(c)?))
            .await
            .expect("read");
        assert_eq!(seen, 3);
    }
    assert_eq!(w.journal(), vec!["[3]"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_stops_at_max_group() {
    let w = start(false);
    let (release, _gate) = w.hold().await;
    let queued = inserts(&w, 7).await;
    release.send(()).expect("release");
    answered(queued).await;
    assert_eq!(w.journal(), vec!["[3]", "[3]", "[1]"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_ends_the_group_and_keeps_its_place() {
    let w = start(false);
    let (release, _gate) = w.hold().await;
    let first = inserts(&w, 2).await;
    let counted = w.count().await;
    let last = w.insert(9).await;
    release.send(()).expect("release");
    answered(first).await;
    assert_eq!(counted.await.expect("task").expect("count"), 2);
    answered(vec![last]).await;
    assert_eq!(w.journal(), vec!["[2]", "count", "[1]"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_runs_what_was_queued_then_answers() {
    let w = start(false);
    let (release, _gate) = w.hold().await;
    let before = inserts(&w, 2).await;
    let close = w.close().await;
    // Queued behind the close, before the writer saw it: run too.
    let after = w.insert(5).await;
    let counted = w.count().await;
    release.send(()).expect("release");
    close.await.expect("task").expect("close");
    answered(before).await;
    answered(vec![after]).await;
    assert_eq!(counted.await.expect("task").expect("count"), 3);
    assert_eq!(rows(&w.path), 3);
    // Checkpointed and truncated at close.
    let wal = std::fs::metadata(wal_path(&w.path)).map(|m| m.len());
    assert_eq!(wal.unwrap_or(0), 0);
    // Closed for good.
    let late = w.writer.request_grouped(|reply| (6, reply)).await;
    assert!(matches!(late, Err(Error::Closed)), "{late:?}");
    assert!(matches!(w.writer.close().await, Err(Error::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_close_may_refuse_commands_queued_behind_the_close() {
    let w = start(true);
    let (release, _gate) = w.hold().await;
    let close = w.close().await;
    let insert = w.insert(1).await;
    let counted = w.count().await;
    release.send(()).expect("release");
    close.await.expect("task").expect("close");
    answered(vec![insert]).await;
    let refused = counted.await.expect("task");
    assert!(matches!(refused, Err(Error::Closed)), "{refused:?}");
    assert_eq!(rows(&w.path), 1);
}

/// A writer that panics ends the process (SIGABRT) rather than leaving a
/// server whose every write hears "closed". Run in a child process: the
/// test binary again, on this test alone, with `WRITER_PANIC_CHILD` set.
#[tokio::test]
async fn a_panicking_writer_ends_the_process() {
    if std::env::var_os("WRITER_PANIC_CHILD").is_some() {
        let w = start(false);
        let _ = w.insert(-1).await.await;
        // Never reached: the abort ends the process first.
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "writer::a_panicking_writer_ends_the_process"])
        .env("WRITER_PANIC_CHILD", "1")
        .output()
        .expect("run the child");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(6),
        "the child ended with {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
