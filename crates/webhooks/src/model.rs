//! The notification as CDS's JSON has it (spec §6), the delivery records, and
//! the validation of what a client sends.

use crate::error::WebhooksError;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What a header value is shown as; sent back on update, it keeps the stored
/// value.
pub const MASK: &str = "***";

/// Headers a notification may not set: the signature scheme and the framing
/// belong to the sender.
pub const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
];

const MAX_NAME: usize = 128;
const MAX_URL: usize = 2048;
const MAX_EXPRESSIONS: usize = 64;
const MAX_EXPRESSION_BYTES: usize = 1024;
const MAX_HEADERS: usize = 32;
/// Compiled size limit of one filter expression.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Who made a change; recorded in the Notification event it emits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user_id: String,
    pub username: String,
}

impl Actor {
    /// The service itself (automatic disabling).
    pub fn system() -> Self {
        Actor {
            user_id: "cds-events".into(),
            username: "cds-events".into(),
        }
    }
}

/// One named filter: the event-type expressions it matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationFilter {
    /// Regular expressions matched, unanchored, against the event type.
    #[serde(default)]
    pub event: Vec<String>,
}

/// Headers added to every request. `Debug` shows names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationAuth {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl fmt::Debug for NotificationAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotificationAuth")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A notification as a client creates or replaces it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationIn {
    pub name: String,
    pub webhook_url: String,
    /// No filters: every event of the project.
    #[serde(default)]
    pub filters: BTreeMap<String, NotificationFilter>,
    #[serde(default)]
    pub auth: Option<NotificationAuth>,
    /// Default `true`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Deliver one at a time in event order. Default `false`.
    #[serde(default)]
    pub ordered: Option<bool>,
}

/// A notification as returned: header values masked, secrets absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationOut {
    pub id: String,
    pub project_key: String,
    pub name: String,
    pub last_modified: DateTime<Utc>,
    pub webhook_url: String,
    pub filters: BTreeMap<String, NotificationFilter>,
    pub auth: NotificationAuth,
    pub enabled: bool,
    pub ordered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
}

/// A notification just created, with its signing secret (shown this once).
#[derive(Clone, Serialize)]
pub struct Created {
    pub notification: NotificationOut,
    pub secret: String,
}

impl fmt::Debug for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Created")
            .field("notification", &self.notification)
            .field("secret", &MASK)
            .finish()
    }
}

/// The signing secrets a receiver should accept now.
#[derive(Clone, Serialize)]
pub struct SecretOut {
    /// The secret new requests are signed with.
    pub secret: String,
    /// The secret before the last rotation, while still signed with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousSecret>,
}

impl fmt::Debug for SecretOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretOut")
            .field("secret", &MASK)
            .field("previous", &self.previous)
            .finish()
    }
}

#[derive(Clone, Serialize)]
pub struct PreviousSecret {
    pub secret: String,
    pub valid_until: DateTime<Utc>,
}

impl fmt::Debug for PreviousSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreviousSecret")
            .field("secret", &MASK)
            .field("valid_until", &self.valid_until)
            .finish()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or for its notification to be enabled).
    Pending,
    Succeeded,
    /// Out of attempts, or refused for good (410 Gone): the dead letters.
    Failed,
    /// Given up without an endpoint failure: the event left the log before it
    /// could be sent.
    Cancelled,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Succeeded,
        DeliveryStatus::Failed,
        DeliveryStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        DeliveryStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One delivery of one event to one notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryOut {
    /// Also the `webhook-id` of every attempt.
    pub id: String,
    pub event_id: String,
    pub event_seq: u64,
    pub status: DeliveryStatus,
    /// Attempts made, over every round of redelivery.
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One page of deliveries, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryOut>,
    /// Pass back to get the next (older) page; `None` on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptOut {
    /// 1 for the first attempt of the delivery.
    pub n: u32,
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The start of the response body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
}

/// A notification checked and ready to store.
#[derive(Clone)]
pub(crate) struct Valid {
    pub name: String,
    pub url: url::Url,
    pub filters: BTreeMap<String, NotificationFilter>,
    /// With `***` values still unresolved (see `resolve_masked`).
    pub headers: BTreeMap<String, String>,
    /// `None`: the default on create, unchanged on update.
    pub enabled: Option<bool>,
    pub ordered: Option<bool>,
}

pub(crate) fn validate_project(project: &str) -> Result<(), WebhooksError> {
    if project.is_empty()
        || project.len() > MAX_NAME
        || project.chars().any(|c| c.is_control() || c == '/')
    {
        return Err(WebhooksError::invalid(
            "project_key",
            "must be 1 to 128 characters, without control characters or '/'",
        ));
    }
    Ok(())
}

pub(crate) fn validate(n: NotificationIn) -> Result<Valid, WebhooksError> {
    if n.name.is_empty()
        || n.name.len() > MAX_NAME
        || !n
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(WebhooksError::invalid(
            "name",
            "must be 1 to 128 characters among letters, digits, '-', '_' and '.'",
        ));
    }
    if n.webhook_url.len() > MAX_URL {
        return Err(WebhooksError::invalid(
            "webhook_url",
            format!("longer than {MAX_URL} bytes"),
        ));
    }
    let url = url::Url::parse(&n.webhook_url)
        .map_err(|e| WebhooksError::invalid("webhook_url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(WebhooksError::invalid(
            "webhook_url",
            "the scheme must be http or https",
        ));
    }
    if url.host().is_none() {
        return Err(WebhooksError::invalid("webhook_url", "the URL has no host"));
    }
    // The URL is shown to readers and goes into events: credentials belong
    // in `auth.headers`, which are encrypted and masked.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(WebhooksError::invalid(
            "webhook_url",
            "credentials in the URL are not accepted; put them in auth.headers (e.g. Authorization), which are encrypted and masked",
        ));
    }
    let count: usize = n.filters.values().map(|f| f.event.len()).sum();
    if count > MAX_EXPRESSIONS {
        return Err(WebhooksError::invalid(
            "filters",
            format!("at most {MAX_EXPRESSIONS} expressions"),
        ));
    }
    for (fname, f) in &n.filters {
        if f.event.is_empty() {
            return Err(WebhooksError::invalid(
                format!("filters.{fname}.event"),
                "a filter needs at least one expression (leave filters out to match every event)",
            ));
        }
        for (i, expr) in f.event.iter().enumerate() {
            let field = || format!("filters.{fname}.event[{i}]");
            if expr.len() > MAX_EXPRESSION_BYTES {
                return Err(WebhooksError::invalid(
                    field(),
                    format!("longer than {MAX_EXPRESSION_BYTES} bytes"),
                ));
            }
            regex::RegexBuilder::new(expr)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    WebhooksError::invalid(field(), format!("invalid regular expression: {e}"))
                })?;
        }
    }
    let headers = n.auth.map(|a| a.headers).unwrap_or_default();
    if headers.len() > MAX_HEADERS {
        return Err(WebhooksError::invalid(
            "auth.headers",
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (name, value) in &headers {
        let field = format!("auth.headers.{name}");
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| WebhooksError::invalid(&field, "not a valid HTTP header name"))?;
        if RESERVED_HEADERS.contains(&parsed.as_str()) {
            return Err(WebhooksError::invalid(
                &field,
                "this header is set by the sender and cannot be configured",
            ));
        }
        if !seen.insert(parsed) {
            return Err(WebhooksError::invalid(
                &field,
                "the same header is given twice (names are case-insensitive)",
            ));
        }
        HeaderValue::from_str(value)
            .map_err(|_| WebhooksError::invalid(&field, "not a valid HTTP header value"))?;
    }
    Ok(Valid {
        name: n.name,
        url,
        filters: n.filters,
        headers,
        enabled: n.enabled,
        ordered: n.ordered,
    })
}

/// Replaces every `***` value by the stored value of the same header
/// (case-insensitive name). A `***` for a header that has no stored value is
/// refused: there is nothing to keep.
pub(crate) fn resolve_masked(
    headers: BTreeMap<String, String>,
    stored: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, WebhooksError> {
    headers
        .into_iter()
        .map(|(name, value)| {
            if value != MASK {
                return Ok((name, value));
            }
            stored
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&name))
                .map(|(_, v)| (name.clone(), v.clone()))
                .ok_or_else(|| {
                    WebhooksError::invalid(
                        format!("auth.headers.{name}"),
                        "the masked value *** keeps a stored value, and this header has none",
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> NotificationIn {
        NotificationIn {
            name: "slack".into(),
            webhook_url: "https://example.com/hook".into(),
            ..Default::default()
        }
    }

    fn field_of(r: Result<Valid, WebhooksError>) -> String {
        match r {
            Err(WebhooksError::Invalid { field, .. }) => field,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn cds_json_decodes() {
        let n: NotificationIn = serde_json::from_str(
            r#"{"name":"slack","webhook_url":"https://h/x",
                "filters":{"any-name":{"event":["Run.*","RunJobEnded"]}},
                "auth":{"headers":{"Authorization":"Bearer t"}}}"#,
        )
        .expect("decode");
        assert_eq!(n.filters["any-name"].event.len(), 2);
        assert!(!format!("{n:?}").contains("Bearer"));
        assert!(validate(n).is_ok());
    }

    #[test]
    fn invalid_fields_are_named() {
        let mut n = input();
        n.name = "a b".into();
        assert_eq!(field_of(validate(n)), "name");
        let mut n = input();
        n.webhook_url = "ftp://h/x".into();
        assert_eq!(field_of(validate(n)), "webhook_url");
        let mut n = input();
        n.webhook_url = "https://user:secret@h/x".into();
        assert_eq!(field_of(validate(n)), "webhook_url");
        let mut n = input();
        n.filters.insert(
            "any-name".into(),
            NotificationFilter {
                event: vec!["Run.*".into(), "Run(".into()],
            },
        );
        assert_eq!(field_of(validate(n)), "filters.any-name.event[1]");
        for bad in ["Webhook-Signature", "Host", "bad name"] {
            let mut n = input();
            n.auth = Some(NotificationAuth {
                headers: [(bad.to_owned(), "v".to_owned())].into(),
            });
            assert_eq!(field_of(validate(n)), format!("auth.headers.{bad}"));
        }
        let mut n = input();
        n.auth = Some(NotificationAuth {
            headers: [("X-A".to_owned(), "line\nbreak".to_owned())].into(),
        });
        assert_eq!(field_of(validate(n)), "auth.headers.X-A");
    }

    #[test]
    fn masked_values_keep_stored_ones() {
        let stored: BTreeMap<String, String> = [("Authorization".into(), "Bearer t".into())].into();
        let given: BTreeMap<String, String> = [
            ("authorization".into(), MASK.into()),
            ("X-New".into(), "v".into()),
        ]
        .into();
        let r = resolve_masked(given, &stored).expect("resolve");
        assert_eq!(r["authorization"], "Bearer t");
        assert_eq!(r["X-New"], "v");
        let given: BTreeMap<String, String> = [("X-Other".into(), MASK.into())].into();
        assert!(resolve_masked(given, &stored).is_err());
    }
}
