//! Broker sinks from the outside: `[[sinks]]` in the configuration, the
//! operations over HTTP and the CLI, and a stock NATS client (nats-py)
//! reading what the server sent, across a `kill -9` of the server; in
//! `format = "cloudevents"`, read by the Python CloudEvents SDK.

use crate::{ADMIN, BIN, TestServer, call, client_with_token, eventually, json_lines, succeeded};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) const NATS: &str = "nats://127.0.0.1:4222";
const SECRET: &str = "pw-s3cret-sink";
/// Events per batch the sink sends (and per request here).
const BATCH: usize = 50;

/// A stream and subject prefix of this test's own.
pub(crate) fn namespace(test: &str) -> (String, String) {
    let n = crate::unique(test);
    (format!("ITSINK_{n}"), format!("itsink.{n}"))
}

/// A configuration file with a NATS sink `main` on `stream`/`prefix` (and
/// `extra` appended).
pub(crate) fn config_file(dir: &Path, stream: &str, prefix: &str, extra: &str) -> PathBuf {
    let path = dir.join("sinks.toml");
    let text = format!(
        "[[sinks]]\nname = \"main\"\nkind = \"nats\"\nurl = \"{NATS}\"\nstream = \"{stream}\"\n\
         subject_prefix = \"{prefix}\"\nbatch = {BATCH}\nreconnect_min = \"50ms\"\n{extra}"
    );
    std::fs::write(&path, text).expect("config file");
    path
}

/// What nats-py read from the stream (one JSON object per message).
fn nats_py(stream: &str, prefix: &str, expected: usize, idle: f64, delete: bool) -> Vec<Value> {
    crate::ensure_python_package("nats", "nats-py");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/clients/nats_stream.py"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(script).args([
        NATS,
        stream,
        &format!("{prefix}.>"),
        &expected.to_string(),
        &idle.to_string(),
    ]);
    if delete {
        cmd.arg("--delete");
    }
    let out = cmd.output().expect("python3");
    json_lines(out, "nats-py")
}

#[test]
fn sinks_are_shown_paused_resumed_and_replayed_without_their_credentials() {
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let (stream, prefix) = namespace("ops");
    let down = format!(
        "[[sinks]]\nname = \"down\"\nkind = \"nats\"\nurl = \"nats://cds:{SECRET}@127.0.0.1:1\"\n\
         connect_timeout = \"300ms\"\n"
    );
    let cfg = config_file(cfg_dir.path(), &stream, &prefix, &down);
    let s = TestServer::builder()
        .arg("--config")
        .arg(cfg.to_str().expect("utf-8 path"))
        .start();
    let ids = s.publish_jobs("OPS", 1, 10);
    // `sent` counts the acknowledged batch; its position is stored right
    // after, and the lag follows the stored position.
    eventually("main sends the ten and stores its position", || {
        let m = s.sink_status("main");
        m["sent"] == 10 && m["lag_events"] == 0
    });
    let main = s.sink_status("main");
    assert_eq!(main["kind"], "nats");
    assert_eq!(main["state"], "running");
    assert_eq!(main["lag_events"], 0);
    eventually("down reports its broker", || {
        s.sink_status("down")["state"] == "disconnected"
    });
    let down = s.sink_status("down");
    assert_eq!(down["lag_events"], 10, "{down}");
    assert!(down["last_error"].is_string(), "{down}");

    // Admin only.
    let reader = client_with_token(Some(&s.token(&["read:*"])));
    let (status, _) = call(&reader, Method::GET, &s.url("/v2/sinks"), None);
    assert_eq!(status, 403);

    let (status, paused) = call(&s.http, Method::POST, &s.url("/v2/sinks/main/pause"), None);
    assert_eq!(
        (status, &paused["state"]),
        (200, &json!("paused")),
        "{paused}"
    );
    let (status, resumed) = call(&s.http, Method::POST, &s.url("/v2/sinks/main/resume"), None);
    assert_eq!(
        (status, &resumed["state"]),
        (200, &json!("running")),
        "{resumed}"
    );
    let (status, err) = call(
        &s.http,
        Method::POST,
        &s.url("/v2/sinks/main/replay?from=ten"),
        None,
    );
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["details"][0]["field"], "from", "{err}");
    let (status, _) = call(&s.http, Method::POST, &s.url("/v2/sinks/nope/pause"), None);
    assert_eq!(status, 404);
    let (status, r) = call(
        &s.http,
        Method::POST,
        &s.url("/v2/sinks/main/replay?from=1"),
        None,
    );
    assert_eq!((status, &r["from"]), (200, &json!(1)), "{r}");
    eventually("the replay is sent", || s.sink_status("main")["sent"] == 20);
    // JetStream drops the replayed ids (Nats-Msg-Id): each event once.
    let got = nats_py(&stream, &prefix, ids.len(), 2.0, false);
    let got_ids: Vec<&str> = got.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(got_ids, ids);

    // The CLI.
    let out = Command::new(BIN)
        .args([
            "sinks", "list", "--json", "--server", &s.base, "--token", ADMIN,
        ])
        .output()
        .expect("cli");
    let listed: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let out = Command::new(BIN)
        .args([
            "sinks", "pause", "down", "--server", &s.base, "--token", ADMIN,
        ])
        .output()
        .expect("cli");
    succeeded(out, "sinks pause");
    assert_eq!(s.sink_status("down")["state"], "paused");

    // Metrics and status.
    let metrics = s.metrics();
    assert!(
        metrics.contains("cds_events_sink_sent_total{sink=\"main\"} 20"),
        "{metrics}"
    );
    assert!(metrics.contains("cds_events_sink_failed_total{sink=\"down\"}"));
    let (_, status) = s.get("/mon/status");
    assert_eq!(status["sinks"].as_array().map(Vec::len), Some(2));

    // Never the password: not in the API, the logs, nor `config`.
    let (_, all) = s.get("/v2/sinks");
    let out = Command::new(BIN)
        .args(["config", "--config", cfg.to_str().expect("utf-8")])
        .output()
        .expect("config");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(printed.contains("cds:***@127.0.0.1:1"), "{printed}");
    for shown in [all.to_string(), s.logs(), printed, metrics] {
        assert!(!shown.contains(SECRET), "{shown}");
    }
    nats_py(&stream, &prefix, 0, 0.1, true);
}

#[test]
fn nats_py_sees_every_event_in_order_across_a_kill_9_of_the_server() {
    let data = tempfile::tempdir().expect("tempdir");
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let (stream, prefix) = namespace("kill");
    let cfg = config_file(cfg_dir.path(), &stream, &prefix, "");
    let start = || {
        TestServer::builder()
            .dir(data.path())
            .arg("--config")
            .arg(cfg.to_str().expect("utf-8 path"))
            .start()
    };
    let mut s = start();
    let mut published = Vec::new();
    let mut n = 1;
    for _ in 0..20 {
        published.extend(s.publish_jobs("KILL", n, BATCH));
        n += BATCH as u64;
    }
    let sent_before = s.sink_status("main")["sent"].as_u64().unwrap_or(0);
    // Mid-stream: the sink is (most likely) still sending.
    s.kill9();
    let s = start();
    for _ in 0..20 {
        published.extend(s.publish_jobs("KILL", n, BATCH));
        n += BATCH as u64;
    }
    eventually("the sink catches up", || {
        let m = s.sink_status("main");
        m["lag_events"] == 0 && m["state"] == "running"
    });
    let got = nats_py(&stream, &prefix, published.len(), 5.0, true);
    // Every event, in order of first arrival; duplicates counted.
    let mut first = Vec::new();
    let mut seen = HashSet::new();
    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in &got {
        let id = m["id"].as_str().expect("Nats-Msg-Id").to_owned();
        assert_eq!(m["body_id"].as_str(), Some(id.as_str()), "the id travels");
        assert_eq!(m["subject"], format!("{prefix}.KILL.RunJobEnded"));
        *copies.entry(id.clone()).or_default() += 1;
        if seen.insert(id.clone()) {
            first.push(id);
        }
    }
    let duplicates = got.len() - first.len();
    println!(
        "sent before kill -9: {sent_before} of 1000; received {} messages, {} distinct, {duplicates} duplicates",
        got.len(),
        first.len()
    );
    assert_eq!(first, published, "nothing lost, in order");
    assert!(
        duplicates <= BATCH,
        "duplicates only within the last unacknowledged batch: {duplicates}"
    );
}

/// Reads `expected` messages of a JetStream stream with nats-py, has the
/// Python CloudEvents SDK parse each (structured, JSON format), prints
/// them as one JSON array, and deletes the stream.
const NATS_CLOUDEVENTS: &str = r#"
import asyncio, json, sys
import nats
from cloudevents.core.formats.json import JSONFormat
async def main():
    url, stream, subjects, expected = sys.argv[1:5]
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.subscribe(subjects, stream=stream, ordered_consumer=True)
    out = []
    while len(out) < int(expected):
        msg = await sub.next_msg(timeout=20)
        e = JSONFormat().read(None, msg.data)
        a = e.get_attributes()
        out.append({"content_type": (msg.headers or {}).get("content-type"),
                    "id": e.get_id(), "source": e.get_source(), "type": e.get_type(),
                    "cdsseq": a.get("cdsseq"), "data": e.get_data()})
    await sub.unsubscribe()
    await js.delete_stream(stream)
    await nc.close()
    print(json.dumps(out))
asyncio.run(main())
"#;

/// Runs `script` (nats-py and the CloudEvents SDK), which reads `expected`
/// messages of `stream` on `<prefix>.>` and prints them as one JSON array.
pub(crate) fn read_with_the_sdk(
    script: &str,
    stream: &str,
    prefix: &str,
    expected: usize,
) -> Vec<Value> {
    let out = Command::new("python3")
        .args(["-c", script, NATS, stream, &format!("{prefix}.>")])
        .arg(expected.to_string())
        .output()
        .expect("python3");
    serde_json::from_str(&succeeded(out, "nats-py or the SDK")).expect("json")
}

#[test]
fn a_nats_sink_in_cloudevents_format_sends_what_the_cloudevents_sdk_reads() {
    crate::ensure_python_package("nats", "nats-py");
    crate::ensure_python_package("cloudevents.core", "cloudevents>=2.2");
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let (stream, prefix) = namespace("ce");
    let cfg = config_file(
        cfg_dir.path(),
        &stream,
        &prefix,
        "format = \"cloudevents\"\n",
    );
    let s = TestServer::builder()
        .arg("--config")
        .arg(cfg.to_str().expect("utf-8 path"))
        .env(
            "CDS_EVENTS_CLOUDEVENTS__SOURCE",
            "https://cds.example.com/ev",
        )
        .start();
    let ids = s.publish_jobs("CE", 1, 3);
    assert_eq!(s.sink_status("main")["format"], "cloudevents");
    let got = read_with_the_sdk(NATS_CLOUDEVENTS, &stream, &prefix, 3);
    let stored = s.query_all("&project_key=CE");
    assert_eq!(got.len(), 3);
    for (ce, (seq, event)) in got.iter().zip(&stored) {
        assert_eq!(ce["content_type"], "application/cloudevents+json");
        assert_eq!(ce["id"], event["id"]);
        assert_eq!(ce["source"], "https://cds.example.com/ev/projects/CE");
        assert_eq!(ce["type"], "org.ovh.cds.workflowrunjob.RunJobEnded");
        assert_eq!(ce["cdsseq"], format!("{seq:020}"));
        assert_eq!(&ce["data"], event, "data is the stored event");
    }
    let sent: Vec<&str> = got.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(sent, ids, "in order");
}
