//! Redis, CDS-compatible: each event `PUBLISH`ed on `event:ui` exactly as a
//! CDS API publishes it (the event's JSON itself, see
//! `crates/bridge/src/message.rs`), and a `RunJobEnqueued` also on
//! `event:run:job`, so that an existing CDS API relays our events to its
//! own UI; optionally `XADD`ed to a stream trimmed with `MAXLEN ~`. A
//! batch is one pipeline; its replies are the broker's acknowledgement.
//!
//! A sink and the bridge on the same channel of the same Redis would feed
//! each other forever: [`RedisConfig::loops_with`] lets the server refuse
//! that configuration.

mod sink;

pub use sink::RedisSink;

use crate::config::serialize_masked;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The settings of a `kind = "redis"` sink.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user][:password@]host[:port][/db]` (`rediss://` for TLS).
    #[serde(serialize_with = "serialize_masked")]
    pub url: String,
    /// The password, when not in the URL. Never printed.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// An ACL user name, when not in the URL.
    #[serde(default)]
    pub username: Option<String>,
    /// Every event is published here (CDS: `event:ui`); empty: no `PUBLISH`.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// `RunJobEnqueued` is published here too (CDS: `event:run:job`, what
    /// hatcheries listen to); empty: not.
    #[serde(default = "default_run_job_channel")]
    pub run_job_channel: String,
    /// Also `XADD` each event to this stream (fields `id`, `seq`, `type`,
    /// `event`); unset: no stream.
    #[serde(default)]
    pub stream: Option<String>,
    /// The stream is trimmed to about this many entries (`MAXLEN ~`).
    #[serde(default = "default_maxlen")]
    pub stream_maxlen: u64,
    /// Connecting, and each batch's replies, give up after this.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_channel() -> String {
    "event:ui".to_owned()
}
fn default_run_job_channel() -> String {
    "event:run:job".to_owned()
}
fn default_maxlen() -> u64 {
    1_000_000
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl RedisConfig {
    /// Settings for `url`, every other field at its default.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            password: None,
            username: None,
            channel: default_channel(),
            run_job_channel: default_run_job_channel(),
            stream: None,
            stream_maxlen: default_maxlen(),
            timeout: default_timeout(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        let u = url::Url::parse(self.url.trim()).map_err(|e| {
            (
                "url",
                format!("{} is not a URL: {e}", crate::mask_url(&self.url)),
            )
        })?;
        if !matches!(u.scheme(), "redis" | "rediss" | "valkey" | "valkeys") {
            return Err((
                "url",
                format!(
                    "{}: scheme is not redis:// or rediss://",
                    crate::mask_url(&self.url)
                ),
            ));
        }
        if self.channel.is_empty() && self.run_job_channel.is_empty() && self.stream.is_none() {
            return Err((
                "channel",
                "nothing to send to: no channel and no stream".into(),
            ));
        }
        if self.stream.as_deref().is_some_and(str::is_empty) || self.stream_maxlen == 0 {
            return Err((
                "stream",
                "a stream needs a name and a positive stream_maxlen".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(("timeout", "must be positive".into()));
        }
        Ok(())
    }

    /// Whether a bridge subscribed to `channel` on the Redis at
    /// `bridge_url` would read what this sink publishes (pub/sub channels
    /// are the same in every database of one server).
    pub fn loops_with(&self, bridge_url: &str, channel: &str) -> bool {
        let server = |raw: &str| {
            url::Url::parse(raw.trim()).ok().map(|u| {
                let host = u.host_str().unwrap_or("").to_ascii_lowercase();
                let host = match host.as_str() {
                    "localhost" | "[::1]" | "::1" => "127.0.0.1".to_owned(),
                    _ => host,
                };
                (host, u.port().unwrap_or(6379))
            })
        };
        let same_server = match (server(&self.url), server(bridge_url)) {
            (Some(a), Some(b)) => a == b,
            // Unparsable: say it loops, to be safe (validation names it).
            _ => true,
        };
        same_server && (self.channel == channel || self.run_job_channel == channel)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &crate::mask_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("username", &self.username)
            .field("channel", &self.channel)
            .field("run_job_channel", &self.run_job_channel)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}
