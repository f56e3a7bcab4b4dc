//! Kafka: each event produced to one topic (`cds-events` by default), its
//! value the stored event JSON, its key the project key (or the workflow
//! run id, for order per run), with headers `cds-events-id`,
//! `cds-events-seq` and `cds-events-type`. A batch is produced with
//! `acks = all` and returns once every partition it touched acknowledged.
//!
//! Order per key: the partition of a key is Kafka's default partitioner's
//! (murmur2 of the key, modulo the topic's partition count), so a key
//! always lands on one partition, in sequence order, and a consumer
//! written against any stock client finds it where that client's own
//! producer would put it. Adding partitions to the topic later moves keys
//! (as with every Kafka producer): order holds only from then on.
//!
//! The client is `rskafka` (pure Rust, no C build): it has no idempotent
//! producer, so a produce request retried inside the client, like a batch
//! sent again by the driver, may write a duplicate; duplicates stay within
//! the batch that was not acknowledged, and every message carries the
//! event id to drop them by.

mod sink;
pub mod testing;
mod tls;

pub use sink::KafkaSink;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The settings of a `kind = "kafka"` sink.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` each. The client then talks to the
    /// addresses the brokers advertise.
    pub brokers: Vec<String>,
    /// Every event goes to this topic.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// What a message's key is, and so what keeps its order.
    #[serde(default)]
    pub key: KeyBy,
    /// Create the topic at connect when it is missing (else it must exist).
    #[serde(default = "yes")]
    pub create_topic: bool,
    /// Partitions of a topic the sink creates. One keeps a total order;
    /// more spread the keys (order is then per key).
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replicas of each partition of a topic the sink creates.
    #[serde(default = "default_replication")]
    pub replication_factor: i16,
    /// SASL user name (with `password`); unset: no authentication.
    #[serde(default)]
    pub user: Option<String>,
    /// The SASL password. Never printed.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// The SASL mechanism for `user`/`password`.
    #[serde(default)]
    pub sasl_mechanism: SaslMechanism,
    /// Connect over TLS (the brokers' TLS listener). Every `ca_*` and
    /// `client_*` setting needs it.
    #[serde(default)]
    pub tls: bool,
    /// CA certificates (PEM) to trust instead of the system's, inline.
    #[serde(default)]
    pub ca_cert_pem: Option<String>,
    /// CA certificates (PEM) to trust instead of the system's, from a file.
    #[serde(default)]
    pub ca_cert_file: Option<PathBuf>,
    /// The client's certificate chain (PEM), inline, for brokers that
    /// require one (mutual TLS); with `client_key_*`.
    #[serde(default)]
    pub client_cert_pem: Option<String>,
    /// The client's certificate chain (PEM), from a file.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM), inline. Never printed.
    #[serde(default, skip_serializing)]
    pub client_key_pem: Option<String>,
    /// The client certificate's private key (PEM), from a file.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// A batch not acknowledged within this fails (and is sent again).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Connecting (and creating the topic) gives up after this.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Most bytes of records in one produce request (brokers refuse a
    /// record batch over their `message.max.bytes`, 1 MB by default); a
    /// batch over it goes as several requests per partition, in order.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
}

/// What keys a message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyBy {
    /// The project key (`_global` for a global event): order per project.
    #[default]
    ProjectKey,
    /// The event's `workflow_run_id`: order per run, runs spread over the
    /// partitions. An event without one is keyed by its project key.
    WorkflowRunId,
}

/// How `user` and `password` authenticate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    #[default]
    #[serde(rename = "plain")]
    Plain,
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

fn default_topic() -> String {
    "cds-events".to_owned()
}
fn yes() -> bool {
    true
}
fn default_partitions() -> i32 {
    1
}
fn default_replication() -> i16 {
    1
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_request_bytes() -> usize {
    900_000
}

impl KafkaConfig {
    /// Settings for `brokers`, every other field at its default.
    pub fn new(brokers: Vec<String>) -> KafkaConfig {
        KafkaConfig {
            brokers,
            topic: default_topic(),
            key: KeyBy::default(),
            create_topic: true,
            partitions: default_partitions(),
            replication_factor: default_replication(),
            user: None,
            password: None,
            sasl_mechanism: SaslMechanism::default(),
            tls: false,
            ca_cert_pem: None,
            ca_cert_file: None,
            client_cert_pem: None,
            client_cert_file: None,
            client_key_pem: None,
            client_key_file: None,
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            max_request_bytes: default_max_request_bytes(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.brokers.is_empty() {
            return Err(("brokers", "at least one host:port".into()));
        }
        for b in &self.brokers {
            let port = b.rsplit_once(':').and_then(|(host, port)| {
                (!host.is_empty() && !host.contains('/'))
                    .then(|| port.parse::<u16>().ok())
                    .flatten()
            });
            if port.is_none_or(|p| p == 0) {
                return Err(("brokers", format!("{b:?} is not host:port")));
            }
        }
        let t = &self.topic;
        if t.is_empty()
            || t.len() > 249
            || t == "."
            || t == ".."
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err((
                "topic",
                format!("{t:?} is not a topic name (1 to 249 of a-z A-Z 0-9 . _ -)"),
            ));
        }
        if self.partitions < 1 {
            return Err(("partitions", "must be positive".into()));
        }
        if self.replication_factor < 1 {
            return Err(("replication_factor", "must be positive".into()));
        }
        if self.password.is_some() != self.user.is_some() {
            return Err(("password", "user and password go together".into()));
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(("timeout", "timeouts must be positive".into()));
        }
        if self.max_request_bytes < 1024 {
            return Err(("max_request_bytes", "at least 1024".into()));
        }
        if !self.tls && tls::any_set(self) {
            return Err((
                "tls",
                "CA and client certificate settings need tls = true".into(),
            ));
        }
        // Reads and parses the files now: a bad one is refused at start.
        self.tls_config()?;
        Ok(())
    }

    /// The TLS settings rskafka takes (`None` without `tls = true`).
    pub(crate) fn tls_config(
        &self,
    ) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>, (&'static str, String)> {
        tls::client_config(self)
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("key", &self.key)
            .field("partitions", &self.partitions)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("tls", &self.tls)
            .field("ca_cert_file", &self.ca_cert_file)
            .field("client_cert_file", &self.client_cert_file)
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "***"),
            )
            .field("client_key_file", &self.client_key_file)
            .finish_non_exhaustive()
    }
}

/// The key of a message: the project key (`_global` for a global event),
/// or its `workflow_run_id` when keyed by run and it has one. The same in
/// every format: the Kafka binding maps the user's key as it is (3.1), and
/// no `partitionkey` attribute is written.
pub fn message_key(key: KeyBy, m: &crate::Message) -> String {
    if key == KeyBy::WorkflowRunId
        && let Some(run) = &m.workflow_run_id
    {
        return run.clone();
    }
    m.scope_word().to_owned()
}

/// The partition of `key` among `partitions`, as Kafka's default
/// partitioner (Java's, librdkafka's `murmur2_random`, kafka-python's)
/// places a keyed record: `(murmur2(key) & 0x7fffffff) % partitions`.
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    let positive = murmur2(key) & 0x7fff_ffff;
    (positive % partitions.max(1) as u32) as i32
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), seed
/// `0x9747b28c`; u32 arithmetic is bit for bit Java's wrapping `int`.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_where_kafkas_default_partitioner_puts_them() {
        // Values from kafka-python's `murmur2` (a port of Java's), which
        // match Kafka's own `UtilsTest` ("21" -> -973932308).
        let cases: [(&[u8], u32); 6] = [
            (b"21", 3_321_034_988),
            (b"foobar", 3_504_634_814),
            (b"a-little-bit-long-string", 3_308_985_760),
            (b"abc", 479_470_107),
            (b"", 275_646_681),
            (b"PROJ", 3_919_151_571),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
        }
        assert_eq!(partition_of(b"PROJ", 7), 4);
        assert_eq!(partition_of(b"_global", 7), 5);
        assert_eq!(partition_of(b"a-little-bit-long-string", 3), 2);
        assert_eq!(partition_of(b"anything", 1), 0);
    }

    fn message(body: &str, project: &str) -> crate::Message {
        crate::Message::cds(
            cds_events_log::Seq(1),
            "i",
            cds_events_model::EventType::RunJobEnded,
            project,
            body,
        )
    }

    #[test]
    fn a_run_keys_its_events_and_an_event_without_one_falls_back_to_its_project() {
        let run = message(r#"{"id":"i","workflow_run_id":"run-7"}"#, "PROJ");
        let none = message(r#"{"id":"i","workflow_run_id":""}"#, "PROJ");
        let global = message(r#"{"id":"i"}"#, "");
        assert_eq!(message_key(KeyBy::WorkflowRunId, &run), "run-7");
        assert_eq!(message_key(KeyBy::WorkflowRunId, &none), "PROJ");
        assert_eq!(message_key(KeyBy::WorkflowRunId, &global), "_global");
        assert_eq!(message_key(KeyBy::ProjectKey, &run), "PROJ");
    }

    fn kafka(extra: &str) -> crate::SinkConfig {
        toml::from_str(&format!(
            "name = \"k1\"\nkind = \"kafka\"\nbrokers = [\"127.0.0.1:9092\"]\n{extra}"
        ))
        .expect("parses")
    }

    #[test]
    fn a_kafka_sink_reads_from_flat_toml_with_defaults() {
        let c = kafka("");
        c.validate().expect("valid");
        let crate::SinkKind::Kafka(k) = &c.kind else {
            panic!("{c:?}")
        };
        assert_eq!(
            (k.topic.as_str(), k.key, k.partitions),
            ("cds-events", KeyBy::ProjectKey, 1)
        );
        assert!(k.create_topic);
        let c = kafka("key = \"workflow_run_id\"\nsasl_mechanism = \"scram-sha-512\"");
        let crate::SinkKind::Kafka(k) = &c.kind else {
            panic!("{c:?}")
        };
        assert_eq!(
            (k.key, k.sasl_mechanism),
            (KeyBy::WorkflowRunId, SaslMechanism::ScramSha512)
        );
    }

    #[test]
    fn the_sasl_password_and_client_key_never_reach_debug_or_serialized_output() {
        let c = kafka(
            "user = \"cds\"\npassword = \"pw-s3cret\"\ntls = true\nclient_key_pem = \"key-s3cret\"",
        );
        let shown = format!("{c:?} {}", serde_json::to_string(&c).expect("json"));
        assert!(!shown.contains("key-s3cret"), "{shown}");
        let c = kafka("user = \"cds\"\npassword = \"pw-s3cret\"");
        c.validate().expect("valid");
        let shown = format!("{c:?} {}", serde_json::to_string(&c).expect("json"));
        assert!(!shown.contains("pw-s3cret"), "{shown}");
        assert!(shown.contains("cds"), "{shown}");
    }

    #[test]
    fn bad_kafka_settings_are_refused_naming_the_key() {
        let brokers = "brokers = [\"127.0.0.1:9092\"]";
        let bad = [
            ("brokers = []", "brokers"),
            ("brokers = [\"kafka://h:9092\"]", "brokers"),
            ("brokers = [\"h\"]", "brokers"),
            ("brokers = [\"h:0\"]", "brokers"),
            ("topic = \"a b\"", "topic"),
            ("topic = \"..\"", "topic"),
            ("partitions = 0", "partitions"),
            ("replication_factor = 0", "replication_factor"),
            ("password = \"x\"", "password"),
            ("timeout = \"0s\"", "timeout"),
            ("max_request_bytes = 10", "max_request_bytes"),
            ("ca_cert_file = \"/etc/ca.pem\"", "tls"),
            ("client_key_pem = \"k\"", "tls"),
            (
                "tls = true\nca_cert_file = \"/nonexistent/ca.pem\"",
                "ca_cert_file",
            ),
            ("tls = true\nca_cert_pem = \"not pem\"", "ca_cert_pem"),
            (
                "tls = true\nca_cert_pem = \"x\"\nca_cert_file = \"/x\"",
                "ca_cert_file",
            ),
            (
                "tls = true\nclient_cert_file = \"/nonexistent/c.pem\"",
                "client_cert_file",
            ),
            (
                "tls = true\nclient_key_pem = \"-----BEGIN PRIVATE KEY-----\"",
                "client_key_file",
            ),
        ];
        for (setting, key) in bad {
            // A `brokers` case replaces the valid list, any other adds to it.
            let brokers = if setting.starts_with("brokers") {
                ""
            } else {
                brokers
            };
            let text = format!("name = \"k1\"\nkind = \"kafka\"\n{brokers}\n{setting}");
            let c: crate::SinkConfig = toml::from_str(&text).expect(&text);
            let e = c.validate().expect_err(&text);
            assert_eq!(e.key, key, "{text}: {e}");
        }
        let unknown = format!("name = \"k\"\nkind = \"kafka\"\n{brokers}\nkey = \"run\"");
        assert!(toml::from_str::<crate::SinkConfig>(&unknown).is_err());
    }
}
