//! The conformance suite on RabbitMQ (the machine's, 127.0.0.1:5672 as
//! guest, or `CDS_EVENTS_TEST_AMQP`), each test on an exchange of its own
//! read through an exclusive queue bound to it with `#`; both deleted
//! after. Then what only AMQP has: the message properties, the exchange's
//! kind, a returned and a nacked batch, a connection the broker closes.

use async_trait::async_trait;
use cds_events_log::Seq;
use cds_events_log::conformance::event;
use cds_events_model::EventType;
use cds_events_sinks::amqp::{AmqpConfig, AmqpSink, routing_key};
use cds_events_sinks::conformance::{Harness, Reader, Received, namespace};
use cds_events_sinks::{Health, Message, Sink, SinkKind};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;

fn url() -> String {
    std::env::var("CDS_EVENTS_TEST_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn exchange(ns: &str) -> String {
    format!("cdstest.{ns}")
}

fn queue(ns: &str) -> String {
    format!("cdstest.{ns}.q")
}

async fn channel() -> (Connection, Channel) {
    let c = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ at CDS_EVENTS_TEST_AMQP");
    let ch = c.create_channel().await.expect("channel");
    (c, ch)
}

/// Declares the test's exchange as the sink does (whichever comes first
/// creates it) and a queue bound to it with `key`.
async fn bound_queue(ch: &Channel, ns: &str, key: &str, arguments: FieldTable, exclusive: bool) {
    ch.exchange_declare(
        exchange(ns).into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("exchange");
    ch.queue_declare(
        queue(ns).into(),
        QueueDeclareOptions {
            exclusive,
            ..Default::default()
        },
        arguments,
    )
    .await
    .expect("queue");
    ch.queue_bind(
        queue(ns).into(),
        exchange(ns).into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
}

struct AmqpReader {
    // Kept open: the exclusive queue lives as long as its connection.
    _connection: Connection,
    deliveries: lapin::Consumer,
}

fn header(d: &lapin::message::Delivery, k: &str) -> Option<AMQPValue> {
    d.properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(k).cloned())
}

#[async_trait]
impl Reader for AmqpReader {
    async fn next(&mut self, timeout: Duration) -> Option<Received> {
        let d = tokio::time::timeout(timeout, self.deliveries.next())
            .await
            .ok()??
            .ok()?;
        Some(Received {
            id: d
                .properties
                .message_id()
                .as_ref()
                .map(|i| i.to_string())
                .unwrap_or_default(),
            seq: header(&d, "cds-events-seq").and_then(|v| match v {
                AMQPValue::LongLongInt(s) => u64::try_from(s).ok(),
                _ => None,
            }),
            body: d.data.clone(),
            route: d.routing_key.to_string(),
            content_type: d.properties.content_type().as_ref().map(|c| c.to_string()),
        })
    }
}

struct Amqp;

#[async_trait]
impl Harness for Amqp {
    fn settings(&self, ns: &str) -> SinkKind {
        let mut c = AmqpConfig::new(url());
        c.exchange = exchange(ns);
        SinkKind::Amqp(c)
    }

    fn unreachable(&self, ns: &str, secret: &str) -> SinkKind {
        let mut c = AmqpConfig::new(format!("amqp://cds:{secret}@127.0.0.1:1/%2f"));
        c.exchange = exchange(ns);
        c.connect_timeout = Duration::from_millis(500);
        SinkKind::Amqp(c)
    }

    fn broker_addr(&self) -> String {
        let u = url::Url::parse(&url()).expect("CDS_EVENTS_TEST_AMQP is a URL");
        format!(
            "{}:{}",
            u.host_str().unwrap_or("127.0.0.1"),
            u.port().unwrap_or(5672)
        )
    }

    fn settings_at(&self, ns: &str, addr: &str) -> SinkKind {
        let mut u = url::Url::parse(&url()).expect("CDS_EVENTS_TEST_AMQP is a URL");
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        u.set_host(Some(host)).expect("host");
        u.set_port(port.parse().ok()).expect("port");
        let mut c = AmqpConfig::new(u.to_string());
        c.exchange = exchange(ns);
        c.ack_timeout = Duration::from_secs(2);
        c.connect_timeout = Duration::from_secs(2);
        SinkKind::Amqp(c)
    }

    async fn reader(&self, ns: &str) -> Box<dyn Reader> {
        let (connection, ch) = channel().await;
        bound_queue(&ch, ns, "#", FieldTable::default(), true).await;
        let deliveries = ch
            .basic_consume(
                queue(ns).into(),
                "cdstest".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        Box::new(AmqpReader {
            _connection: connection,
            deliveries,
        })
    }

    async fn cleanup(&self, ns: &str) {
        let (_c, ch) = channel().await;
        ch.exchange_delete(exchange(ns).into(), ExchangeDeleteOptions::default())
            .await
            .expect("exchange deleted");
        // An exclusive queue still open elsewhere refuses the delete (and
        // closes this channel): it goes with its reader's connection.
        let _ = ch
            .queue_delete(queue(ns).into(), QueueDeleteOptions::default())
            .await;
    }
}

cds_events_sinks::sink_conformance_tests!(Amqp);

fn message(i: u64, project: &str) -> Message {
    let e = event(EventType::RunJobEnqueued, project, 1_700_000_000 + i as i64);
    Message::cds(
        Seq(i),
        e.id.to_string(),
        e.event_type,
        e.project_key.clone(),
        e.to_json(),
    )
}

fn settings(ns: &str) -> AmqpConfig {
    let mut c = AmqpConfig::new(url());
    c.exchange = exchange(ns);
    c
}

#[test]
fn routing_keys_route_by_project_and_type() {
    let m = |p: &str| Message {
        project_key: p.into(),
        ..message(1, "P")
    };
    assert_eq!(routing_key(None, &m("PROJ")), "PROJ.RunJobEnqueued");
    assert_eq!(routing_key(None, &m("")), "_global.RunJobEnqueued");
    assert_eq!(
        routing_key(Some("cds.events"), &m("a.b *#")),
        "cds.events.a_b___.RunJobEnqueued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_persistent_json_with_id_seq_type_and_routing_key() {
    let ns = namespace();
    let (_c, ch) = channel().await;
    bound_queue(&ch, &ns, "#", FieldTable::default(), true).await;
    let mut c = settings(&ns);
    c.routing_key_prefix = Some("cds.ev".into());
    let mut sink = AmqpSink::new(c, "props");
    sink.connect().await.expect("connect");
    let sent = [message(7, "PROJ"), message(8, "")];
    sink.send(&sent).await.expect("confirmed");
    let mut deliveries = ch
        .basic_consume(
            queue(&ns).into(),
            "t".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for (m, route) in sent.iter().zip([
        "cds.ev.PROJ.RunJobEnqueued",
        "cds.ev._global.RunJobEnqueued",
    ]) {
        let d = tokio::time::timeout(Duration::from_secs(20), deliveries.next())
            .await
            .expect("delivered")
            .expect("a delivery")
            .expect("ok");
        let p = &d.properties;
        assert_eq!(d.routing_key.as_str(), route);
        assert_eq!(d.data, m.body.as_bytes());
        assert_eq!(
            p.message_id().as_ref().map(|s| s.as_str()),
            Some(m.id.as_str())
        );
        assert_eq!(*p.delivery_mode(), Some(2), "persistent");
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(
            header(&d, "cds-events-seq"),
            Some(AMQPValue::LongLongInt(m.seq.0 as i64))
        );
        assert_eq!(
            header(&d, "cds-events-type"),
            Some(AMQPValue::LongString("RunJobEnqueued".into()))
        );
    }
    Amqp.cleanup(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_is_declared_a_durable_topic_exchange() {
    let ns = namespace();
    let mut sink = AmqpSink::new(settings(&ns), "decl");
    sink.connect().await.expect("connect");
    let (_c, ch) = channel().await;
    // Re-declaring an exchange succeeds only with the same kind and
    // durability; a mismatch closes the channel.
    let again = |kind: ExchangeKind, durable: bool| {
        let ns = ns.clone();
        async move {
            let (_c, ch) = channel().await;
            ch.exchange_declare(
                exchange(&ns).into(),
                kind,
                ExchangeDeclareOptions {
                    durable,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
        }
    };
    again(ExchangeKind::Topic, true)
        .await
        .expect("durable topic");
    assert!(again(ExchangeKind::Topic, false).await.is_err());
    assert!(again(ExchangeKind::Fanout, true).await.is_err());
    drop(ch);
    Amqp.cleanup(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_no_queue_takes_fails_its_batch_unless_not_mandatory() {
    let ns = namespace();
    let mut sink = AmqpSink::new(settings(&ns), "ret");
    sink.connect().await.expect("connect");
    let e = sink
        .send(&[message(1, "PROJ")])
        .await
        .expect_err("returned: no queue is bound");
    assert!(e.to_string().contains("NO_ROUTE"), "{e}");
    // The connection is fine: the next batch goes out on it.
    assert_eq!(sink.health().await, Health::Connected);
    let mut c = settings(&ns);
    c.mandatory = false;
    let mut lax = AmqpSink::new(c, "lax");
    lax.connect().await.expect("connect");
    lax.send(&[message(1, "PROJ")])
        .await
        .expect("dropped by the broker, as asked");
    Amqp.cleanup(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nacked_message_fails_its_batch() {
    let ns = namespace();
    let (_c, ch) = channel().await;
    // A queue of one message that refuses the rest: the broker nacks them.
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    bound_queue(&ch, &ns, "#", arguments, true).await;
    let mut sink = AmqpSink::new(settings(&ns), "nack");
    sink.connect().await.expect("connect");
    sink.send(&[message(1, "PROJ")])
        .await
        .expect("the first fits");
    let e = sink
        .send(&[message(2, "PROJ"), message(3, "PROJ")])
        .await
        .expect_err("nacked: the queue is full");
    assert!(e.to_string().contains("seq 2: nacked"), "{e}");
    Amqp.cleanup(&ns).await;
}

/// Closes, through `rabbitmqctl`, the broker's connections named
/// `connection_name`; how many.
fn close_connections(connection_name: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "-s", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl (the broker's own CLI, as root)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let quoted = format!("\"{connection_name}\"");
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&quoted))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    for pid in &pids {
        let ok = std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "cds-events test: cut"])
            .status()
            .expect("rabbitmqctl");
        assert!(ok.success());
    }
    pids.len()
}

/// Closes the sink's connection from the broker and waits until the sink
/// sees it.
async fn cut(sink: &AmqpSink, name: &str) {
    assert_eq!(
        close_connections(&format!("cds-events sink {name}")),
        1,
        "the sink's connection carries its name"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sink.health().await == Health::Connected {
        assert!(tokio::time::Instant::now() < deadline, "the close is seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_broker_closes_fails_a_send_and_connect_opens_another() {
    let ns = namespace();
    let mut reader = Amqp.reader(&ns).await;
    let name = format!("cut-{ns}");
    let mut sink = AmqpSink::new(settings(&ns), &name);
    sink.connect().await.expect("connect");
    sink.send(&[message(1, "PROJ")]).await.expect("sent");
    // Closed while idle: `connect` sees it and opens another.
    cut(&sink, &name).await;
    sink.connect().await.expect("reconnect");
    assert_eq!(sink.health().await, Health::Connected);
    sink.send(&[message(2, "PROJ")]).await.expect("sent");
    // Closed, then a send: it fails, and `connect` opens another.
    cut(&sink, &name).await;
    sink.send(&[message(3, "PROJ")])
        .await
        .expect_err("the connection is gone");
    sink.connect().await.expect("reconnect");
    assert_eq!(sink.health().await, Health::Connected);
    sink.send(&[message(4, "PROJ")]).await.expect("sent again");
    let mut seqs = Vec::new();
    for _ in 0..3 {
        seqs.push(
            reader
                .next(Duration::from_secs(20))
                .await
                .and_then(|r| r.seq),
        );
    }
    assert_eq!(seqs, [Some(1), Some(2), Some(4)]);
    Amqp.cleanup(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_an_error_without_the_password() {
    let ns = namespace();
    let secret = "pw-s3cret%2Fx";
    let mut c = settings(&ns);
    c.url = format!("amqp://guest:{secret}@127.0.0.1:5672/%2f");
    let mut sink = AmqpSink::new(c, "login");
    let e = sink.connect().await.expect_err("wrong password");
    let shown = format!("{e} {sink:?}");
    for s in [secret, "pw-s3cret/x"] {
        assert!(!shown.contains(s), "{shown}");
    }
    assert!(shown.contains("guest:***@127.0.0.1:5672"), "{shown}");
    assert!(matches!(sink.health().await, Health::Disconnected(_)));
}

/// Takes `n` messages off a queue with pika and parses each with the
/// CloudEvents SDK's AMQP binding in binary mode (the 0-9-1 headers table
/// being what RabbitMQ gives AMQP 1.0 readers as application-properties).
const READ_BINARY: &str = r#"
import json, sys
import pika
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.bindings.amqp import AMQPMessage, from_binary
url, queue, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
out = []
while len(out) < n:
    method, props, body = channel.basic_get(queue, auto_ack=True)
    if method is None:
        connection.sleep(0.05)
        continue
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in (props.headers or {}).items()}
    e = from_binary(AMQPMessage(properties={"content-type": props.content_type},
                                application_properties=headers, application_data=body), JSONFormat())
    attributes = {k: v for k, v in e.get_attributes().items() if k != "time"}
    out.append({"headers": headers, "content_type": props.content_type, "attributes": attributes,
                "time": e.get_time().timestamp(), "data": e.get_data()})
connection.close()
json.dump(out, sys.stdout)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_follows_the_amqp_binding_as_pika_and_the_sdk_read_it() {
    use cds_events_sinks::conformance::{
        Running, append_runs, config, expect_parsed, open_log, python, until,
    };
    use cds_events_sinks::{ContentMode, Format};
    let ns = namespace();
    let (_c, ch) = channel().await;
    bound_queue(&ch, &ns, "#", FieldTable::default(), false).await;
    let (_dir, log) = open_log();
    let mut c = config("b", Amqp.settings(&ns));
    c.format = Format::CloudEvents;
    c.content_mode = ContentMode::Binary;
    let running = Running::start(&log, &[c]).await;
    append_runs(log.as_ref(), 6).await;
    until("sent", || async { running.status("b").await.sent == 6 }).await;
    let parsed = python(READ_BINARY, &[&url(), &queue(&ns), "6"]);
    for p in parsed.as_array().expect("a list") {
        let event = expect_parsed(log.as_ref(), p, Format::CloudEvents).await;
        // 3.1.1: content-type is datacontenttype; 3.1.3.1: every other
        // attribute is a `cloudEvents_` application property.
        assert_eq!(p["content_type"], "application/json");
        let headers = p["headers"].as_object().expect("headers");
        for name in p["attributes"].as_object().expect("attributes").keys() {
            if name != "datacontenttype" {
                assert!(
                    headers.contains_key(&format!("cloudEvents_{name}")),
                    "{name}: {p}"
                );
            }
        }
        assert!(!headers.contains_key("cloudEvents_datacontenttype"), "{p}");
        assert_eq!(headers["cloudEvents_id"], event.id.as_str());
    }
    running.stop().await;
    Amqp.cleanup(&ns).await;
}
