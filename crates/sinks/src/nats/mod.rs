//! NATS JetStream: each event published on
//! `<subject_prefix>.<project_key or _global>.<Type>`, with the event id as
//! `Nats-Msg-Id` (JetStream drops a duplicate within the stream's
//! duplicate window), its sequence number as `cds-events-seq` and its type
//! as `cds-events-type`; a batch's publish acknowledgements are awaited
//! together.

mod sink;

pub use sink::NatsSink;

use crate::config::serialize_masked;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The settings of a `kind = "nats"` sink.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://[user:password@]host:port` (`tls://` for TLS); several
    /// servers of one cluster comma-separated.
    #[serde(serialize_with = "serialize_masked")]
    pub url: String,
    /// A user name, when not in the URL.
    #[serde(default)]
    pub user: Option<String>,
    /// Its password. Never printed.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// A token instead of user and password. Never printed.
    #[serde(default, skip_serializing)]
    pub token: Option<String>,
    /// Subjects are `<prefix>.<project_key or _global>.<Type>`.
    #[serde(default = "default_prefix")]
    pub subject_prefix: String,
    /// The JetStream stream that takes `<prefix>.>`: created at connect
    /// when missing (unset: it must exist already, made by the operator).
    #[serde(default = "default_stream")]
    pub stream: Option<String>,
    /// A publish not acknowledged within this fails its batch (sent again).
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Connecting gives up after this.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

fn default_prefix() -> String {
    "cds.events".to_owned()
}
fn default_stream() -> Option<String> {
    Some("CDS_EVENTS".to_owned())
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

impl NatsConfig {
    /// Settings for `url`, every other field at its default.
    pub fn new(url: impl Into<String>) -> NatsConfig {
        NatsConfig {
            url: url.into(),
            user: None,
            password: None,
            token: None,
            subject_prefix: default_prefix(),
            stream: default_stream(),
            ack_timeout: default_ack_timeout(),
            connect_timeout: default_connect_timeout(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        for server in self.url.split(',') {
            let u = url::Url::parse(server.trim()).map_err(|e| {
                (
                    "url",
                    format!("{} is not a URL: {e}", crate::mask_url(server)),
                )
            })?;
            if !matches!(u.scheme(), "nats" | "tls" | "ws" | "wss") {
                return Err((
                    "url",
                    format!(
                        "{}: scheme is not nats:// or tls://",
                        crate::mask_url(server)
                    ),
                ));
            }
        }
        let p = &self.subject_prefix;
        if p.is_empty()
            || p.split('.').any(|t| t.is_empty())
            || p.contains(|c: char| c == '*' || c == '>' || c.is_whitespace())
        {
            return Err((
                "subject_prefix",
                format!("{p:?} is not a subject prefix (dot-separated words, no wildcard)"),
            ));
        }
        if let Some(s) = &self.stream
            && (s.is_empty() || s.contains(|c: char| ".*>/\\".contains(c) || c.is_whitespace()))
        {
            return Err(("stream", format!("{s:?} is not a stream name")));
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(("password", "a password goes with a user".into()));
        }
        if self.ack_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(("ack_timeout", "timeouts must be positive".into()));
        }
        Ok(())
    }
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &crate::mask_url(&self.url))
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("subject_prefix", &self.subject_prefix)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// One subject token from a free word: NATS reserves `.`, `*`, `>` and
/// white space.
pub fn subject_token(word: &str) -> String {
    word.chars()
        .map(|c| {
            if c == '.' || c == '*' || c == '>' || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The subject of a message: `<prefix>.<project_key or _global>.<Type>`.
pub fn subject(prefix: &str, m: &crate::Message) -> String {
    format!(
        "{prefix}.{}.{}",
        subject_token(m.scope_word()),
        m.event_type.as_str()
    )
}
