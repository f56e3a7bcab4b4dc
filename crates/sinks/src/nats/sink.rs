//! The NATS JetStream connection of one sink.

use super::{NatsConfig, subject};
use crate::{Health, Message, Sink, SinkError};
use async_nats::jetstream::{self, context::PublishAckFuture};
use async_trait::async_trait;
use bytes::Bytes;

/// One sink's connection to NATS (made at the first `connect`; the client
/// then reconnects by itself, and a batch that fails meanwhile is sent
/// again by the driver).
///
/// Under a cut connection the client keeps the publishes it has not
/// written yet and writes them on the new connection, while those it had
/// written are lost with the old one and their acknowledgements never
/// come: the batch fails at `ack_timeout` and is sent again, and
/// JetStream drops the copies it already has (`Nats-Msg-Id`). A cut that
/// falls inside one batch's writes could therefore store that batch's
/// later messages before its earlier ones (the earlier sent again after);
/// the conformance check's cuts have not shown it, and a fix (each
/// message expecting the previous one's id) would stall a sink that
/// shares its stream with another publisher.
pub struct NatsSink {
    config: NatsConfig,
    client: Option<(async_nats::Client, jetstream::Context)>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSink")
            .field("config", &self.config)
            .field("connected", &self.client.is_some())
            .finish()
    }
}

impl NatsSink {
    pub fn new(config: NatsConfig) -> NatsSink {
        NatsSink {
            config,
            client: None,
        }
    }

    async fn open(&self) -> Result<(async_nats::Client, jetstream::Context), SinkError> {
        let c = &self.config;
        let mut options = async_nats::ConnectOptions::new()
            .name("cds-events-sink")
            .connection_timeout(c.connect_timeout);
        if let Some(token) = &c.token {
            options = options.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&c.user, &c.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        let servers: Vec<&str> = c.url.split(',').map(str::trim).collect();
        // The client's errors name the server address, never the password.
        let client = options
            .connect(servers)
            .await
            .map_err(|e| SinkError::Connect(format!("{}: {e}", crate::mask_url(&c.url))))?;
        let context = jetstream::ContextBuilder::new()
            .timeout(c.ack_timeout)
            .ack_timeout(c.ack_timeout)
            // A whole batch is in flight at once; wait for room rather than fail.
            .max_ack_inflight(4096)
            .backpressure_on_inflight(true)
            .build(client.clone());
        Ok((client, context))
    }

    /// Creates the stream taking `<prefix>.>` when it is missing.
    async fn ensure_stream(&self, context: &jetstream::Context) -> Result<(), SinkError> {
        let Some(name) = &self.config.stream else {
            return Ok(());
        };
        context
            .get_or_create_stream(jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![format!("{}.>", self.config.subject_prefix)],
                ..Default::default()
            })
            .await
            .map_err(|e| SinkError::Connect(format!("stream {name}: {e}")))?;
        Ok(())
    }
}

#[async_trait]
impl Sink for NatsSink {
    async fn connect(&mut self) -> Result<(), SinkError> {
        if self.client.is_none() {
            self.client = Some(self.open().await?);
        }
        if let Some((_, context)) = &self.client {
            self.ensure_stream(context).await?;
        }
        Ok(())
    }

    async fn send(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        let Some((_, context)) = &self.client else {
            return Err(SinkError::Connect("not connected".into()));
        };
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(batch.len());
        for m in batch {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", m.id.as_str());
            headers.insert("cds-events-seq", m.seq.0.to_string().as_str());
            headers.insert("cds-events-type", m.event_type.as_str());
            if let Some(ct) = m.content_type {
                headers.insert("content-type", ct);
            }
            // Binary content mode: `ce-<attribute>`, percent-encoded (NATS
            // binding 3.1.3).
            for (name, value) in &m.ce_headers {
                headers.insert(name.as_str(), value.as_str());
            }
            let body = Bytes::copy_from_slice(m.body.as_bytes());
            let ack = context
                .publish_with_headers(subject(&self.config.subject_prefix, m), headers, body)
                .await
                .map_err(|e| SinkError::Send(format!("publish of seq {}: {e}", m.seq)))?;
            acks.push(ack);
        }
        // Every publish is on the wire: await their acknowledgements together.
        let results = futures_util::future::join_all(
            acks.into_iter().map(std::future::IntoFuture::into_future),
        )
        .await;
        for (m, r) in batch.iter().zip(results) {
            r.map_err(|e| SinkError::Send(format!("seq {}: {e}", m.seq)))?;
        }
        Ok(())
    }

    async fn health(&self) -> Health {
        match &self.client {
            None => Health::Disconnected("not connected".into()),
            Some((client, _)) => match client.connection_state() {
                async_nats::connection::State::Connected => Health::Connected,
                other => Health::Disconnected(format!("{other:?}").to_lowercase()),
            },
        }
    }
}
