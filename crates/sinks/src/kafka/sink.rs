//! The Kafka connection of one sink (`rskafka`).

use super::{KafkaConfig, SaslMechanism, message_key, partition_of};
use crate::{Health, Message, Sink, SinkError};
use async_trait::async_trait;
use rskafka::BackoffConfig;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use std::collections::BTreeMap;
use std::time::Duration;

/// One sink's connection: the client and one producer per partition of
/// the topic. A failure drops it all; the next `connect` starts afresh
/// (and reads the partition count again).
pub struct KafkaSink {
    config: KafkaConfig,
    connection: Option<Connection>,
}

struct Connection {
    /// Kept for the partition clients' broker connections.
    _client: Client,
    partitions: Vec<PartitionClient>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("config", &self.config)
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

impl KafkaSink {
    pub fn new(config: KafkaConfig) -> KafkaSink {
        KafkaSink {
            config,
            connection: None,
        }
    }

    /// An error's text with the password masked (rskafka does not print
    /// it, but a broker's message could echo anything).
    fn masked(&self, e: impl std::fmt::Display) -> String {
        let mut text = e.to_string();
        if let Some(p) = self.config.password.as_deref().filter(|p| !p.is_empty()) {
            text = text.replace(p, "***");
        }
        text
    }

    async fn open(&self) -> Result<Connection, SinkError> {
        let c = &self.config;
        let connect = |e: KafkaError| SinkError::Connect(self.masked(e));
        let mut builder = ClientBuilder::new(c.brokers.clone())
            .client_id("cds-events-sink")
            // rskafka retries inside each call; the deadline bounds that so
            // that a failure comes back to the driver, whose backoff rules.
            // It ends before `connect_timeout` does, so that a broker that
            // cannot be reached or refuses the TLS handshake (an unknown
            // CA, a missing client certificate) is reported with
            // rskafka's last error rather than a bare timeout.
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                base: 2.,
                deadline: Some(c.timeout.min(c.connect_timeout.mul_f64(0.8))),
            });
        if let (Some(user), Some(password)) = (&c.user, &c.password) {
            let credentials = Credentials::new(user.clone(), password.clone());
            builder = builder.sasl_config(match c.sasl_mechanism {
                SaslMechanism::Plain => SaslConfig::Plain(credentials),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
            });
        }
        if let Some(tls) = c
            .tls_config()
            .map_err(|(key, m)| SinkError::Config(format!("{key}: {m}")))?
        {
            builder = builder.tls_config(tls);
        }
        let client = builder.build().await.map_err(connect)?;
        let mut count = self.partition_count(&client).await.map_err(connect)?;
        if count.is_none() && c.create_topic {
            let created = client
                .controller_client()
                .map_err(connect)?
                .create_topic(
                    &c.topic,
                    c.partitions,
                    c.replication_factor,
                    c.connect_timeout.as_millis().min(i32::MAX as u128) as i32,
                )
                .await;
            match created {
                Ok(()) => {}
                // Made meanwhile by another producer: use it as it is.
                Err(KafkaError::ServerError {
                    protocol_error: ProtocolError::TopicAlreadyExists,
                    ..
                }) => {}
                Err(e) => {
                    return Err(SinkError::Connect(format!(
                        "creating topic {}: {}",
                        c.topic,
                        self.masked(e)
                    )));
                }
            }
            count = self.partition_count(&client).await.map_err(connect)?;
        }
        let Some(count) = count.filter(|n| *n > 0) else {
            return Err(SinkError::Connect(format!(
                "topic {} does not exist (create_topic = false)",
                c.topic
            )));
        };
        let mut partitions = Vec::with_capacity(count as usize);
        for p in 0..count {
            partitions.push(
                client
                    // Retry: a topic just made may not be known to every
                    // broker yet (bounded by the backoff's deadline).
                    .partition_client(c.topic.clone(), p, UnknownTopicHandling::Retry)
                    .await
                    .map_err(connect)?,
            );
        }
        Ok(Connection {
            _client: client,
            partitions,
        })
    }

    /// The topic's partition count, `None` when it does not exist.
    async fn partition_count(&self, client: &Client) -> Result<Option<i32>, KafkaError> {
        Ok(client
            .list_topics()
            .await?
            .into_iter()
            .find(|t| t.name == self.config.topic)
            .map(|t| t.partitions.len() as i32))
    }

    /// The records of a batch per partition, each partition's in sequence
    /// order, cut into requests of at most `max_request_bytes`.
    fn requests(&self, batch: &[Message], partitions: i32) -> BTreeMap<i32, Vec<Vec<Record>>> {
        let now = chrono::Utc::now();
        let mut out: BTreeMap<i32, Vec<Vec<Record>>> = BTreeMap::new();
        let mut sizes: BTreeMap<i32, usize> = BTreeMap::new();
        for m in batch {
            let key = message_key(self.config.key, m).into_bytes();
            let partition = partition_of(&key, partitions);
            let mut headers = BTreeMap::from([
                ("cds-events-id".to_owned(), m.id.clone().into_bytes()),
                (
                    "cds-events-seq".to_owned(),
                    m.seq.0.to_string().into_bytes(),
                ),
                (
                    "cds-events-type".to_owned(),
                    m.event_type.as_str().as_bytes().to_vec(),
                ),
            ]);
            if let Some(ct) = m.content_type {
                headers.insert("content-type".to_owned(), ct.as_bytes().to_vec());
            }
            // Binary content mode: `ce_<attribute>` (Kafka binding 3.2.3).
            for (name, value) in &m.ce_headers {
                headers.insert(name.clone(), value.as_bytes().to_vec());
            }
            let record = Record {
                key: Some(key),
                value: Some(m.body.as_bytes().to_vec()),
                headers,
                timestamp: now,
            };
            let size = record.approximate_size();
            let requests = out.entry(partition).or_default();
            let used = sizes.entry(partition).or_default();
            match requests.last_mut() {
                Some(last) if *used + size <= self.config.max_request_bytes => last.push(record),
                // A record over the limit alone still goes (the broker says
                // whether it takes it).
                _ => {
                    requests.push(vec![record]);
                    *used = 0;
                }
            }
            *used += size;
        }
        out
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn connect(&mut self) -> Result<(), SinkError> {
        self.connection = None;
        let c = &self.config;
        let opened = tokio::time::timeout(c.connect_timeout, self.open())
            .await
            .map_err(|_| {
                SinkError::Connect(format!(
                    "{}: no answer within {:?}",
                    c.brokers.join(","),
                    c.connect_timeout
                ))
            })??;
        self.connection = Some(opened);
        Ok(())
    }

    async fn send(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        let Some(connection) = &self.connection else {
            return Err(SinkError::Connect("not connected".into()));
        };
        let requests = self.requests(batch, connection.partitions.len() as i32);
        // Partitions in parallel, each one's requests one after the other
        // (the order of a key); every produce waits for acks = all.
        let produced =
            futures_util::future::join_all(requests.into_iter().map(|(partition, requests)| {
                let client = &connection.partitions[partition as usize];
                async move {
                    for records in requests {
                        client
                            .produce(records, Compression::NoCompression)
                            .await
                            .map_err(|e| (partition, e))?;
                    }
                    Ok::<(), (i32, KafkaError)>(())
                }
            }));
        let failure = match tokio::time::timeout(self.config.timeout, produced).await {
            Ok(results) => results
                .into_iter()
                .find_map(Result::err)
                .map(|(p, e)| format!("{} partition {p}: {}", self.config.topic, self.masked(e))),
            Err(_) => Some(format!(
                "{}: not acknowledged within {:?}",
                self.config.topic, self.config.timeout
            )),
        };
        match failure {
            None => Ok(()),
            Some(text) => {
                // Made again by the next `connect`.
                self.connection = None;
                Err(SinkError::Send(text))
            }
        }
    }

    async fn health(&self) -> Health {
        match &self.connection {
            Some(_) => Health::Connected,
            None => Health::Disconnected("not connected".into()),
        }
    }
}
