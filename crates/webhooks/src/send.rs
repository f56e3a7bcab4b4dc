//! One HTTP attempt: the signed request, its outcome, nothing stored.
//!
//! The client follows no redirect (a 3xx is a failure: the receiver must give
//! the final URL), uses no proxy from the environment, bounds every attempt by
//! the configured timeout, and resolves names through [`ssrf::Resolver`]
//! (bounded lookups; public addresses only unless private targets are
//! allowed).

use crate::config::WebhooksConfig;
use crate::error::WebhooksError;
use crate::outgoing::Outgoing;
use crate::registry::Notification;
use crate::signing::signature_header;
use crate::ssrf;
use cds_events_api::PingOut;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use std::time::{Duration, Instant};

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
/// The attempt's number, 1-based, counting every attempt of the delivery
/// (redeliveries included): a receiver can tell a retry from a first try.
const WEBHOOK_ATTEMPT: HeaderName = HeaderName::from_static("webhook-attempt");

/// How an attempt ended; also the `outcome` label of
/// `cds_events_webhook_attempts_total`.
pub use cds_events_api::OutcomeKind;

/// What one attempt gave.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub outcome: OutcomeKind,
    pub status_code: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
    /// The start of the response body (at most `max_response_excerpt` bytes).
    pub response: Option<String>,
    /// The receiver's `Retry-After` on a 429 or 503, capped at
    /// [`MAX_RETRY_AFTER`].
    pub retry_after: Option<Duration>,
}

/// A test ping's outcome as the API answers it.
impl From<AttemptOutcome> for PingOut {
    fn from(o: AttemptOutcome) -> PingOut {
        PingOut {
            outcome: o.outcome,
            status_code: o.status_code,
            latency: o.latency.as_millis() as u64,
            error: o.error,
            response: o.response,
        }
    }
}

impl AttemptOutcome {
    pub fn is_success(&self) -> bool {
        self.outcome == OutcomeKind::Success
    }

    /// An event that cannot be put in the notification's format: a failed
    /// attempt that sent nothing (retried as any failure, then failed).
    pub(crate) fn unsendable(error: String) -> Self {
        AttemptOutcome::failed(OutcomeKind::Refused, Instant::now(), error)
    }

    fn failed(outcome: OutcomeKind, started: Instant, error: String) -> Self {
        AttemptOutcome {
            outcome,
            status_code: None,
            latency: started.elapsed(),
            error: Some(error),
            response: None,
            retry_after: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    max_excerpt: usize,
}

impl Sender {
    pub(crate) fn new(config: &WebhooksConfig) -> Result<Sender, WebhooksError> {
        // reqwest is built without a default TLS provider (as in the client
        // crate); install ring once per process, ignoring a provider that is
        // already there.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("cds-events-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(ssrf::Resolver {
                public_only: !config.allow_private,
            })
            .build()
            .map_err(|e| WebhooksError::Http(e.to_string()))?;
        Ok(Sender {
            client,
            allow_private: config.allow_private,
            max_excerpt: config.max_response_excerpt,
        })
    }

    /// Sends `out` to the notification's endpoint as attempt number
    /// `attempt` (1-based), its body signed as message `msg_id` at the
    /// current time.
    pub(crate) async fn send(
        &self,
        n: &Notification,
        msg_id: &str,
        attempt: i64,
        out: &Outgoing<'_>,
    ) -> AttemptOutcome {
        let body = out.body.as_bytes();
        let started = Instant::now();
        if !self.allow_private
            && let Err(r) = ssrf::check_url_host(&n.url)
        {
            return AttemptOutcome::failed(OutcomeKind::Refused, started, r.to_string());
        }
        let now_ms = crate::time::now_ms();
        let ts = now_ms.div_euclid(1000);
        let signature = signature_header(n.signing_secrets(now_ms), msg_id, ts, body);
        let mut headers = n.header_map.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(out.content_type));
        for (name, value) in &out.headers {
            headers.insert(name.clone(), value.clone());
        }
        let (Ok(id), Ok(sig)) = (
            HeaderValue::from_str(msg_id),
            HeaderValue::from_str(&signature),
        ) else {
            return AttemptOutcome::failed(
                OutcomeKind::ConnectError,
                started,
                "cannot build the signature headers".into(),
            );
        };
        headers.insert(WEBHOOK_ID, id);
        headers.insert(WEBHOOK_TIMESTAMP, HeaderValue::from(ts));
        headers.insert(WEBHOOK_SIGNATURE, sig);
        headers.insert(WEBHOOK_ATTEMPT, HeaderValue::from(attempt.max(1)));
        let request = self
            .client
            .post(n.url.clone())
            .headers(headers)
            .body(body.to_vec());
        let mut resp = match request.send().await {
            Ok(r) => r,
            // reqwest's message names the URL, whose path or query may be
            // a token (Slack-style hooks): records and logs get it without.
            Err(e) => return self.error_outcome(&e.without_url(), started),
        };
        let status = resp.status();
        let retry_after = if status.as_u16() == 429 || status.as_u16() == 503 {
            resp.headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
        } else {
            None
        };
        // The status decides; the body is only an excerpt for the record, so
        // failing to read it (timeout, reset) changes nothing.
        let mut excerpt: Vec<u8> = Vec::new();
        while excerpt.len() < self.max_excerpt {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let take = chunk.len().min(self.max_excerpt - excerpt.len());
                    excerpt.extend_from_slice(&chunk[..take]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let ok = status.is_success();
        AttemptOutcome {
            outcome: if ok {
                OutcomeKind::Success
            } else {
                OutcomeKind::HttpError
            },
            status_code: Some(status.as_u16()),
            latency: started.elapsed(),
            error: (!ok).then(|| format!("HTTP {status}")),
            response: (!excerpt.is_empty()).then(|| excerpt_text(&excerpt, self.max_excerpt)),
            retry_after,
        }
    }

    fn error_outcome(&self, e: &reqwest::Error, started: Instant) -> AttemptOutcome {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut chain = Vec::new();
        while let Some(err) = source {
            if let Some(r) = err.downcast_ref::<ssrf::Refused>() {
                return AttemptOutcome::failed(OutcomeKind::Refused, started, r.to_string());
            }
            let text = err.to_string();
            if chain.last() != Some(&text) {
                chain.push(text);
            }
            source = err.source();
        }
        let kind = if e.is_timeout() {
            OutcomeKind::Timeout
        } else {
            OutcomeKind::ConnectError
        };
        AttemptOutcome::failed(kind, started, chain.join(": "))
    }
}

/// The kept start of a response body: at most `max` bytes of text, so that a
/// binary body (each invalid byte becoming a 3-byte U+FFFD) stays in bounds.
fn excerpt_text(bytes: &[u8], max: usize) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// `Retry-After` as delay-seconds or an HTTP date, capped at
/// [`MAX_RETRY_AFTER`].
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = httpdate::parse_http_date(v).ok()?;
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(d.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_excerpt_stays_within_its_cap() {
        let binary = vec![0xffu8; 1024];
        let text = excerpt_text(&binary, 1024);
        assert!(text.len() <= 1024, "{}", text.len());
        assert!(text.starts_with('\u{fffd}'));
        assert_eq!(excerpt_text(b"ok", 1024), "ok");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("99999999"), Some(MAX_RETRY_AFTER));
        let later = std::time::SystemTime::now() + Duration::from_secs(60);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).expect("date");
        assert!(
            d > Duration::from_secs(55) && d <= Duration::from_secs(60),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
