//! The conformance suite on NATS JetStream (the machine's NATS,
//! 127.0.0.1:4222, or `CDS_EVENTS_TEST_NATS`), each test on a stream and a
//! subject prefix of its own, deleted after.

use async_nats::jetstream::{self, consumer::pull};
use async_trait::async_trait;
use cds_events_sinks::SinkKind;
use cds_events_sinks::conformance::{Harness, Reader, Received};
use cds_events_sinks::nats::NatsConfig;
use futures_util::StreamExt;
use std::time::Duration;

fn url() -> String {
    std::env::var("CDS_EVENTS_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

struct Nats;

fn prefix(ns: &str) -> String {
    format!("cdstest.{ns}")
}

fn stream(ns: &str) -> String {
    format!("CDSTEST_{ns}")
}

async fn context() -> jetstream::Context {
    jetstream::new(
        async_nats::connect(url())
            .await
            .expect("NATS at CDS_EVENTS_TEST_NATS"),
    )
}

struct NatsReader {
    messages: pull::Stream,
}

#[async_trait]
impl Reader for NatsReader {
    async fn next(&mut self, timeout: Duration) -> Option<Received> {
        let m = tokio::time::timeout(timeout, self.messages.next())
            .await
            .ok()??
            .ok()?;
        let headers = m.headers.clone().unwrap_or_default();
        let header = |k: &str| headers.get(k).map(|v| v.as_str().to_owned());
        Some(Received {
            id: header("Nats-Msg-Id").unwrap_or_default(),
            seq: header("cds-events-seq").and_then(|s| s.parse().ok()),
            body: m.payload.to_vec(),
            route: m.subject.to_string(),
            content_type: header("content-type"),
        })
    }
}

#[async_trait]
impl Harness for Nats {
    fn settings(&self, ns: &str) -> SinkKind {
        let mut c = NatsConfig::new(url());
        c.subject_prefix = prefix(ns);
        c.stream = Some(stream(ns));
        SinkKind::Nats(c)
    }

    fn broker_addr(&self) -> String {
        let u = url::Url::parse(&url()).expect("CDS_EVENTS_TEST_NATS is a URL");
        format!(
            "{}:{}",
            u.host_str().unwrap_or("127.0.0.1"),
            u.port().unwrap_or(4222)
        )
    }

    fn settings_at(&self, ns: &str, addr: &str) -> SinkKind {
        let SinkKind::Nats(mut c) = self.settings(ns) else {
            unreachable!("NATS settings")
        };
        let mut u = url::Url::parse(&c.url).expect("a URL");
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        u.set_host(Some(host)).expect("host");
        u.set_port(port.parse().ok()).expect("port");
        c.url = u.to_string();
        c.ack_timeout = Duration::from_secs(2);
        c.connect_timeout = Duration::from_secs(2);
        SinkKind::Nats(c)
    }

    fn unreachable(&self, ns: &str, secret: &str) -> SinkKind {
        let mut c = NatsConfig::new("nats://127.0.0.1:1");
        c.user = Some("cds".into());
        c.password = Some(secret.into());
        c.subject_prefix = prefix(ns);
        c.connect_timeout = Duration::from_millis(500);
        SinkKind::Nats(c)
    }

    async fn reader(&self, ns: &str) -> Box<dyn Reader> {
        let js = context().await;
        // The same stream the sink makes (whichever comes first creates it).
        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: stream(ns),
                subjects: vec![format!("{}.>", prefix(ns))],
                ..Default::default()
            })
            .await
            .expect("stream");
        let consumer = stream
            .create_consumer(pull::Config {
                ack_policy: jetstream::consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("consumer");
        Box::new(NatsReader {
            messages: consumer.messages().await.expect("messages"),
        })
    }

    fn drops_duplicate_ids(&self) -> bool {
        true
    }

    async fn cleanup(&self, ns: &str) {
        let _ = context().await.delete_stream(stream(ns)).await;
    }
}

cds_events_sinks::sink_conformance_tests!(Nats);

#[test]
fn subjects_route_by_project_and_type() {
    use cds_events_log::Seq;
    use cds_events_model::EventType;
    let m =
        |p: &str| cds_events_sinks::Message::cds(Seq(1), "i", EventType::RunJobEnqueued, p, "{}");
    let s = cds_events_sinks::nats::subject;
    assert_eq!(
        s("cds.events", &m("PROJ")),
        "cds.events.PROJ.RunJobEnqueued"
    );
    assert_eq!(s("cds.events", &m("")), "cds.events._global.RunJobEnqueued");
    assert_eq!(s("x", &m("a.b *>")), "x.a_b___.RunJobEnqueued");
}

/// Reads messages 1..=n of a stream with nats-py, prints each one's
/// headers and the event the CloudEvents SDK parses from them. The SDK has
/// no NATS binding: its HTTP binary decoder applies the same header rules
/// (`ce-` prefix, percent-decoding), and the NATS binding's own rules are
/// checked on the headers themselves.
const READ_BINARY: &str = r#"
import asyncio, json, sys
import nats
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.bindings.http import HTTPMessage, from_binary
url, stream, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
async def main():
    nc = await nats.connect(url)
    js = nc.jetstream()
    out = []
    for seq in range(1, n + 1):
        m = await js.get_msg(stream, seq)
        headers = dict(m.headers or {})
        e = from_binary(HTTPMessage(headers=headers, body=m.data), JSONFormat())
        attributes = {k: v for k, v in e.get_attributes().items() if k != "time"}
        out.append({"headers": headers, "attributes": attributes,
                    "time": e.get_time().timestamp(), "data": e.get_data()})
    await nc.close()
    json.dump(out, sys.stdout)
asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_follows_the_nats_binding_as_nats_py_and_the_sdk_read_it() {
    use cds_events_sinks::conformance::{
        Running, append_runs, config, expect_parsed, namespace, open_log, python, until,
    };
    use cds_events_sinks::{ContentMode, Format};
    let (_dir, log) = open_log();
    let cases = [
        (namespace(), Format::CloudEvents, 9),
        (namespace(), Format::CdEvents, 6),
    ];
    let configs: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(i, (ns, format, _))| {
            let mut c = config(&format!("s{i}"), Nats.settings(ns));
            c.format = *format;
            c.content_mode = ContentMode::Binary;
            c
        })
        .collect();
    let running = Running::start(&log, &configs).await;
    append_runs(log.as_ref(), 9).await;
    until("both sinks sent", || async {
        running.status("s0").await.sent == 9 && running.status("s1").await.sent == 6
    })
    .await;
    for (ns, format, n) in &cases {
        let parsed = python(READ_BINARY, &[&url(), &stream(ns), &n.to_string()]);
        let parsed = parsed.as_array().expect("a list");
        assert_eq!(parsed.len(), *n);
        for p in parsed {
            let event = expect_parsed(log.as_ref(), p, *format).await;
            let headers = p["headers"].as_object().expect("headers");
            // 3.1.3.1: every attribute, datacontenttype included, is a
            // `ce-` header; no Content-Type says "structured" (3).
            let attributes = p["attributes"].as_object().expect("attributes");
            for name in attributes.keys() {
                assert!(headers.contains_key(&format!("ce-{name}")), "{name}: {p}");
            }
            assert_eq!(headers["ce-datacontenttype"], "application/json");
            assert!(
                !headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case("content-type")),
                "{p}"
            );
            // 3.1.3.2: values are printable ASCII, percent-encoded.
            for (k, v) in headers {
                let v = v.as_str().expect("a string");
                assert!(
                    v.bytes().all(|b| b.is_ascii_graphic() && b != b'"'),
                    "{k}: {v:?}"
                );
            }
            assert_eq!(headers["Nats-Msg-Id"], event.id.as_str());
        }
    }
    running.stop().await;
    for (ns, _, _) in &cases {
        Nats.cleanup(ns).await;
    }
}
