//! The conformance suite on Redis (the machine's, 127.0.0.1:6379, or
//! `CDS_EVENTS_TEST_REDIS`), each test on channels of its own.

use async_trait::async_trait;
use cds_events_sinks::SinkKind;
use cds_events_sinks::conformance::{Harness, Reader, Received};
use cds_events_sinks::redis::RedisConfig;
use futures_util::StreamExt;
use std::time::Duration;

fn url() -> String {
    std::env::var("CDS_EVENTS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn channel(ns: &str) -> String {
    format!("cdstest:{ns}:ui")
}

struct Redis;

struct RedisReader {
    messages: std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>,
}

#[async_trait]
impl Reader for RedisReader {
    async fn next(&mut self, timeout: Duration) -> Option<Received> {
        let m = tokio::time::timeout(timeout, self.messages.next())
            .await
            .ok()??;
        let body: Vec<u8> = m.get_payload().ok()?;
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        Some(Received {
            id,
            seq: None,
            body,
            route: m.get_channel_name().to_owned(),
            content_type: None,
        })
    }
}

#[async_trait]
impl Harness for Redis {
    fn settings(&self, ns: &str) -> SinkKind {
        let mut c = RedisConfig::new(url());
        c.channel = channel(ns);
        c.run_job_channel = format!("cdstest:{ns}:job");
        SinkKind::Redis(c)
    }

    fn broker_addr(&self) -> String {
        let u = url::Url::parse(&url()).expect("CDS_EVENTS_TEST_REDIS is a URL");
        format!(
            "{}:{}",
            u.host_str().unwrap_or("127.0.0.1"),
            u.port().unwrap_or(6379)
        )
    }

    fn settings_at(&self, ns: &str, addr: &str) -> SinkKind {
        let SinkKind::Redis(mut c) = self.settings(ns) else {
            unreachable!("Redis settings")
        };
        let mut u = url::Url::parse(&c.url).expect("a URL");
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        u.set_host(Some(host)).expect("host");
        u.set_port(port.parse().ok()).expect("port");
        c.url = u.to_string();
        c.timeout = Duration::from_secs(2);
        SinkKind::Redis(c)
    }

    fn unreachable(&self, ns: &str, secret: &str) -> SinkKind {
        let mut c = RedisConfig::new("redis://127.0.0.1:1");
        c.password = Some(secret.into());
        c.channel = channel(ns);
        c.timeout = Duration::from_millis(500);
        SinkKind::Redis(c)
    }

    async fn reader(&self, ns: &str) -> Box<dyn Reader> {
        let client = redis::Client::open(url()).expect("redis url");
        let mut pubsub = client
            .get_async_pubsub()
            .await
            .expect("Redis at CDS_EVENTS_TEST_REDIS");
        pubsub.subscribe(channel(ns)).await.expect("subscribe");
        Box::new(RedisReader {
            messages: Box::pin(pubsub.into_on_message()),
        })
    }

    async fn cleanup(&self, _ns: &str) {}
}

cds_events_sinks::sink_conformance_tests!(Redis);

#[test]
fn a_sink_on_the_bridges_channel_of_the_same_redis_loops() {
    let c = RedisConfig::new("redis://localhost:6379/2");
    assert!(c.loops_with("redis://127.0.0.1", "event:ui"));
    assert!(c.loops_with("redis://:pw@127.0.0.1:6379/0", "event:run:job"));
    assert!(!c.loops_with("redis://127.0.0.1:6380", "event:ui"));
    assert!(!c.loops_with("redis://other-host:6379", "event:ui"));
    let mut elsewhere = c.clone();
    elsewhere.channel = "relay:ui".into();
    elsewhere.run_job_channel = String::new();
    assert!(!elsewhere.loops_with("redis://127.0.0.1:6379", "event:ui"));
}
