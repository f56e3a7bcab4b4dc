//! The validation of what a client sends, and who made a change. The shapes
//! themselves (the notification as CDS's JSON has it, spec §6, and the
//! delivery records) are the API's, declared once in
//! `cds_events_api` and re-exported here.

use crate::error::WebhooksError;
use cds_events_model::ProjectKey;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use cds_events_api::{
    AttemptOut, ContentMode, CreatedNotificationOut, DeliveryDetail, DeliveryOut, DeliveryPage,
    DeliveryStatus, EventFormat, MASK, NotificationAuth, NotificationFilter, NotificationHealthOut,
    NotificationIn, NotificationOut, OrderedBy, PreviewMatch, PreviewOut, PreviousPublicKey,
    PreviousSecret, PublicKey, PublicKeyOut, SecretOut, SignatureScheme,
};

/// Headers a notification may not set: the signature scheme and the framing
/// belong to the sender.
pub const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "webhook-attempt",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
];

const MAX_NAME: usize = 128;
/// Names a notification cannot take: `…/notification/preview` is the
/// preview of an event against every notification of the project.
const RESERVED_NAMES: &[&str] = &["preview"];
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
    pub ordered_by: Option<OrderedBy>,
    pub format: Option<EventFormat>,
    pub content_mode: Option<ContentMode>,
    pub signature: Option<SignatureScheme>,
}

pub(crate) fn validate_project(project: &ProjectKey) -> Result<(), WebhooksError> {
    let project = project.as_str();
    if project.len() > MAX_NAME || project.chars().any(|c| c.is_control() || c == '/') {
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
    if RESERVED_NAMES.contains(&n.name.as_str()) {
        return Err(WebhooksError::invalid(
            "name",
            format!(
                "{:?} is reserved: …/notification/{} previews an event",
                n.name, n.name
            ),
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
    if n.ordered == Some(true) && n.ordered_by.is_some() {
        return Err(WebhooksError::invalid(
            "ordered_by",
            "not with ordered: true (ordered is one at a time over every event; ordered_by, per key)",
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
        ordered_by: n.ordered_by,
        format: n.format,
        content_mode: n.content_mode,
        signature: n.signature,
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
    fn ordered_and_ordered_by_together_are_refused_naming_ordered_by() {
        let n: NotificationIn = serde_json::from_str(
            r#"{"name":"slack","webhook_url":"https://h/x","ordered_by":"workflow_run_id"}"#,
        )
        .expect("decode");
        assert_eq!(n.ordered_by, Some(OrderedBy::WorkflowRunId));
        assert!(validate(n.clone()).is_ok());
        let with_false = NotificationIn {
            ordered: Some(false),
            ..n.clone()
        };
        assert!(validate(with_false).is_ok(), "ordered: false goes with it");
        let both = NotificationIn {
            ordered: Some(true),
            ..n
        };
        assert_eq!(field_of(validate(both)), "ordered_by");
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
