//! The `[[sinks]]` configuration: one entry per sink, the settings every
//! sink has (name, filter, format, batch, reconnect backoff) beside its
//! broker's own (`kind = "nats"` and the `nats` module's fields, flat).
//!
//! Credentials never leave this module in clear: `Debug` and `Serialize`
//! (what `cds-events config` prints) mask a URL's password and leave the
//! `password` and `token` fields out; errors name URLs masked.

use crate::nats::NatsConfig;
pub use cds_events_api::ContentMode;
use cds_events_api::FilterText;
use cds_events_model::EventFilter;
use cds_events_model::cloudevents::Binding;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// One sink.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SinkConfig {
    /// Names the sink in `/v2/sinks`, metrics and logs; its position is
    /// stored as `sink:<name>`, so renaming a sink starts it afresh at the
    /// head. Letters, digits, `-` and `_`.
    pub name: String,
    /// The broker and its settings: `kind = "nats"` with the NATS fields.
    #[serde(flatten)]
    pub kind: SinkKind,
    /// Only events matching this filter, written as the query API's query
    /// string (`project_key=PROJ&type=Run*`). Unset: every event.
    #[serde(default)]
    pub filter: Option<String>,
    /// What a message's body is. `cds`: the event's JSON, byte for byte as
    /// stored (CDS's `FullEventV2`); `cloudevents`: a CloudEvent 1.0 whose
    /// `data` is that JSON (the model's one mapping); `cdevents`: a CDEvent
    /// (itself a CloudEvent), events without one being skipped.
    #[serde(default)]
    pub format: Format,
    /// How a CloudEvent (`cloudevents`, `cdevents`) travels: `structured`
    /// (the default: the body is the event) or `binary` (the broker's
    /// CloudEvents protocol binding: attributes as headers, the body is
    /// `data`). Kafka, NATS and AMQP have a binding; Redis has none.
    #[serde(default)]
    pub content_mode: ContentMode,
    /// Most events read, sent and acknowledged as one batch.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// The first wait before reconnecting to a broker that failed; it
    /// doubles at each failure.
    #[serde(default = "default_reconnect_min", with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// The longest wait before reconnecting.
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// A connect, or a batch's send and acknowledgements, that takes longer
    /// fails (the batch is sent again after the backoff): whatever a
    /// broker's client does on a broken connection, a sink never waits on
    /// it forever. Above the broker's own timeouts, which fail first.
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub send_timeout: Duration,
}

fn default_batch() -> usize {
    256
}
fn default_reconnect_min() -> Duration {
    Duration::from_millis(200)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(10)
}
fn default_send_timeout() -> Duration {
    Duration::from_secs(60)
}

/// The broker of a sink, with its own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SinkKind {
    /// NATS JetStream.
    Nats(NatsConfig),
    /// Redis `PUBLISH` as CDS does (and optionally `XADD`).
    Redis(crate::redis::RedisConfig),
    /// RabbitMQ (AMQP 0-9-1): a durable topic exchange, publisher confirms.
    Amqp(crate::amqp::AmqpConfig),
    /// Kafka: one topic, keyed by project or by run.
    Kafka(crate::kafka::KafkaConfig),
}

impl SinkKind {
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Nats(_) => "nats",
            SinkKind::Redis(_) => "redis",
            SinkKind::Amqp(_) => "amqp",
            SinkKind::Kafka(_) => "kafka",
        }
    }

    /// The broker's CloudEvents protocol binding, which binary content
    /// mode follows; `None` for Redis, which has none.
    pub fn binding(&self) -> Option<Binding> {
        match self {
            SinkKind::Nats(_) => Some(Binding::Nats),
            SinkKind::Redis(_) => None,
            SinkKind::Amqp(_) => Some(Binding::Amqp),
            SinkKind::Kafka(_) => Some(Binding::Kafka),
        }
    }
}

/// A message body's format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The event's JSON as stored (CDS's `FullEventV2`, payload included).
    #[default]
    Cds,
    /// A CloudEvent 1.0 (`CloudEvent::new`), `data` being the stored JSON.
    CloudEvents,
    /// A CDEvent (`cdevents::map`), carried as a CloudEvent; an event
    /// without a CDEvents counterpart is not sent (counted in
    /// `cds_events_cdevents_unmapped_total{way="sink"}` and the sink's
    /// `skipped`).
    CdEvents,
}

impl Format {
    pub fn name(&self) -> &'static str {
        match self {
            Format::Cds => "cds",
            Format::CloudEvents => "cloudevents",
            Format::CdEvents => "cdevents",
        }
    }

    /// The media type of a structured body in this format, for the brokers
    /// that carry one (a `content-type` header or property).
    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Cds => "application/json",
            Format::CloudEvents | Format::CdEvents => cds_events_model::cloudevents::CONTENT_TYPE,
        }
    }
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The kind's own Debug masks its credentials.
        f.debug_struct("SinkConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("filter", &self.filter)
            .field("format", &self.format)
            .field("content_mode", &self.content_mode)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// A configuration a sink cannot start with; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sinks[{name}].{key}: {message}")]
pub struct SinkConfigError {
    pub name: String,
    pub key: &'static str,
    pub message: String,
}

impl SinkConfig {
    /// Checks what can be checked without connecting.
    pub fn validate(&self) -> Result<(), SinkConfigError> {
        let invalid = |key: &'static str, message: String| SinkConfigError {
            name: self.name.clone(),
            key,
            message,
        };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "name",
                "1 to 64 letters, digits, '-' or '_'".into(),
            ));
        }
        if self.send_timeout.is_zero() {
            return Err(invalid("send_timeout", "must be positive".into()));
        }
        if self.batch == 0 {
            return Err(invalid("batch", "must be positive".into()));
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return Err(invalid(
                "reconnect_max",
                "reconnect_min must be positive and reconnect_max at least reconnect_min".into(),
            ));
        }
        self.event_filter()
            .map_err(|message| invalid("filter", message))?;
        if self.content_mode == ContentMode::Binary {
            if self.format == Format::Cds {
                return Err(invalid(
                    "content_mode",
                    "binary is a CloudEvents content mode: it needs format = \"cloudevents\" or \"cdevents\"".into(),
                ));
            }
            if self.kind.binding().is_none() {
                return Err(invalid(
                    "content_mode",
                    format!(
                        "{} has no CloudEvents protocol binding: only structured (kafka, nats and amqp have binary)",
                        self.kind.name()
                    ),
                ));
            }
        }
        match &self.kind {
            SinkKind::Nats(n) => n.validate().map_err(|(key, m)| invalid(key, m)),
            SinkKind::Redis(r) => r.validate().map_err(|(key, m)| invalid(key, m)),
            SinkKind::Amqp(a) => a.validate().map_err(|(key, m)| invalid(key, m)),
            SinkKind::Kafka(k) => k.validate().map_err(|(key, m)| invalid(key, m)),
        }
    }

    /// The filter, parsed as the query API parses it (`None`: every event).
    pub fn event_filter(&self) -> Result<Option<EventFilter>, String> {
        let Some(text) = self.filter.as_deref().filter(|t| !t.trim().is_empty()) else {
            return Ok(None);
        };
        parse_filter(text).map(Some)
    }
}

/// Parses the query-string form of a filter (`project_key=PROJ&type=Run*`)
/// with the query API's keys; an unknown key is an error.
pub fn parse_filter(text: &str) -> Result<EventFilter, String> {
    let known = match serde_json::to_value(FilterText::default()) {
        Ok(serde_json::Value::Object(keys)) => keys,
        _ => serde_json::Map::new(),
    };
    let mut keys = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(text.trim().trim_start_matches('?').as_bytes()) {
        if !known.contains_key(k.as_ref()) {
            let names: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(format!(
                "unknown filter key {k:?} (known: {})",
                names.join(", ")
            ));
        }
        keys.insert(k.into_owned(), serde_json::Value::String(v.into_owned()));
    }
    let filter: FilterText =
        serde_json::from_value(serde_json::Value::Object(keys)).map_err(|e| e.to_string())?;
    filter.parse().map_err(|e| e.to_string())
}

/// `raw` with the password of its URL replaced by `***` (and a `password`
/// or `token` query parameter too); a string that is no URL is shown as
/// `***` whole, since it may be one badly written.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw.trim()) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            } else if !url.username().is_empty() && url.scheme().starts_with("nats") {
                // A lone user name in a NATS URL is a token.
                let _ = url.set_username("***");
            }
            let secret = |k: &str| matches!(k, "password" | "token" | "pass");
            if url.query_pairs().any(|(k, _)| secret(&k)) {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if secret(&k) {
                            "***".into()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string()
        }
        Err(_) => "***".to_owned(),
    }
}

/// Serializes a URL with its credentials masked.
pub(crate) fn serialize_masked<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nats(extra: &str) -> Result<SinkConfig, toml::de::Error> {
        toml::from_str(&format!(
            "name = \"n1\"\nkind = \"nats\"\nurl = \"nats://u:s3cret@127.0.0.1:4222\"\n{extra}"
        ))
    }

    #[test]
    fn a_sink_reads_from_flat_toml_with_defaults() {
        let c = nats("user = \"u\"\npassword = \"pw2\"\nfilter = \"project_key=PROJ&type=Run*\"")
            .expect("parses");
        assert_eq!(c.kind.name(), "nats");
        assert_eq!(c.format, Format::Cds);
        assert_eq!(c.batch, 256);
        let ce = nats("format = \"cloudevents\"").expect("parses");
        assert_eq!(ce.format, Format::CloudEvents);
        assert_eq!(ce.content_mode, ContentMode::Structured);
        let cd = nats("format = \"cdevents\"\ncontent_mode = \"binary\"").expect("parses");
        assert_eq!(
            (cd.format, cd.content_mode),
            (Format::CdEvents, ContentMode::Binary)
        );
        cd.validate().expect("NATS has a binary mode");
        assert!(nats("content_mode = \"headers\"").is_err());
        c.validate().expect("valid");
        let f = c.event_filter().expect("filter").expect("some");
        assert!(f.types.as_ref().is_some_and(|t| !t.is_empty()));
    }

    #[test]
    fn a_typo_in_a_brokers_setting_is_refused() {
        assert!(nats("subjet_prefix = \"x\"").is_err());
        assert!(toml::from_str::<SinkConfig>("name = \"n\"\nkind = \"kafkaa\"").is_err());
    }

    #[test]
    fn credentials_never_reach_debug_or_serialized_output() {
        let c = nats("password = \"pw2\"\ntoken = \"tok3\"").expect("parses");
        let shown = format!("{c:?} {}", serde_json::to_string(&c).expect("json"));
        for secret in ["s3cret", "pw2", "tok3"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("u:***@127.0.0.1"), "{shown}");
        assert_eq!(mask_url("nats://tok@h:4222"), "nats://***@h:4222");
        assert_eq!(mask_url("not a url s3cret"), "***");
    }

    #[test]
    fn bad_settings_are_refused_naming_the_key() {
        let bad = [
            ("filter = \"colour=red\"", "filter"),
            ("filter = \"type=NoSuchType\"", "filter"),
            ("batch = 0", "batch"),
            ("send_timeout = \"0s\"", "send_timeout"),
            ("subject_prefix = \"a.*\"", "subject_prefix"),
        ];
        for (extra, key) in bad {
            let e = nats(extra).expect("parses").validate().expect_err(extra);
            assert_eq!(e.key, key, "{extra}: {e}");
        }
        let binary = nats("content_mode = \"binary\"").expect("parses");
        assert_eq!(binary.validate().expect_err("cds").key, "content_mode");
        let redis: SinkConfig = toml::from_str(
            "name = \"r\"\nkind = \"redis\"\nurl = \"redis://127.0.0.1\"\nformat = \"cloudevents\"\ncontent_mode = \"binary\"",
        )
        .expect("parses");
        let e = redis.validate().expect_err("redis has no binding");
        assert_eq!(e.key, "content_mode", "{e}");
        assert!(e.to_string().contains("redis"), "{e}");
        let mut c = nats("").expect("parses");
        c.name = "a b".into();
        assert_eq!(c.validate().expect_err("name").key, "name");
    }
}
