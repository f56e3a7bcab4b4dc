//! The Redis connection of one sink.

use super::RedisConfig;
use crate::{Health, Message, Sink, SinkError};
use async_trait::async_trait;
use cds_events_model::EventType;
use redis::IntoConnectionInfo;
use redis::aio::MultiplexedConnection;

/// One sink's connection to Redis.
pub struct RedisSink {
    config: RedisConfig,
    connection: Option<MultiplexedConnection>,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink")
            .field("config", &self.config)
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

impl RedisSink {
    pub fn new(config: RedisConfig) -> RedisSink {
        RedisSink {
            config,
            connection: None,
        }
    }

    /// An error's text with every credential masked.
    fn masked(&self, e: &redis::RedisError) -> String {
        let mut text = e.to_string();
        if let Some(p) = &self.config.password {
            text = text.replace(p.as_str(), "***");
        }
        if let Ok(u) = url::Url::parse(&self.config.url)
            && let Some(p) = u.password()
        {
            text = text.replace(p, "***");
        }
        text
    }

    async fn open(&self) -> Result<MultiplexedConnection, SinkError> {
        let c = &self.config;
        let connect = |e: redis::RedisError| SinkError::Connect(self.masked(&e));
        let info = c.url.trim().into_connection_info().map_err(connect)?;
        let mut settings = info.redis_settings().clone();
        if let Some(p) = &c.password {
            settings = settings.set_password(p);
        }
        if let Some(u) = &c.username {
            settings = settings.set_username(u);
        }
        let info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(connect)?;
        let conf = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(c.timeout))
            .set_response_timeout(Some(c.timeout));
        client
            .get_multiplexed_async_connection_with_config(&conf)
            .await
            .map_err(connect)
    }
}

#[async_trait]
impl Sink for RedisSink {
    async fn connect(&mut self) -> Result<(), SinkError> {
        let mut con = self.open().await?;
        redis::cmd("PING")
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| SinkError::Connect(self.masked(&e)))?;
        self.connection = Some(con);
        Ok(())
    }

    async fn send(&mut self, batch: &[Message]) -> Result<(), SinkError> {
        let c = &self.config;
        let mut pipe = redis::pipe();
        for m in batch {
            // What CDS's Publish writes: the event's JSON itself.
            if !c.channel.is_empty() {
                pipe.cmd("PUBLISH")
                    .arg(&c.channel)
                    .arg(m.body.as_bytes())
                    .ignore();
            }
            if m.event_type == EventType::RunJobEnqueued && !c.run_job_channel.is_empty() {
                pipe.cmd("PUBLISH")
                    .arg(&c.run_job_channel)
                    .arg(m.body.as_bytes())
                    .ignore();
            }
            if let Some(stream) = &c.stream {
                pipe.cmd("XADD")
                    .arg(stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(c.stream_maxlen)
                    .arg("*")
                    .arg("id")
                    .arg(&m.id)
                    .arg("seq")
                    .arg(m.seq.0)
                    .arg("type")
                    .arg(m.event_type.as_str())
                    .arg("event")
                    .arg(m.body.as_bytes())
                    .ignore();
            }
        }
        let Some(con) = self.connection.as_mut() else {
            return Err(SinkError::Connect("not connected".into()));
        };
        let result = pipe.query_async::<()>(con).await;
        if let Err(e) = result {
            let text = self.masked(&e);
            // A broken connection is made again by the next `connect`.
            self.connection = None;
            return Err(SinkError::Send(text));
        }
        Ok(())
    }

    async fn health(&self) -> Health {
        match &self.connection {
            Some(_) => Health::Connected,
            None => Health::Disconnected("not connected".into()),
        }
    }
}
