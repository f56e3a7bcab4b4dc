//! RabbitMQ (AMQP 0-9-1): each event published to a durable topic exchange
//! (declared at connect) with the routing key
//! `[<routing_key_prefix>.]<project_key or _global>.<Type>`, as a persistent
//! message (`delivery_mode` 2) whose `message_id` is the event id, with
//! `cds-events-seq` and `cds-events-type` headers. The channel is in
//! publisher-confirm mode: a batch is published whole, then every confirm
//! is awaited; a nack, or a message the broker returns because no queue
//! takes it (`mandatory`), fails the batch, which the driver sends again.
//!
//! Readers bind their own queues to the exchange (`PROJ.#`,
//! `*.RunJobEnqueued`, `#`): the sink never declares a queue, so what it
//! publishes goes where the operators route it.

mod sink;

pub use sink::AmqpSink;

use crate::config::serialize_masked;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The settings of a `kind = "amqp"` sink.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` (`amqps://` for TLS; the
    /// vhost `/` is written `%2f`); the password is never printed.
    /// `?heartbeat=SECONDS` is honoured.
    #[serde(serialize_with = "serialize_masked")]
    pub url: String,
    /// The exchange published to: declared at connect as a durable topic
    /// exchange (an existing one of another type or durability is an
    /// error the status shows).
    #[serde(default = "default_exchange")]
    pub exchange: String,
    /// Routing keys are `<prefix>.<project_key or _global>.<Type>`; unset:
    /// `<project_key or _global>.<Type>`.
    #[serde(default)]
    pub routing_key_prefix: Option<String>,
    /// Publish `mandatory`: a message no queue takes comes back and fails
    /// its batch (sent again until some queue is bound), so that no event
    /// is dropped unseen. `false` lets the broker drop what no binding
    /// wants (readers binding only some projects or types).
    #[serde(default = "default_mandatory")]
    pub mandatory: bool,
    /// A batch whose confirms are not all in within this fails (sent again).
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Connecting (TCP, handshake, channel, exchange) gives up after this.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

fn default_exchange() -> String {
    "cds.events".to_owned()
}
fn default_mandatory() -> bool {
    true
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Longest routing key prefix: keys are at most 255 bytes, and the project
/// key and type follow it.
const MAX_PREFIX: usize = 128;

impl AmqpConfig {
    /// Settings for `url`, every other field at its default.
    pub fn new(url: impl Into<String>) -> AmqpConfig {
        AmqpConfig {
            url: url.into(),
            exchange: default_exchange(),
            routing_key_prefix: None,
            mandatory: default_mandatory(),
            ack_timeout: default_ack_timeout(),
            connect_timeout: default_connect_timeout(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let masked = crate::mask_url(&self.url);
        let u = url::Url::parse(self.url.trim())
            .map_err(|e| ("url", format!("{masked} is not a URL: {e}")))?;
        if !matches!(u.scheme(), "amqp" | "amqps") {
            return Err((
                "url",
                format!("{masked}: scheme is not amqp:// or amqps://"),
            ));
        }
        if u.host_str().is_none_or(str::is_empty) {
            return Err(("url", format!("{masked}: no host")));
        }
        // What lapin will parse at connect (its message would quote the
        // URL, password included: only whether it parses is kept).
        if self.url.trim().parse::<lapin::uri::AMQPUri>().is_err() {
            return Err((
                "url",
                format!("{masked}: not an AMQP URI (amqp://user:password@host:port/vhost)"),
            ));
        }
        let e = &self.exchange;
        if e.is_empty()
            || e.len() > 255
            || e.starts_with("amq.")
            || !e
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err((
                "exchange",
                format!(
                    "{e:?} is not an exchange this sink may declare (letters, digits, '-', '_', \
                     '.', ':'; not amq.*)"
                ),
            ));
        }
        if let Some(p) = &self.routing_key_prefix
            && (p.is_empty()
                || p.len() > MAX_PREFIX
                || p.split('.').any(str::is_empty)
                || p.contains(|c: char| c == '*' || c == '#' || c.is_whitespace()))
        {
            return Err((
                "routing_key_prefix",
                format!(
                    "{p:?} is not a routing key prefix (dot-separated words, no '*' or '#', at \
                     most {MAX_PREFIX} bytes)"
                ),
            ));
        }
        if self.ack_timeout.is_zero() {
            return Err(("ack_timeout", "must be positive".into()));
        }
        if self.connect_timeout.is_zero() {
            return Err(("connect_timeout", "must be positive".into()));
        }
        Ok(())
    }
}

impl fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &crate::mask_url(&self.url))
            .field("exchange", &self.exchange)
            .field("routing_key_prefix", &self.routing_key_prefix)
            .field("mandatory", &self.mandatory)
            .finish_non_exhaustive()
    }
}

/// One routing key word from a free word: `.` separates words, and `*`
/// and `#` are a binding's wildcards, so each becomes `_` (and so does
/// white space).
pub fn routing_word(word: &str) -> String {
    word.chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '#' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The routing key of a message: `[<prefix>.]<project_key or _global>.<Type>`.
pub fn routing_key(prefix: Option<&str>, m: &crate::Message) -> String {
    let tail = format!("{}.{}", routing_word(m.scope_word()), m.event_type.as_str());
    match prefix {
        Some(p) => format!("{p}.{tail}"),
        None => tail,
    }
}

#[cfg(test)]
mod tests {
    use crate::{SinkConfig, SinkKind};

    fn amqp(extra: &str) -> SinkConfig {
        toml::from_str(&format!(
            "name = \"r1\"\nkind = \"amqp\"\nurl = \"amqp://cds:s3cret@127.0.0.1:5672/%2f\"\n{extra}"
        ))
        .expect("parses")
    }

    #[test]
    fn an_amqp_sink_reads_from_flat_toml_with_defaults() {
        let c = amqp("");
        c.validate().expect("valid");
        let SinkKind::Amqp(a) = &c.kind else {
            panic!("{c:?}")
        };
        assert_eq!(c.kind.name(), "amqp");
        assert_eq!(a.exchange, "cds.events");
        assert_eq!(a.routing_key_prefix, None);
        assert!(a.mandatory);
        let c = amqp("exchange = \"x.y\"\nrouting_key_prefix = \"cds.ev\"\nmandatory = false");
        c.validate().expect("valid");
        assert!(
            toml::from_str::<SinkConfig>(
                "name = \"r\"\nkind = \"amqp\"\nurl = \"amqp://h\"\nexchang = \"x\""
            )
            .is_err()
        );
    }

    #[test]
    fn the_password_never_reaches_debug_serialized_output_or_errors() {
        let c = amqp("");
        let shown = format!("{c:?} {}", serde_json::to_string(&c).expect("json"));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("cds:***@127.0.0.1:5672"), "{shown}");
        let mut bad = amqp("");
        if let SinkKind::Amqp(a) = &mut bad.kind {
            a.url = "amqp://cds:s3cret@127.0.0.1:5672/%2f?heartbeat=soon".into();
        }
        let e = bad.validate().expect_err("bad heartbeat");
        assert_eq!(e.key, "url");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let bad = [
            ("url = \"http://h:5672\"", "url"),
            ("url = \"amqp://\"", "url"),
            ("exchange = \"\"", "exchange"),
            ("exchange = \"amq.topic\"", "exchange"),
            ("exchange = \"a b\"", "exchange"),
            ("routing_key_prefix = \"a..b\"", "routing_key_prefix"),
            ("routing_key_prefix = \"a.#\"", "routing_key_prefix"),
            ("routing_key_prefix = \"\"", "routing_key_prefix"),
            ("ack_timeout = \"0s\"", "ack_timeout"),
            ("connect_timeout = \"0s\"", "connect_timeout"),
        ];
        for (extra, key) in bad {
            // A second `url` replaces the first.
            let text = format!("name = \"r1\"\nkind = \"amqp\"\n{extra}");
            let text = if extra.starts_with("url") {
                text
            } else {
                format!("{text}\nurl = \"amqp://127.0.0.1\"")
            };
            let c: SinkConfig = toml::from_str(&text).expect(extra);
            let e = c.validate().expect_err(extra);
            assert_eq!(e.key, key, "{extra}: {e}");
        }
    }
}
