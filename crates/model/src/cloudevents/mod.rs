//! CloudEvents 1.0: the one mapping of a stored CDS event onto a CloudEvent,
//! and ([`decode`]) the way back for ingest.
//!
//! Every way out (the query API, SSE, the websocket, webhooks, the sinks)
//! builds its CloudEvent with [`CloudEvent::new`] and writes it with
//! [`CloudEvent::to_structured_json`] (structured content mode) or
//! [`CloudEvent::binary_headers`] (binary content mode: `ce-*` headers, the
//! full event as the body). The attributes are derived from the catalogue:
//!
//! | attribute | value |
//! |---|---|
//! | `specversion` | `1.0` |
//! | `id` | the event id |
//! | `source` | the configured base URI + `/projects/<project key>`, or + `/global` for a global family |
//! | `type` | `org.ovh.cds.<family, lowercase>.<Type>` ([`ce_type`]) |
//! | `subject` | the family's subject fields joined with `/` ([`crate::Family::subject_fields`]); absent when empty |
//! | `time` | the event's timestamp (RFC 3339) |
//! | `datacontenttype` | `application/json` |
//! | `cdsseq` | the sequence number, zero-padded to 20 digits (sorts as it counts, as the `sequence` extension asks) |
//! | `cdsproject` | the project key; absent for a global event |
//! | `data` | the full CDS event, byte for byte as stored |
//!
//! Nothing here does I/O.

pub mod decode;

use crate::{EventType, Family, FullEvent};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::sync::Arc;

/// The CloudEvents version written and accepted.
pub const SPECVERSION: &str = "1.0";
/// Structured content mode's media type.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// Batched content mode's media type (a JSON array of structured events).
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// What `data` holds.
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// Every CDS event type is this prefix + family + `.` + type.
pub const TYPE_NAMESPACE: &str = "org.ovh.cds";
/// The source base when none is configured.
pub const DEFAULT_SOURCE: &str = "/cds-events";

/// The CloudEvents settings (`[cloudevents]` of the server's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudEventsConfig {
    /// The base of every event's `source`: a URI reference such as
    /// `https://cds.example.com/cds-events`; `/projects/<key>` or `/global`
    /// is appended.
    pub source: String,
}

impl Default for CloudEventsConfig {
    fn default() -> Self {
        CloudEventsConfig {
            source: DEFAULT_SOURCE.to_owned(),
        }
    }
}

impl CloudEventsConfig {
    /// The checked source base.
    pub fn source(&self) -> Result<Source, InvalidSource> {
        Source::new(&self.source)
    }
}

/// A source base that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cloudevents.source {0:?} is not a URI reference: it must be non-empty, without spaces or control characters"
)]
pub struct InvalidSource(pub String);

/// The checked base of every `source` attribute (cheap to clone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source(Arc<str>);

impl Default for Source {
    fn default() -> Self {
        Source(Arc::from(DEFAULT_SOURCE))
    }
}

impl Source {
    /// Checks `base` (non-empty, printable ASCII without spaces, as a URI
    /// reference is) and drops a trailing `/`.
    pub fn new(base: &str) -> Result<Source, InvalidSource> {
        let trimmed = base.trim_end_matches('/');
        let ok = !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(InvalidSource(base.to_owned()));
        }
        Ok(Source(Arc::from(trimmed)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `source` of an event of project `project_key` (`""`: global).
    pub fn for_project(&self, project_key: &str) -> String {
        if project_key.is_empty() {
            return format!("{}/global", self.0);
        }
        let mut out = String::with_capacity(self.0.len() + 10 + project_key.len());
        out.push_str(&self.0);
        out.push_str("/projects/");
        percent_encode(&mut out, project_key, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
        });
        out
    }
}

/// The CloudEvents `type` of a CDS event type:
/// `org.ovh.cds.<family, lowercase>.<Type>`.
pub fn ce_type(t: EventType) -> String {
    format!("{}.{}", type_prefix(t.family()), t.as_str())
}

/// The `type` prefix shared by a family's events: `org.ovh.cds.<family>`.
pub fn type_prefix(f: Family) -> String {
    format!("{TYPE_NAMESPACE}.{}", f.as_str().to_ascii_lowercase())
}

/// The `cdsseq` extension: the sequence number as 20 digits, so that the
/// strings sort as the numbers do (the `sequence` extension's rule).
pub fn seq_text(seq: u64) -> String {
    format!("{seq:020}")
}

/// One CDS event as a CloudEvent: its attributes, and its data (the stored
/// full-event JSON, never re-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent<'a> {
    pub id: &'a str,
    pub source: String,
    pub ce_type: String,
    pub subject: Option<String>,
    pub time: String,
    pub cdsseq: String,
    pub cdsproject: Option<&'a str>,
    /// The full event's JSON.
    pub data: &'a str,
}

impl<'a> CloudEvent<'a> {
    /// The mapping: `event` stored at `seq` as `json` (its full-event JSON).
    pub fn new(source: &Source, seq: u64, event: &'a FullEvent, json: &'a str) -> CloudEvent<'a> {
        CloudEvent {
            id: &event.id,
            source: source.for_project(&event.project_key),
            ce_type: ce_type(event.event_type),
            subject: event.subject(),
            time: event.timestamp.to_go_string(),
            cdsseq: seq_text(seq),
            cdsproject: (!event.project_key.is_empty()).then_some(event.project_key.as_str()),
            data: json,
        }
    }

    /// The context attributes, in writing order, as (name, value); `data` and
    /// absent optional attributes are not among them.
    pub fn attributes(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![
            ("specversion", SPECVERSION),
            ("id", self.id),
            ("source", self.source.as_str()),
            ("type", self.ce_type.as_str()),
        ];
        if let Some(s) = &self.subject {
            out.push(("subject", s.as_str()));
        }
        out.push(("time", self.time.as_str()));
        out.push(("datacontenttype", DATA_CONTENT_TYPE));
        out.push(("cdsseq", self.cdsseq.as_str()));
        if let Some(p) = self.cdsproject {
            out.push(("cdsproject", p));
        }
        out
    }

    /// Structured content mode: one JSON object, `data` spliced in as stored.
    pub fn to_structured_json(&self) -> String {
        let mut out = String::with_capacity(self.data.len() + 320);
        self.write_structured(&mut out);
        out
    }

    /// Appends the structured JSON to `out`.
    pub fn write_structured(&self, out: &mut String) {
        out.push('{');
        for (name, value) in self.attributes() {
            out.push('"');
            out.push_str(name);
            out.push_str("\":");
            push_json_string(out, value);
            out.push(',');
        }
        out.push_str("\"data\":");
        out.push_str(self.data);
        out.push('}');
    }

    /// Binary content mode over HTTP: the `ce-*` headers (values
    /// percent-encoded as the HTTP binding asks), `Content-Type` being
    /// [`DATA_CONTENT_TYPE`] and the body [`CloudEvent::data`].
    pub fn binary_headers(&self) -> Vec<(String, String)> {
        self.binding_headers(Binding::Http)
    }

    /// Binary content mode over `binding`: every attribute but the one the
    /// binding carries in its own content-type header or property
    /// ([`Binding::content_type_carries_datacontenttype`]), named and
    /// encoded as that binding asks. The body is [`CloudEvent::data`].
    pub fn binding_headers(&self, binding: Binding) -> Vec<(String, String)> {
        let prefix = binding.prefix();
        self.attributes()
            .into_iter()
            .filter(|(name, _)| {
                *name != "datacontenttype" || !binding.content_type_carries_datacontenttype()
            })
            .map(|(name, value)| {
                let value = if binding.percent_encodes() {
                    header_value(value)
                } else {
                    value.to_owned()
                };
                (format!("{prefix}{name}"), value)
            })
            .collect()
    }
}

/// A CloudEvents protocol binding with a binary content mode: where the
/// attributes go when the body is `data` alone.
///
/// | binding | attribute `x` | values | `datacontenttype` |
/// |---|---|---|---|
/// | HTTP | header `ce-x` | percent-encoded (HTTP binding §3.1.3.2) | `Content-Type` |
/// | Kafka | header `ce_x` | UTF-8 as is (Kafka binding §3.2.3) | header `content-type` |
/// | NATS | header `ce-x` | percent-encoded (NATS binding §3.1.3.2) | header `ce-datacontenttype` |
/// | AMQP | application property `cloudEvents_x` | strings as is (AMQP binding §3.1.3) | property `content-type` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binding {
    Http,
    Kafka,
    Nats,
    Amqp,
}

impl Binding {
    /// What each attribute's name is prefixed with.
    pub fn prefix(self) -> &'static str {
        match self {
            Binding::Http | Binding::Nats => "ce-",
            Binding::Kafka => "ce_",
            // The binding allows `cloudEvents:` too and prefers `_` (JMS
            // selectors cannot name `:`).
            Binding::Amqp => "cloudEvents_",
        }
    }

    /// Whether `datacontenttype` travels in the protocol's own content-type
    /// header or property rather than as a prefixed attribute. NATS has no
    /// such header in its binding: a `Content-Type` there marks structured
    /// mode, so `datacontenttype` is `ce-datacontenttype`.
    pub fn content_type_carries_datacontenttype(self) -> bool {
        !matches!(self, Binding::Nats)
    }

    /// Whether values are percent-encoded (header values restricted to
    /// printable ASCII); otherwise they go as UTF-8 strings.
    pub fn percent_encodes(self) -> bool {
        matches!(self, Binding::Http | Binding::Nats)
    }
}

/// The per-family table of the documentation (`docs/cloudevents.md`), in
/// Markdown: family, scope, `type` prefix, `subject` fields, types.
pub fn family_table() -> String {
    let mut out = String::from(
        "| family | scope | `type` prefix | `subject` | types |\n|---|---|---|---|---|\n",
    );
    for f in Family::ALL {
        let types: Vec<&str> = f.types().iter().map(|t| t.as_str()).collect();
        let _ = writeln!(
            out,
            "| {} | {} | `{}.` | {} | {} |",
            f.as_str(),
            f.scope().as_str(),
            type_prefix(*f),
            f.subject_fields().join(" `/` "),
            types.join(", ")
        );
    }
    out
}

/// A JSON array of structured CloudEvents (batched content mode).
pub fn batch_json<'a>(events: impl IntoIterator<Item = CloudEvent<'a>>) -> String {
    let mut out = String::from("[");
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        e.write_structured(&mut out);
    }
    out.push(']');
    out
}

fn push_json_string(out: &mut String, s: &str) {
    // Serializing a &str into a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// An attribute value as an HTTP header value (HTTP binding §3.1.3.2):
/// space, `"`, `%` and every byte outside printable ASCII percent-encoded.
pub fn header_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    percent_encode(&mut out, s, |b| {
        b.is_ascii_graphic() && b != b'"' && b != b'%'
    });
    out
}

fn percent_encode(out: &mut String, s: &str, keep: impl Fn(u8) -> bool) {
    for b in s.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests;
