//! Integration tests against the real `cds-events` binary, each on an
//! ephemeral port with a temporary data directory.

mod api;
mod auth;
mod bridge;
mod cdevents;
mod cloudevents;
mod console;
mod console_browser;
mod durability;
mod fuzz;
mod hardening;
mod mtls;
mod notifications;
mod ops;
mod postgres;
mod postgres_torture;
mod receiver;
mod sinks;
mod sinks_amqp;
mod sinks_cloudevents;
mod sinks_kafka;
mod sinks_redis;
mod stats;
mod stream;
mod torture_disk;
mod torture_hostile;
mod torture_kill;
mod types;
mod ws;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_cds-events");
/// The admin token every test server is bootstrapped with.
pub const ADMIN: &str = "it-admin-token-0123456789abcdef";

/// A running server process.
#[derive(Debug)]
pub struct TestServer {
    pub child: Child,
    pub base: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// Requests made through it carry the admin token.
    pub http: reqwest::blocking::Client,
    stderr: PathBuf,
    /// What the server printed before its "listening on" line.
    pub stdout_before: Vec<String>,
    /// Dropped last, after the server has stopped.
    _turn: Option<SharedTurn>,
}

/// A blocking client that sends `token` with every request.
/// One request with an optional JSON body: the status and the JSON answer
/// (`null` when the body is empty or not JSON).
pub fn call(
    client: &reqwest::blocking::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut r = client.request(method, url);
    if let Some(b) = body {
        r = r.json(b);
    }
    let r = r.send().expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

pub fn client_with_token(token: Option<&str>) -> reqwest::blocking::Client {
    cds_events_client::install_crypto_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(headers)
        .build()
        .expect("client")
}

/// Builds a server: `TestServer::builder().env(..).start()`.
#[derive(Debug)]
pub struct Builder {
    dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    admin_env: bool,
    listen: String,
    /// A program (and its arguments) that runs the server: `prlimit …`.
    wrapper: Vec<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            dir: None,
            env: Vec::new(),
            args: Vec::new(),
            admin_env: true,
            listen: "127.0.0.1:0".into(),
            wrapper: Vec::new(),
        }
    }
}

impl Builder {
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_owned());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
    /// Listen on this address instead of an ephemeral port.
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.into();
        self
    }
    /// Run the server through `program args… cds-events serve …` (which
    /// must exec it, keeping its pid), e.g. `prlimit --nofile=1024:`.
    pub fn wrapped_by(mut self, program: &[&str]) -> Self {
        self.wrapper = program.iter().map(|a| (*a).to_owned()).collect();
        self
    }
    /// Start without CDS_EVENTS_ADMIN_TOKEN (the server then generates one).
    pub fn without_admin_env(mut self) -> Self {
        self.admin_env = false;
        self
    }

    pub fn start(self) -> TestServer {
        let turn = shared_turn();
        let (tmp, dir) = match self.dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let d = t.path().to_owned();
                (Some(t), d)
            }
        };
        let stderr = dir.with_extension(format!("stderr-{}", std::process::id()));
        let err_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr)
            .expect("stderr file");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(&self.listen)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(&self.args)
            .env_remove("RUST_LOG")
            .env_remove("CDS_EVENTS_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err_file);
        if self.admin_env {
            cmd.env("CDS_EVENTS_ADMIN_TOKEN", ADMIN);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn cds-events");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut stdout_before = Vec::new();
        let base = loop {
            let Some(Ok(line)) = lines.next() else {
                // Never leave a server behind when a test cannot start it.
                let _ = child.kill();
                let _ = child.wait();
                panic!("server did not start; stdout: {stdout_before:?}");
            };
            if let Some(url) = line.strip_prefix("listening on ") {
                break url.to_owned();
            }
            stdout_before.push(line);
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let http = client_with_token(Some(ADMIN));
        TestServer {
            child,
            base,
            dir,
            _tmp: tmp,
            http,
            stderr,
            stdout_before,
            _turn: turn,
        }
    }
}

impl TestServer {
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub fn start() -> TestServer {
        Builder::default().start()
    }

    /// Creates a token with these grants (as the admin); returns its secret.
    pub fn token(&self, grants: &[&str]) -> String {
        let (status, body) = {
            let r = self
                .http
                .post(self.url("/v2/auth/tokens"))
                .json(&json!({"name": format!("test {grants:?}"), "grants": grants}))
                .send()
                .expect("post");
            (r.status().as_u16(), r.json::<Value>().expect("json"))
        };
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn post_json(&self, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/v2/events"))
            .json(body)
            .send()
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().expect("json answer"))
    }

    pub fn post_raw(
        &self,
        body: impl Into<reqwest::blocking::Body>,
        content_type: &str,
    ) -> (u16, Value) {
        let r = self
            .http
            .post(self.url("/v2/events"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().expect("json answer"))
    }

    /// The sink `name` as `GET /v2/sinks` shows it (`Null`: no such sink).
    pub fn sink_status(&self, name: &str) -> Value {
        let (status, body) = self.get("/v2/sinks");
        assert_eq!(status, 200, "{body}");
        body["sinks"]
            .as_array()
            .and_then(|all| all.iter().find(|x| x["name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Publishes `n` RunJobEnded events of project `p` numbered from
    /// `first`, in one request; their ids.
    pub fn publish_jobs(&self, p: &str, first: u64, n: usize) -> Vec<String> {
        let batch: Vec<Value> = (first..first + n as u64).map(|i| job_event(p, i)).collect();
        let (status, answer) = self.post_json(&Value::Array(batch));
        assert_eq!(status, 200, "{answer}");
        answer["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_owned())
            .collect()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().expect("get");
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// The Prometheus text of `/mon/metrics`, read with the admin token.
    pub fn metrics(&self) -> String {
        self.http
            .get(self.url("/mon/metrics"))
            .send()
            .expect("metrics")
            .text()
            .expect("text")
    }

    /// Every event (seq, event) the query returns, following cursors.
    pub fn query_all(&self, params: &str) -> Vec<(u64, Value)> {
        let mut out = Vec::new();
        let mut cursor: Option<u64> = None;
        loop {
            let c = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
            let (status, page) = self.get(&format!("/v2/events?limit=1000{params}{c}"));
            assert_eq!(status, 200, "{params}: {page}");
            for item in page["events"].as_array().expect("events") {
                out.push((item["seq"].as_u64().expect("seq"), item["event"].clone()));
            }
            match page["next_cursor"].as_u64() {
                Some(n) => cursor = Some(n),
                None => return out,
            }
        }
    }

    pub fn ids(&self, params: &str) -> Vec<String> {
        self.query_all(params)
            .into_iter()
            .map(|(_, e)| e["id"].as_str().expect("id").to_owned())
            .collect()
    }

    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then the exit status and what the server logged.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, String) {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, self.logs());
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The last lines of the server's log, for a failed assertion to show.
    pub fn logs_tail(&self, lines: usize) -> String {
        let logs = self.logs();
        let all: Vec<&str> = logs.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// Every test server runs under a shared turn of this lock; a test that
/// times latencies takes it alone ([`exclusive_timing`]), so that what it
/// measures is never another test's load on a 2-core machine.
static TURNS: std::sync::RwLock<()> = std::sync::RwLock::new(());

thread_local! {
    /// This thread holds the exclusive turn: its own servers need no other.
    static EXCLUSIVE_HERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Shared turns this thread holds. A second server of the same test
    /// takes none: waiting for one behind a queued exclusive turn, which
    /// waits for the first, would never end.
    static SHARED_HERE: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A shared turn, counted per thread.
#[derive(Debug)]
pub struct SharedTurn {
    _guard: std::sync::RwLockReadGuard<'static, ()>,
}

impl Drop for SharedTurn {
    fn drop(&mut self) {
        SHARED_HERE.with(|s| s.set(s.get().saturating_sub(1)));
    }
}

/// The exclusive turn, held until dropped: waits for every running test
/// server to stop, and new ones (of other tests) wait for it.
#[derive(Debug)]
pub struct ExclusiveTurn {
    _guard: std::sync::RwLockWriteGuard<'static, ()>,
}

impl Drop for ExclusiveTurn {
    fn drop(&mut self) {
        EXCLUSIVE_HERE.with(|e| e.set(false));
    }
}

pub fn exclusive_timing() -> ExclusiveTurn {
    let guard = TURNS.write().unwrap_or_else(|p| p.into_inner());
    EXCLUSIVE_HERE.with(|e| e.set(true));
    ExclusiveTurn { _guard: guard }
}

/// A shared turn for a new test server (none when this thread already has
/// the exclusive one).
fn shared_turn() -> Option<SharedTurn> {
    if EXCLUSIVE_HERE.with(|e| e.get()) || SHARED_HERE.with(|s| s.get()) > 0 {
        return None;
    }
    let guard = TURNS.read().unwrap_or_else(|p| p.into_inner());
    SHARED_HERE.with(|s| s.set(s.get() + 1));
    Some(SharedTurn { _guard: guard })
}

/// A run-job event of project `p`.
pub fn job_event(p: &str, n: u64) -> Value {
    json!({"type": "RunJobEnded", "project_key": p, "workflow": "build", "workflow_run_id": format!("run-{p}"),
           "run_job_id": format!("rj-{n}"), "job_id": "compile", "run_number": n, "run_attempt": 1,
           "region": "eu", "hatchery": "swarm", "status": "Success", "user_id": "u1", "username": "alice",
           "payload": {"n": n}})
}

/// A Python package from PyPI that a test runs (a client no one here wrote),
/// installed on first use so that `cargo test --workspace` works on a fresh
/// machine. `module` is what Python imports, `package` what pip installs.
pub fn ensure_python_package(module: &str, package: &str) {
    // The modules known present; checked once per test process.
    static PRESENT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut known = PRESENT.lock().unwrap_or_else(|p| p.into_inner());
    if known.iter().any(|m| m == module) {
        return;
    }
    let present = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        let ok = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", package])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot install Python's {package} (pip install {package})"
        );
    }
    known.push(module.to_owned());
}

/// The standard output of a finished command, which must have succeeded
/// and printed UTF-8: otherwise the test fails, naming `what` ran, with its
/// exit status and standard error.
pub fn succeeded(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{what} printed non-UTF-8: {e}"))
}

/// The standard output of a finished command that printed one JSON value
/// per line (a stock client reading a broker), which must have succeeded.
pub fn json_lines(out: std::process::Output, what: &str) -> Vec<Value> {
    succeeded(out, what)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// A name no other test (or test run) uses: `tag`, the process id and the
/// time in nanoseconds (for streams, channels and exchanges on the
/// machine's shared brokers).
pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// How long a test waits for something that should happen (a bound for
/// failures only: on success the wait ends as soon as it happens).
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `f` until it returns true or [`WAIT`] passes.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines a child process prints, read on a thread of their own so that
/// a test can wait for the next one with a deadline (and act on it, e.g.
/// stop the server once a client has seen what it must).
#[derive(Debug)]
pub struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    /// Reads `out` (a child's stdout or stderr) until it closes.
    pub fn of(out: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// The next line; panics, naming `what`, if none comes within [`WAIT`].
    pub fn next(&self, what: &str) -> String {
        use std::sync::mpsc::RecvTimeoutError;
        match self.0.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("timed out waiting for {what}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the output ended before {what}"),
        }
    }

    /// Every line left, once the output closes (the process has exited).
    pub fn rest(self) -> Vec<String> {
        self.0.into_iter().collect()
    }
}

/// One SSE message: its id, its event name (if any) and its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: Option<u64>,
    pub event: Option<String>,
    pub data: String,
}

/// Reads SSE messages from a response until `stop` says so or it ends.
pub fn read_sse(
    resp: reqwest::blocking::Response,
    mut stop: impl FnMut(&Message) -> bool,
) -> Vec<Message> {
    let mut out = Vec::new();
    let mut cur = Message {
        id: None,
        event: None,
        data: String::new(),
    };
    for line in BufReader::new(resp).lines() {
        let Ok(line) = line else { break };
        if line.is_empty() {
            if !cur.data.is_empty() || cur.event.is_some() {
                let done = stop(&cur);
                out.push(cur.clone());
                if done {
                    break;
                }
            }
            cur = Message {
                id: None,
                event: None,
                data: String::new(),
            };
        } else if let Some(v) = line.strip_prefix("id: ") {
            cur.id = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("event: ") {
            cur.event = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            cur.data.push_str(v);
        }
    }
    out
}

/// A client for long-lived streams, with the admin token.
pub fn stream_client() -> reqwest::blocking::Client {
    cds_events_client::install_crypto_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {ADMIN}").parse().expect("header"),
    );
    reqwest::blocking::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}
