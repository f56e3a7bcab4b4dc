//! The AMQP connection of one sink: one connection, one channel in
//! publisher-confirm mode.

use super::{AmqpConfig, routing_key};
use crate::{Health, Message, Sink, SinkError};
use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use std::task::Poll;

/// One sink's connection to the broker. lapin's own recovery is left off:
/// after any failure the driver calls `connect` again, which opens a new
/// connection when the old one is gone, and sends the whole batch again.
pub struct AmqpSink {
    config: AmqpConfig,
    /// Shown by the broker (`rabbitmqctl list_connections client_properties`,
    /// the management UI): `cds-events sink <name>`.
    connection_name: String,
    link: Option<Link>,
}

struct Link {
    // Dropping the connection closes it.
    connection: Connection,
    channel: Channel,
}

impl Link {
    fn is_open(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

impl std::fmt::Debug for AmqpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never lapin's own Debug: its configuration holds the URI.
        f.debug_struct("AmqpSink")
            .field("config", &self.config)
            .field("connection_name", &self.connection_name)
            .field("connected", &self.link.as_ref().is_some_and(Link::is_open))
            .finish()
    }
}

impl AmqpSink {
    /// The sink of `config`, for the sink named `name`.
    pub fn new(config: AmqpConfig, name: &str) -> AmqpSink {
        AmqpSink {
            config,
            connection_name: format!("cds-events sink {name}"),
            link: None,
        }
    }

    /// An error's text with the URL's password masked (lapin quotes the
    /// URI in some errors), as written and percent-decoded.
    fn masked(&self, e: impl std::fmt::Display) -> String {
        let mut text = e.to_string();
        if let Ok(u) = url::Url::parse(self.config.url.trim())
            && let Some(p) = u.password()
            && !p.is_empty()
        {
            text = text.replace(p, "***").replace(&percent_decoded(p), "***");
        }
        text
    }

    /// Connects, opens the channel in confirm mode and declares the
    /// exchange (durable, topic).
    async fn open(&self) -> Result<Link, SinkError> {
        let c = &self.config;
        let where_ = crate::mask_url(&c.url);
        let connect = |what: &str, e: lapin::Error| {
            SinkError::Connect(format!("{where_}: {what}: {}", self.masked(e)))
        };
        let properties = ConnectionProperties::default()
            .with_connection_name(self.connection_name.as_str().into());
        let connection = Connection::connect(c.url.trim(), properties)
            .await
            .map_err(|e| connect("connect", e))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| connect("channel", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| connect("confirm.select", e))?;
        channel
            .exchange_declare(
                c.exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| connect(&format!("exchange {}", c.exchange), e))?;
        Ok(Link {
            connection,
            channel,
        })
    }

    /// Publishes the batch and awaits every confirm: `Ok(Err(_))` for a
    /// nack or a returned message (the connection is fine), `Err(_)` when
    /// the connection or channel failed.
    async fn publish(
        &self,
        channel: &Channel,
        batch: &[Message],
    ) -> Result<Result<(), SinkError>, SinkError> {
        let c = &self.config;
        let broken =
            |what: String, e: lapin::Error| SinkError::Send(format!("{what}: {}", self.masked(e)));
        // lapin queues a message's frames and takes its delivery tag on the
        // first poll of `basic_publish`, then waits for its I/O loop to
        // write them. Polling each once, in turn, keeps the batch's order on
        // the wire while the writes overlap: awaiting each in turn paid one
        // round trip to the I/O loop per message.
        let mut writes = Vec::with_capacity(batch.len());
        for m in batch {
            let mut headers = FieldTable::default();
            headers.insert(
                "cds-events-seq".into(),
                AMQPValue::LongLongInt(m.seq.0 as i64),
            );
            headers.insert(
                "cds-events-type".into(),
                AMQPValue::LongString(m.event_type.as_str().into()),
            );
            // Binary content mode: `cloudEvents_<attribute>` (AMQP binding
            // 3.1.3), strings in their canonical form.
            for (name, value) in &m.ce_headers {
                headers.insert(
                    name.as_str().into(),
                    AMQPValue::LongString(value.as_str().into()),
                );
            }
            let mut properties = BasicProperties::default()
                .with_message_id(m.id.as_str().into())
                .with_delivery_mode(2)
                .with_type(m.event_type.as_str().into())
                .with_headers(headers);
            if let Some(ct) = m.content_type {
                properties = properties.with_content_type(ct.into());
            }
            let key = routing_key(c.routing_key_prefix.as_deref(), m);
            let mut write = Box::pin(channel.basic_publish(
                c.exchange.as_str().into(),
                key.into(),
                BasicPublishOptions {
                    mandatory: c.mandatory,
                    ..Default::default()
                },
                m.body.as_bytes(),
                properties,
            ));
            let first = futures_util::poll!(write.as_mut());
            writes.push((m, first, write));
        }
        let mut confirms = Vec::with_capacity(batch.len());
        for (m, first, write) in writes {
            let written = match first {
                Poll::Ready(written) => written,
                Poll::Pending => write.await,
            };
            confirms.push(written.map_err(|e| broken(format!("publish of seq {}", m.seq), e))?);
        }
        // Every message is on its way: their confirms come in together.
        let results = futures_util::future::join_all(confirms).await;
        let mut refused = None;
        for (m, r) in batch.iter().zip(results) {
            let why = match r.map_err(|e| broken(format!("confirm of seq {}", m.seq), e))? {
                Confirmation::Ack(None) => continue,
                Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => format!(
                    "returned by the broker: {} {} (no queue is bound for routing key {})",
                    returned.reply_code, returned.reply_text, returned.delivery.routing_key
                ),
                Confirmation::Nack(None) => "nacked by the broker".to_owned(),
                Confirmation::NotRequested => "not confirmed (confirm mode is off)".to_owned(),
            };
            refused.get_or_insert_with(|| SinkError::Send(format!("seq {}: {why}", m.seq)));
        }
        Ok(refused.map_or(Ok(()), Err))
    }
}

#[async_trait]
impl Sink for AmqpSink {
    async fn connect(&mut self) -> Result<(), SinkError> {
        if self.link.as_ref().is_some_and(Link::is_open) {
            // Still open (the last failure was a nack or a return).
            return Ok(());
        }
        // The old connection (if any) is closed by its drop.
        self.link = None;
        let timeout = self.config.connect_timeout;
        let link = tokio::time::timeout(timeout, self.open())
            .await
            .map_err(|_| {
                SinkError::Connect(format!(
                    "{}: no answer within {timeout:?}",
                    crate::mask_url(&self.config.url)
                ))
            })??;
        self.link = Some(link);
        Ok(())
    }

    async fn send(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        let Some(link) = &self.link else {
            return Err(SinkError::Connect("not connected".into()));
        };
        let timeout = self.config.ack_timeout;
        match tokio::time::timeout(timeout, self.publish(&link.channel, batch)).await {
            Ok(Ok(refused)) => refused,
            Ok(Err(broken)) => {
                self.link = None;
                Err(broken)
            }
            Err(_) => {
                // Confirms may still come for this batch: a new channel
                // makes sure none is taken for the next one's.
                self.link = None;
                Err(SinkError::Send(format!(
                    "the batch was not confirmed within {timeout:?}"
                )))
            }
        }
    }

    async fn health(&self) -> Health {
        match &self.link {
            None => Health::Disconnected("not connected".into()),
            Some(link) if link.is_open() => Health::Connected,
            Some(link) => {
                let s = link.connection.status();
                let why = if s.closed() || s.closing() {
                    "the connection is closed"
                } else if s.errored() {
                    "the connection failed"
                } else if s.connected() {
                    "the channel is closed"
                } else {
                    "connecting"
                };
                Health::Disconnected(why.into())
            }
        }
    }
}

/// `%XX` escapes decoded (a URL's user info); anything else kept.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
