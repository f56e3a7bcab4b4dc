//! The `[bridge]` configuration: where CDS's Redis is, how to log in, and
//! the bridge's own bounds. One struct with defaults, each field documented;
//! the server's loader fills it from file, environment
//! (`CDS_EVENTS_BRIDGE__CDS_REDIS_URL`) and the `--cds-redis` flag.
//!
//! Credentials never leave this module in clear: `Debug` and `Serialize`
//! (what `cds-events config` prints) mask the URL's password and leave the
//! `password` field out, and every error names the URL masked.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// CDS's channel for the full events it relays to browsers.
pub const CDS_UI_CHANNEL: &str = "event:ui";

/// How the bridge reaches CDS's Redis. No URL: no bridge.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// CDS's Redis: `redis://[user][:password@]host[:port][/db]`,
    /// `rediss://…` for TLS, or `unix:///path/redis.sock`. Unset: no bridge.
    #[serde(serialize_with = "serialize_masked_url")]
    pub cds_redis_url: Option<String>,
    /// The password, when it is not in the URL (it wins over the URL's).
    /// Never printed.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// An ACL user name (Redis 6 and later), when it is not in the URL.
    pub username: Option<String>,
    /// The database selected after connecting (wins over the URL's path).
    /// Redis pub/sub channels are the same in every database, so this only
    /// matters to a server that restricts `SELECT`.
    pub db: Option<i64>,
    /// A PEM file of CA certificates to trust for `rediss://` (a private CA);
    /// unset: the system's roots.
    pub tls_ca_cert: Option<PathBuf>,
    /// Accept any certificate from a `rediss://` server. For a test bench
    /// only: anyone on the path can then read CDS's events.
    pub tls_insecure: bool,
    /// The channel subscribed to. CDS publishes every full event on
    /// `event:ui`; another name only for a relay or a test.
    pub channel: String,
    /// This connection's name in Redis (`CLIENT SETNAME`), as `CLIENT LIST`
    /// shows it. No spaces.
    pub client_name: String,
    /// Connecting (TCP, TLS, login) gives up after this.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// The first wait before reconnecting; it doubles at each failure.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// The longest wait before reconnecting.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// A quiet connection is checked with a PING this often...
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// ...and dropped (a gap begins) when no answer comes within this.
    #[serde(with = "humantime_serde")]
    pub ping_timeout: Duration,
    /// Messages received and not yet appended, at most. When the log falls
    /// this far behind, the bridge drops its subscription (a gap, reported)
    /// rather than hold an unbounded backlog in memory.
    pub buffer: usize,
    /// Events appended in one batch at most (what is already buffered is
    /// grouped, up to this).
    pub max_batch: usize,
    /// Gap windows kept for `/mon/status`, newest last (the counters and
    /// metrics keep the totals).
    pub max_windows: usize,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            cds_redis_url: None,
            password: None,
            username: None,
            db: None,
            tls_ca_cert: None,
            tls_insecure: false,
            channel: CDS_UI_CHANNEL.to_owned(),
            client_name: "cds-events-bridge".to_owned(),
            connect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(5),
            buffer: 20_000,
            max_batch: 500,
            max_windows: 50,
        }
    }
}

impl fmt::Debug for BridgeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeConfig")
            .field(
                "cds_redis_url",
                &self.cds_redis_url.as_deref().map(mask_url),
            )
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("username", &self.username)
            .field("db", &self.db)
            .field("tls_ca_cert", &self.tls_ca_cert)
            .field("tls_insecure", &self.tls_insecure)
            .field("channel", &self.channel)
            .field("client_name", &self.client_name)
            .finish_non_exhaustive()
    }
}

/// A configuration the bridge cannot start with; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bridge.{key}: {message}")]
pub struct BridgeConfigError {
    pub key: &'static str,
    pub message: String,
}

fn invalid(key: &'static str, message: impl Into<String>) -> BridgeConfigError {
    BridgeConfigError {
        key,
        message: message.into(),
    }
}

impl BridgeConfig {
    /// Whether a bridge is configured at all.
    pub fn enabled(&self) -> bool {
        self.cds_redis_url.is_some()
    }

    /// The URL with its password masked (for logs and status).
    pub fn masked_url(&self) -> String {
        self.cds_redis_url
            .as_deref()
            .map(mask_url)
            .unwrap_or_default()
    }

    /// Checks what can be checked without connecting: the URL's form, the
    /// TLS settings against the scheme, the bounds.
    pub fn validate(&self) -> Result<(), BridgeConfigError> {
        let Some(raw) = self.cds_redis_url.as_deref() else {
            return Ok(());
        };
        let url = url::Url::parse(raw.trim()).map_err(|e| {
            invalid(
                "cds_redis_url",
                format!("{} is not a URL: {e}", mask_url(raw)),
            )
        })?;
        let tls = match url.scheme() {
            "redis" | "valkey" => false,
            "rediss" | "valkeys" => true,
            "unix" | "redis+unix" | "valkey+unix" => false,
            other => {
                return Err(invalid(
                    "cds_redis_url",
                    format!(
                        "{}: scheme {other:?} is not redis://, rediss:// or unix://",
                        mask_url(raw)
                    ),
                ));
            }
        };
        if !url.scheme().ends_with("unix") && url.host_str().is_none_or(str::is_empty) {
            return Err(invalid(
                "cds_redis_url",
                format!("{} names no host", mask_url(raw)),
            ));
        }
        if url.fragment().is_some() {
            return Err(invalid(
                "cds_redis_url",
                format!("{}: no #fragment (use bridge.tls_insecure)", mask_url(raw)),
            ));
        }
        let db_path = url.path().trim_matches('/');
        if !url.scheme().ends_with("unix") && !db_path.is_empty() && db_path.parse::<i64>().is_err()
        {
            return Err(invalid(
                "cds_redis_url",
                format!(
                    "{}: the path is a database number (/0), not {db_path:?}",
                    mask_url(raw)
                ),
            ));
        }
        if !tls && (self.tls_ca_cert.is_some() || self.tls_insecure) {
            return Err(invalid("tls_ca_cert", "TLS settings need a rediss:// URL"));
        }
        if let Some(ca) = &self.tls_ca_cert
            && !ca.is_file()
        {
            return Err(invalid(
                "tls_ca_cert",
                format!("{} is not a file", ca.display()),
            ));
        }
        if self.db.is_some_and(|d| d < 0) {
            return Err(invalid("db", "a database number is 0 or more"));
        }
        if self.channel.is_empty() {
            return Err(invalid("channel", "must not be empty"));
        }
        if self.client_name.is_empty()
            || self
                .client_name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "client_name",
                "must be non-empty, without spaces (Redis refuses them)",
            ));
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return Err(invalid(
                "reconnect_max",
                "reconnect_min must be positive and reconnect_max at least as long",
            ));
        }
        if self.connect_timeout.is_zero()
            || self.ping_interval.is_zero()
            || self.ping_timeout.is_zero()
        {
            return Err(invalid(
                "ping_timeout",
                "connect_timeout, ping_interval and ping_timeout must be positive",
            ));
        }
        if self.buffer == 0 || self.max_batch == 0 || self.max_windows == 0 {
            return Err(invalid(
                "buffer",
                "buffer, max_batch and max_windows must be positive",
            ));
        }
        Ok(())
    }

    /// The secrets that must never appear in a log line or a status field:
    /// the URL's password (as written and decoded) and `password`.
    pub(crate) fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = &self.password
            && !p.is_empty()
        {
            out.push(p.clone());
        }
        if let Some(raw) = &self.cds_redis_url
            && let Ok(url) = url::Url::parse(raw.trim())
        {
            let mut add = |s: &str| {
                if !s.is_empty() {
                    out.push(s.to_owned());
                    if let Ok(d) = percent_decode(s) {
                        out.push(d);
                    }
                }
            };
            if let Some(p) = url.password() {
                add(p);
            }
            for (k, v) in url.query_pairs() {
                if is_secret_param(&k) {
                    add(&v);
                }
            }
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out.dedup();
        out
    }
}

fn is_secret_param(key: &str) -> bool {
    matches!(key, "pass" | "password")
}

fn percent_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The URL with its password (and a `pass=` query parameter, as unix socket
/// URLs carry it) replaced by `***`. A string that is not a URL is masked
/// between `://` and the last `@`, where a password would be.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw.trim()) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            let secret_query = url.query_pairs().any(|(k, _)| is_secret_param(&k));
            if secret_query {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if is_secret_param(&k) {
                            "***".to_owned()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string().replace("%2A%2A%2A", "***")
        }
        Err(_) => match (raw.find("://"), raw.rfind('@')) {
            (Some(s), Some(at)) if at > s + 3 => format!("{}***{}", &raw[..s + 3], &raw[at..]),
            (None, Some(at)) => format!("***{}", &raw[at..]),
            _ => raw.to_owned(),
        },
    }
}

fn serialize_masked_url<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(url) => s.serialize_some(&mask_url(url)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> BridgeConfig {
        BridgeConfig {
            cds_redis_url: Some(url.to_owned()),
            ..BridgeConfig::default()
        }
    }

    #[test]
    fn masks_the_password_wherever_a_url_carries_it() {
        assert_eq!(
            mask_url("redis://:s3cret@cds-redis:6379/2"),
            "redis://:***@cds-redis:6379/2"
        );
        assert_eq!(mask_url("rediss://bob:p%40ss@h/0"), "rediss://bob:***@h/0");
        assert_eq!(
            mask_url("unix:///run/redis.sock?db=1&pass=s3cret"),
            "unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(mask_url("redis://h:6379"), "redis://h:6379");
        // Not a URL at all: still nothing between :// and @.
        assert_eq!(mask_url("redis://:s3 cret@h:x"), "redis://***@h:x");
    }

    #[test]
    fn debug_and_serialize_never_show_a_password() {
        let c = BridgeConfig {
            password: Some("field-secret".into()),
            ..with_url("redis://:url-secret@h:6379")
        };
        let debug = format!("{c:?}");
        let json = serde_json::to_string(&c).expect("json");
        for shown in [debug, json] {
            assert!(!shown.contains("secret"), "{shown}");
            assert!(shown.contains("redis://:***@h:6379"), "{shown}");
        }
    }

    #[test]
    fn secrets_lists_every_form_of_the_password() {
        let c = BridgeConfig {
            password: Some("pw".into()),
            ..with_url("redis://:a%40b@h?pass=q")
        };
        let s = c.secrets();
        for want in ["pw", "a%40b", "a@b"] {
            assert!(s.iter().any(|x| x == want), "{want} in {s:?}");
        }
    }

    #[test]
    fn validation_names_the_key_and_masks_the_url() {
        let bad = [
            ("http://:pw@h:6379", "cds_redis_url", "scheme"),
            ("redis://:pw@", "cds_redis_url", "host"),
            ("not a url :pw@x", "cds_redis_url", "not a URL"),
            (
                "redis://:pw@h:6379/zero",
                "cds_redis_url",
                "database number",
            ),
            ("redis://:pw@h:6379#insecure", "cds_redis_url", "fragment"),
        ];
        for (url, key, what) in bad {
            let e = with_url(url).validate().expect_err(url);
            assert_eq!(e.key, key, "{url}");
            let text = e.to_string();
            assert!(text.contains(what), "{url}: {text}");
            assert!(!text.contains("pw"), "{url}: {text}");
        }
        assert!(with_url("redis://127.0.0.1:6379/0").validate().is_ok());
        assert!(with_url("unix:///run/redis.sock").validate().is_ok());
        assert!(
            BridgeConfig::default().validate().is_ok(),
            "no URL: no bridge"
        );
    }

    #[test]
    fn validation_refuses_tls_settings_without_tls_and_bad_bounds() {
        let c = BridgeConfig {
            tls_insecure: true,
            ..with_url("redis://h")
        };
        assert_eq!(c.validate().expect_err("tls").key, "tls_ca_cert");
        let c = BridgeConfig {
            tls_ca_cert: Some("/nonexistent/ca.pem".into()),
            ..with_url("rediss://h")
        };
        assert!(c.validate().expect_err("ca").message.contains("not a file"));
        let c = BridgeConfig {
            client_name: "two words".into(),
            ..with_url("redis://h")
        };
        assert_eq!(c.validate().expect_err("name").key, "client_name");
        let c = BridgeConfig {
            reconnect_max: Duration::from_millis(1),
            ..with_url("redis://h")
        };
        assert_eq!(c.validate().expect_err("backoff").key, "reconnect_max");
        let c = BridgeConfig {
            buffer: 0,
            ..with_url("redis://h")
        };
        assert_eq!(c.validate().expect_err("buffer").key, "buffer");
    }
}
