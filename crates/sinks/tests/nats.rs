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
    let m = |p: &str| cds_events_sinks::Message {
        seq: Seq(1),
        id: "i".into(),
        event_type: EventType::RunJobEnqueued,
        project_key: p.into(),
        body: "{}".into(),
        format: cds_events_sinks::Format::Cds,
    };
    let s = cds_events_sinks::nats::subject;
    assert_eq!(
        s("cds.events", &m("PROJ")),
        "cds.events.PROJ.RunJobEnqueued"
    );
    assert_eq!(s("cds.events", &m("")), "cds.events._global.RunJobEnqueued");
    assert_eq!(s("x", &m("a.b *>")), "x.a_b___.RunJobEnqueued");
}
