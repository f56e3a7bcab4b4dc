//! A private PostgreSQL server for tests that stop or restart it: the
//! machine's server is shared by every test running at the same time, and
//! restarting it would fail them.
//!
//! [`TempCluster::start`] runs `initdb` into a new directory under the
//! system's temporary directory and starts the server there with `pg_ctl`,
//! on a free loopback port, its socket in that directory, trusting local
//! connections as `postgres`. [`TempCluster::stop`], [`TempCluster::start_again`]
//! and [`TempCluster::restart`] are the faults; the server is stopped
//! (`immediate`) and its directory removed on drop.
//!
//! The binaries are those of `CDS_EVENTS_TEST_PG_BINDIR`, or else of the
//! newest `/usr/lib/postgresql/<version>/bin`. `initdb` and the server
//! refuse to run as root: as root, they run as the `postgres` user
//! (`runuser`), which then owns the directory.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A throw-away PostgreSQL server (see the module documentation).
#[derive(Debug)]
pub struct TempCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run the binaries as `postgres` (this process is root).
    as_postgres: bool,
}

impl TempCluster {
    /// Makes and starts a new server (blocking: seconds).
    pub fn start() -> io::Result<TempCluster> {
        let bin = bin_dir()?;
        let as_postgres = is_root();
        let dir =
            std::env::temp_dir().join(format!("cds-events-pg-{:016x}", super::testing::rand_u64()));
        std::fs::create_dir(&dir)?;
        let mut cluster = TempCluster {
            bin,
            dir,
            port: 0,
            as_postgres,
        };
        if as_postgres {
            let owned = Command::new("chown")
                .arg("postgres:")
                .arg(&cluster.dir)
                .status()?;
            if !owned.success() {
                return Err(io::Error::other(
                    "cannot give the cluster's directory to postgres",
                ));
            }
        }
        let data = cluster.data().display().to_string();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.port = free_port()?;
        // Fast, not durable against a power cut (a test's data is thrown
        // away), durable across a clean stop: what the faults need.
        let conf = format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             max_connections = 400\nfsync = off\nfull_page_writes = off\n\
             synchronous_commit = off\nshared_buffers = 32MB\n",
            cluster.port,
            cluster.dir.display()
        );
        let conf_path = cluster.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text)?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// A URL to its `postgres` database.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// A URL to database `name` on it.
    pub fn url_of(&self, name: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={name}",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (`fast`: sessions are ended, each client sees its
    /// connection close) and waits until it is down.
    pub fn stop(&self) -> io::Result<()> {
        self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"])
    }

    /// Starts the stopped server again, on the same port, and waits until it
    /// accepts connections.
    pub fn start_again(&self) -> io::Result<()> {
        let log = self.dir.join("server.log").display().to_string();
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log])
    }

    /// [`TempCluster::stop`], then [`TempCluster::start_again`].
    pub fn restart(&self) -> io::Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// What the server logged (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> io::Result<()> {
        let data = self.data().display().to_string();
        let mut all = vec!["-D", &data];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all).map(drop)
    }

    /// Runs the PostgreSQL binary `program`, as `postgres` when this
    /// process is root.
    fn run(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(program));
            c
        } else {
            Command::new(self.bin.join(program))
        };
        // `postgres` may not enter the test's working directory.
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{program} {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(out)
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "30"]);
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove test cluster {}: {e}", self.dir.display());
        }
    }
}

/// Where the server's binaries are.
fn bin_dir() -> io::Result<PathBuf> {
    if let Ok(dir) = std::env::var("CDS_EVENTS_TEST_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max();
    newest.map(|(_, bin)| bin).ok_or_else(|| {
        io::Error::other(
            "no PostgreSQL server binaries under /usr/lib/postgresql (set CDS_EVENTS_TEST_PG_BINDIR)",
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A loopback port nothing listens on now.
fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
