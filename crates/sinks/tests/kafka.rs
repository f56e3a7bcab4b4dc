//! The conformance suite on Kafka: each test runs a private `tansu` broker
//! (in-memory, a free port; `kafka::testing::Tansu`) and a topic of its
//! own, read back with rskafka's partition client.

use async_trait::async_trait;
use cds_events_log::Seq;
use cds_events_model::EventType;
use cds_events_sinks::conformance::{Harness, Reader, Received};
use cds_events_sinks::kafka::testing::{Tansu, free_port};
use cds_events_sinks::kafka::{KafkaConfig, KeyBy, partition_of};
use cds_events_sinks::{Message, Sink, SinkKind, build};
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::RecordAndOffset;
use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

/// A private broker, started at first use: a cut check first asks where the
/// broker will listen (its proxy forwards there), then has it advertise the
/// proxy, since a Kafka client connects to the advertised address after
/// the bootstrap and would go around a proxy the broker does not name.
struct Kafka {
    port: u16,
    /// The broker and the address it advertises when not its own.
    broker: OnceLock<(Tansu, Option<String>)>,
}

impl Kafka {
    fn start() -> Kafka {
        Kafka {
            port: free_port(),
            broker: OnceLock::new(),
        }
    }

    /// The broker, advertising `advertised` if this starts it.
    fn broker_advertising(&self, advertised: Option<&str>) -> &(Tansu, Option<String>) {
        self.broker.get_or_init(|| {
            (
                Tansu::start_on(self.port, advertised),
                advertised.map(str::to_owned),
            )
        })
    }

    fn address(&self) -> String {
        self.broker_advertising(None).0.address()
    }
}

fn topic(ns: &str) -> String {
    format!("cdstest.{ns}")
}

async fn client(address: &str) -> Client {
    ClientBuilder::new(vec![address.to_owned()])
        .build()
        .await
        .expect("the test's tansu")
}

/// Reads one partition of a topic from its start; waits for the topic to
/// exist (the sink creates it at connect).
struct PartitionReader {
    address: String,
    topic: String,
    partition: i32,
    client: Option<(Client, PartitionClient)>,
    offset: i64,
    buffered: VecDeque<RecordAndOffset>,
}

impl PartitionReader {
    fn new(address: &str, topic: &str, partition: i32) -> PartitionReader {
        PartitionReader {
            address: address.to_owned(),
            topic: topic.to_owned(),
            partition,
            client: None,
            offset: 0,
            buffered: VecDeque::new(),
        }
    }

    async fn record(&mut self, timeout: Duration) -> Option<RecordAndOffset> {
        let deadline = Instant::now() + timeout;
        while self.buffered.is_empty() {
            if Instant::now() >= deadline {
                return None;
            }
            if self.client.is_none() {
                let Ok(c) = ClientBuilder::new(vec![self.address.clone()]).build().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let exists = c
                    .list_topics()
                    .await
                    .is_ok_and(|topics| topics.iter().any(|t| t.name == self.topic));
                if !exists {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let Ok(p) = c
                    .partition_client(&self.topic, self.partition, UnknownTopicHandling::Retry)
                    .await
                else {
                    continue;
                };
                self.client = Some((c, p));
            }
            let Some((_, p)) = &self.client else {
                continue;
            };
            // A cut check's proxy carries this reader's connections too (the
            // broker advertises the proxy): a cut one is opened again.
            let Ok((records, _)) = p.fetch_records(self.offset, 1..1_000_000, 100).await else {
                self.client = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            for r in records {
                if r.offset >= self.offset {
                    self.offset = r.offset + 1;
                    self.buffered.push_back(r);
                }
            }
        }
        self.buffered.pop_front()
    }
}

fn received(r: &RecordAndOffset) -> Received {
    let header = |k: &str| {
        r.record
            .headers
            .get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Received {
        id: header("cds-events-id").unwrap_or_default(),
        seq: header("cds-events-seq").and_then(|s| s.parse().ok()),
        body: r.record.value.clone().unwrap_or_default(),
        route: String::from_utf8_lossy(r.record.key.as_deref().unwrap_or_default()).into_owned(),
        content_type: header("content-type"),
    }
}

#[async_trait]
impl Reader for PartitionReader {
    async fn next(&mut self, timeout: Duration) -> Option<Received> {
        self.record(timeout).await.map(|r| received(&r))
    }
}

#[async_trait]
impl Harness for Kafka {
    fn settings(&self, ns: &str) -> SinkKind {
        let mut c = KafkaConfig::new(vec![self.address()]);
        c.topic = topic(ns);
        SinkKind::Kafka(c)
    }

    fn unreachable(&self, ns: &str, secret: &str) -> SinkKind {
        let mut c = KafkaConfig::new(vec!["127.0.0.1:1".into()]);
        c.topic = topic(ns);
        c.user = Some("cds".into());
        c.password = Some(secret.into());
        c.connect_timeout = Duration::from_millis(500);
        c.timeout = Duration::from_millis(500);
        SinkKind::Kafka(c)
    }

    async fn reader(&self, ns: &str) -> Box<dyn Reader> {
        Box::new(PartitionReader::new(&self.address(), &topic(ns), 0))
    }

    fn broker_addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn client_resends(&self) -> bool {
        true
    }

    fn settings_at(&self, ns: &str, addr: &str) -> SinkKind {
        let (_, advertised) = self.broker_advertising(Some(addr));
        assert_eq!(
            advertised.as_deref(),
            Some(addr),
            "the broker was started before the proxy was known"
        );
        let mut c = KafkaConfig::new(vec![addr.to_owned()]);
        c.topic = topic(ns);
        c.timeout = Duration::from_secs(2);
        c.connect_timeout = Duration::from_secs(2);
        SinkKind::Kafka(c)
    }

    async fn cleanup(&self, ns: &str) {
        let c = client(&self.address()).await;
        let _ = c
            .controller_client()
            .expect("controller")
            .delete_topic(topic(ns), 5_000)
            .await;
    }
}

cds_events_sinks::sink_conformance_tests!(Kafka::start());

/// A message of project `PROJ` in run `run` (none: no run id).
fn message(seq: u64, run: Option<&str>) -> Message {
    let mut body = serde_json::json!({ "id": format!("id-{seq}"), "type": "RunJobEnded", "project_key": "PROJ" });
    if let Some(run) = run {
        body["workflow_run_id"] = run.into();
    }
    Message::cds(
        Seq(seq),
        format!("id-{seq}"),
        EventType::RunJobEnded,
        "PROJ",
        body.to_string(),
    )
}

fn kafka(broker: &Tansu, topic: &str, tune: impl FnOnce(&mut KafkaConfig)) -> Box<dyn Sink> {
    let mut c = KafkaConfig::new(vec![broker.address()]);
    c.topic = topic.to_owned();
    tune(&mut c);
    build(&cds_events_sinks::conformance::config(
        "k",
        SinkKind::Kafka(c),
    ))
    .expect("build")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_key_their_events_onto_kafkas_partition_in_order_per_run() {
    let broker = Tansu::start();
    let mut sink = kafka(&broker, "runs", |c| {
        c.key = KeyBy::WorkflowRunId;
        c.partitions = 3;
    });
    sink.connect().await.expect("connect");
    let runs = ["run-a", "run-b", "run-c", "run-d", "run-e"];
    let batch: Vec<Message> = (1..=60)
        .map(|s| {
            message(
                s,
                (!s.is_multiple_of(6)).then(|| runs[s as usize % runs.len()]),
            )
        })
        .collect();
    sink.send(&batch[..30]).await.expect("acknowledged");
    sink.send(&batch[30..]).await.expect("acknowledged");
    let mut seen = 0;
    let mut partitions_used = std::collections::BTreeSet::new();
    for partition in 0..3 {
        let mut reader = PartitionReader::new(&broker.address(), "runs", partition);
        let mut last_per_key = std::collections::HashMap::<String, u64>::new();
        while let Some(r) = reader.record(Duration::from_millis(700)).await {
            let got = received(&r);
            let key = got.route.clone();
            assert_eq!(partition_of(key.as_bytes(), 3), partition, "{key}");
            let seq = got.seq.expect("seq header");
            let sent = &batch[seq as usize - 1];
            let expected_key = if seq.is_multiple_of(6) {
                "PROJ"
            } else {
                runs[seq as usize % runs.len()]
            };
            assert_eq!(
                (key.as_str(), got.id.as_str()),
                (expected_key, sent.id.as_str())
            );
            assert_eq!(
                r.record.headers.get("cds-events-type").map(Vec::as_slice),
                Some(&b"RunJobEnded"[..])
            );
            assert_eq!(got.body, sent.body.as_bytes());
            let before = last_per_key.insert(key.clone(), seq);
            assert!(
                before.is_none_or(|b| b < seq),
                "{key}: {before:?} then {seq}"
            );
            partitions_used.insert(partition);
            seen += 1;
        }
    }
    assert_eq!(seen, 60, "every message once");
    assert!(
        partitions_used.len() > 1,
        "runs spread: {partitions_used:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_max_request_bytes_goes_as_several_requests_in_order() {
    let broker = Tansu::start();
    let mut sink = kafka(&broker, "small", |c| c.max_request_bytes = 1024);
    sink.connect().await.expect("connect");
    let batch: Vec<Message> = (1..=40).map(|s| message(s, None)).collect();
    sink.send(&batch).await.expect("acknowledged");
    let mut reader = PartitionReader::new(&broker.address(), "small", 0);
    let mut offsets = Vec::new();
    for m in &batch {
        let r = reader
            .record(Duration::from_secs(10))
            .await
            .expect("arrives");
        assert_eq!(received(&r).id, m.id);
        offsets.push(r.offset);
    }
    assert_eq!(offsets, (0..40).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_an_error_naming_it_when_the_sink_may_not_create_it() {
    let broker = Tansu::start();
    let mut sink = kafka(&broker, "absent", |c| c.create_topic = false);
    let e = sink.connect().await.expect_err("no topic");
    assert!(e.to_string().contains("absent"), "{e}");
    let mut sink = kafka(&broker, "absent", |_| {});
    sink.connect().await.expect("created");
    let c = client(&broker.address()).await;
    let made = c.list_topics().await.expect("topics");
    let absent = made.iter().find(|t| t.name == "absent").expect("made");
    assert_eq!(absent.partitions.len(), 1, "one partition by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_after_the_broker_went_away_fails_and_says_disconnected() {
    let broker = Tansu::start();
    let address = broker.address();
    let mut sink = kafka(&broker, "away", |c| {
        c.timeout = Duration::from_millis(800);
        c.connect_timeout = Duration::from_millis(800);
    });
    sink.connect().await.expect("connect");
    sink.send(&[message(1, None)]).await.expect("acknowledged");
    drop(broker);
    let e = sink
        .send(&[message(2, None)])
        .await
        .expect_err("nobody acknowledges");
    assert!(matches!(e, cds_events_sinks::SinkError::Send(_)), "{e}");
    assert!(matches!(
        sink.health().await,
        cds_events_sinks::Health::Disconnected(_)
    ));
    assert!(sink.connect().await.is_err(), "still away at {address}");
}

/// Reads `n` records of `topic` (partition 0, from its start) with
/// kafka-python and parses each with the CloudEvents SDK's Kafka binding
/// in binary mode; prints the headers, key and parsed event.
const READ_BINARY: &str = r#"
import json, sys
from kafka import KafkaConsumer, TopicPartition
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
address, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = KafkaConsumer(bootstrap_servers=address, group_id=None,
                         enable_auto_commit=False, consumer_timeout_ms=20000)
tp = TopicPartition(topic, 0)
consumer.assign([tp])
consumer.seek_to_beginning(tp)
out = []
for m in consumer:
    headers = {k: v for k, v in m.headers}
    e = from_binary(KafkaMessage(headers=headers, key=m.key, value=m.value), JSONFormat())
    attributes = {k: v for k, v in e.get_attributes().items() if k != "time"}
    out.append({"headers": {k: v.decode() for k, v in headers.items()},
                "key": m.key.decode(), "attributes": attributes,
                "time": e.get_time().timestamp(), "data": e.get_data()})
    if len(out) == n:
        break
json.dump(out, sys.stdout)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_mode_follows_the_kafka_binding_as_the_cloudevents_sdk_reads_it() {
    use cds_events_sinks::conformance::{Running, append_runs, expect_parsed, open_log, until};
    use cds_events_sinks::{ContentMode, Format};
    let broker = Tansu::start();
    let (_dir, log) = open_log();
    let sink = |name: &str, format: Format| {
        let mut k = KafkaConfig::new(vec![broker.address()]);
        k.topic = format!("binary-{name}");
        k.key = KeyBy::WorkflowRunId;
        let mut c = cds_events_sinks::conformance::config(name, SinkKind::Kafka(k));
        c.format = format;
        c.content_mode = ContentMode::Binary;
        c
    };
    let configs = [
        sink("ce", Format::CloudEvents),
        sink("cd", Format::CdEvents),
    ];
    let running = Running::start(&log, &configs).await;
    let events = append_runs(log.as_ref(), 9).await;
    until("both sinks sent", || async {
        running.status("ce").await.sent == 9 && running.status("cd").await.sent == 6
    })
    .await;
    for (name, format, n) in [("ce", Format::CloudEvents, 9), ("cd", Format::CdEvents, 6)] {
        let topic = format!("binary-{name}");
        let parsed = cds_events_sinks::conformance::python(
            READ_BINARY,
            &[&broker.address(), &topic, &n.to_string()],
        );
        let parsed = parsed.as_array().expect("a list");
        assert_eq!(parsed.len(), n, "{name}");
        for p in parsed {
            let event = expect_parsed(log.as_ref(), p, format).await;
            let headers = p["headers"].as_object().expect("headers");
            // 3.2.1: `content-type` is datacontenttype; 3.2.3: every other
            // attribute is a `ce_` header, and no other header is `ce_`.
            assert_eq!(headers["content-type"], "application/json", "{p}");
            assert!(!headers.contains_key("ce_datacontenttype"), "{p}");
            let ce_names: Vec<&String> = headers.keys().filter(|k| k.starts_with("ce_")).collect();
            let attributes = p["attributes"].as_object().expect("attributes");
            // (`time` is printed apart, as a number.)
            for k in &ce_names {
                assert!(
                    k.as_str() == "ce_time" || attributes.contains_key(&k[3..]),
                    "{k}"
                );
            }
            for name in attributes.keys() {
                if name != "datacontenttype" && name != "partitionkey" {
                    assert!(headers.contains_key(&format!("ce_{name}")), "{name}: {p}");
                }
            }
            assert_eq!(headers["ce_id"], event.id.as_str());
            // 3.1: the sink's key, as it is (the SDK reads it back as
            // `partitionkey`).
            let run = events
                .iter()
                .find(|e| e.id == event.id)
                .map(|e| e.workflow_run_id.clone())
                .unwrap_or_default();
            let key = if run.is_empty() { "PROJ".into() } else { run };
            assert_eq!(p["key"], key.as_str());
            assert_eq!(attributes["partitionkey"], key.as_str());
        }
    }
    running.stop().await;
}
