//! The console in a real headless Chromium: `tests/browser/console.mjs`
//! (playwright-core from npm, the system's `/usr/bin/chromium`) against the
//! real binary, restarted on the same port when the script asks.
//! Screenshots go to `<target>/tmp/console-screenshots/`.

use crate::{ADMIN, TestServer};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `npm ci` of the committed lock file, once, when playwright-core is not
/// there yet (a fresh checkout): `cargo test --workspace` works alone.
fn ensure_playwright() {
    let dir = browser_dir();
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let ok = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "npm ci in {} failed (node and npm are needed)",
        dir.display()
    );
}

/// The server, able to call the script's loopback receiver, retrying a
/// failed delivery quickly.
fn webhook_server() -> crate::Builder {
    TestServer::builder()
        .env("CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE", "1")
        .env("CDS_EVENTS_WEBHOOKS__RETRY_SCHEDULE", "[0s,300ms,300ms]")
        .env("CDS_EVENTS_WEBHOOKS__JITTER", "0")
}

#[test]
fn the_console_signs_in_tails_explores_draws_a_run_redelivers_and_manages_tokens() {
    ensure_playwright();
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "the browser tests need Debian's chromium (apt-get install chromium)"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut server = webhook_server().dir(tmp.path()).start();
    let addr = server
        .base
        .strip_prefix("http://")
        .expect("http")
        .to_owned();
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let mut node = Command::new("node")
        .arg(browser_dir().join("console.mjs"))
        .env("BASE", &server.base)
        .env("TOKEN", ADMIN)
        .env("ARTIFACTS", &artifacts)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let mut to_node = node.stdin.take().expect("stdin");
    let out = BufReader::new(node.stdout.take().expect("stdout"));
    let mut said = Vec::new();
    for line in out.lines() {
        let line = line.expect("line");
        if line == "RESTART" {
            let (status, logs) = server.terminate();
            assert!(status.success(), "{logs}");
            drop(server);
            server = webhook_server().dir(tmp.path()).listen(&addr).start();
            writeln!(to_node, "RESTARTED").expect("answer");
        }
        said.push(line);
    }
    let status = node.wait().expect("node ends");
    let said = said.join("\n");
    assert!(status.success(), "the browser test failed:\n{said}");
    assert!(said.contains("RESULT "), "{said}");
    // The measured first-load size and the like, for whoever reads the log.
    println!("{said}");
    for shot in [
        "signin",
        "tail",
        "tail-paused",
        "tail-phone",
        "event",
        "tail-refused",
        "explorer",
        "timeline-running",
        "timeline",
        "notifications",
        "deliveries",
        "deliveries-reader",
        "notification-created",
        "overview",
        "tokens",
        "timeline-dark",
        "deliveries-dark",
        "explorer-phone",
        "timeline-phone",
        "deliveries-phone",
        "overview-phone",
    ] {
        assert!(artifacts.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
    drop(server);
}
