//! The sinks' standard formats through the server: a NATS sink in
//! `format = "cdevents"` and binary content mode, read by nats-py and
//! parsed by the Python CloudEvents SDK, an event without a CDEvents form
//! skipped and counted; and the configuration refusing binary mode where
//! a broker has no CloudEvents binding.

use crate::sinks::{config_file, namespace, read_with_the_sdk};
use crate::{BIN, TestServer, eventually, succeeded};
use serde_json::json;
use std::process::Command;

/// Reads `expected` messages of a stream with nats-py; prints each one's
/// headers and the event the CloudEvents SDK parses from them (its HTTP
/// binary decoder: the NATS binding's header rules are the same `ce-`
/// names and percent-encoding), then deletes the stream.
const NATS_BINARY: &str = r#"
import asyncio, json, sys
import nats
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.bindings.http import HTTPMessage, from_binary
async def main():
    url, stream, subjects, expected = sys.argv[1:5]
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.subscribe(subjects, stream=stream, ordered_consumer=True)
    out = []
    while len(out) < int(expected):
        msg = await sub.next_msg(timeout=20)
        headers = dict(msg.headers or {})
        e = from_binary(HTTPMessage(headers=headers, body=msg.data), JSONFormat())
        out.append({"headers": headers, "id": e.get_id(), "type": e.get_type(),
                    "subject": e.get_subject(), "datacontenttype": e.get_datacontenttype(),
                    "data": e.get_data()})
    await sub.unsubscribe()
    await js.delete_stream(stream)
    await nc.close()
    print(json.dumps(out))
asyncio.run(main())
"#;

#[test]
fn a_nats_sink_sends_cdevents_in_binary_mode_and_skips_what_has_no_cdevent() {
    crate::ensure_python_package("nats", "nats-py");
    crate::ensure_python_package("cloudevents.core", "cloudevents>=2.2");
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let (stream, prefix) = namespace("cdbin");
    let cfg = config_file(
        cfg_dir.path(),
        &stream,
        &prefix,
        "format = \"cdevents\"\ncontent_mode = \"binary\"\n",
    );
    let s = TestServer::builder()
        .arg("--config")
        .arg(cfg.to_str().expect("utf-8 path"))
        .start();
    let ids = s.publish_jobs("CD", 1, 3);
    // A user event has no CDEvents counterpart: skipped, counted, passed.
    let (status, answer) = s.post_json(&json!([{"type": "UserCreated", "username": "bob",
                                                 "payload": {}}]));
    assert_eq!(status, 200, "{answer}");
    let more = s.publish_jobs("CD", 4, 1);
    let got = read_with_the_sdk(NATS_BINARY, &stream, &prefix, 4);
    let sent: Vec<&str> = got.iter().filter_map(|c| c["id"].as_str()).collect();
    let expected: Vec<&str> = ids.iter().chain(&more).map(String::as_str).collect();
    assert_eq!(
        sent, expected,
        "the job events, in order; the user event skipped"
    );
    for ce in &got {
        assert_eq!(ce["type"], "dev.cdevents.taskrun.finished.0.3.0");
        assert_eq!(ce["datacontenttype"], "application/json");
        assert_eq!(
            ce["data"]["context"]["id"], ce["id"],
            "the body is the CDEvent"
        );
        assert_eq!(ce["data"]["subject"]["content"]["outcome"], "success");
        let headers = ce["headers"].as_object().expect("headers");
        assert_eq!(headers["ce-specversion"], "1.0");
        assert_eq!(headers["ce-datacontenttype"], "application/json");
        assert!(!headers.contains_key("content-type"), "{ce}");
    }
    eventually("the skipped event is counted and passed", || {
        let st = s.sink_status("main");
        st["skipped"] == 1 && st["lag_events"] == 0 && st["content_mode"] == "binary"
    });
    assert!(
        s.metrics()
            .contains("cds_events_cdevents_unmapped_total{way=\"sink\"} 1"),
        "{}",
        s.metrics()
    );
}

#[test]
fn binary_mode_on_a_broker_without_a_cloudevents_binding_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sinks.toml");
    let config = |extra: &str| {
        std::fs::write(
            &path,
            format!(
                "[[sinks]]\nname = \"r\"\nkind = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n{extra}"
            ),
        )
        .expect("config file");
        Command::new(BIN)
            .args(["config", "--config", path.to_str().expect("utf-8")])
            .output()
            .expect("run")
    };
    let out = config("format = \"cloudevents\"\ncontent_mode = \"binary\"\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("sinks[r].content_mode") && err.contains("redis"),
        "{err}"
    );
    let text = succeeded(config("format = \"cdevents\"\n"), "config");
    assert!(text.contains("format = \"cdevents\""), "{text}");
    assert!(text.contains("content_mode = \"structured\""), "{text}");
}
