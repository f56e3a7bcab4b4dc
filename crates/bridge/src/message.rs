//! One message of CDS's `event:ui` channel, as an event to append.
//!
//! What CDS publishes (its `pushToWebsockets`): the JSON encoding of the
//! full event (`FullEventV2`, payload included), handed to the cache's
//! `Publish`, which JSON-encodes that string once more and unquotes it again
//! before `PUBLISH`: the two steps cancel, so the message is the event's JSON
//! itself, not a JSON string holding it. It is decoded exactly as a body of
//! `POST /v2/events` holding one event is: the same decoder, the same
//! limits. One thing more is asked: an id. CDS always sets one, and it is
//! what makes a reconnect or a second bridge harmless (the log stores an id
//! once); an event without one would be stored again by every bridge.

use cds_events_log::NewEvent;
use cds_events_model::{DecodeError, Limits};
use serde::Deserialize;
use std::borrow::Cow;

/// How a message is judged, from the server's ingest settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// Per-event bounds (`ingest.limits`).
    pub limits: Limits,
    /// The largest message, bytes (`ingest.max_body_bytes`).
    pub max_bytes: usize,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            limits: Limits::default(),
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Why a message was not an event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Undecodable {
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("message is not valid UTF-8 at byte {0}")]
    NotUtf8(usize),
    #[error("{0}")]
    Invalid(DecodeError),
    #[error("the event has no id")]
    MissingId,
}

impl Undecodable {
    /// A stable label for the metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Undecodable::TooLarge(_) => "too_large",
            Undecodable::NotUtf8(_) => "not_utf8",
            Undecodable::Invalid(_) => "invalid_event",
            Undecodable::MissingId => "missing_id",
        }
    }
}

/// Decodes one message into an event ready to append.
pub fn decode(payload: &[u8], limits: &IngestLimits) -> Result<NewEvent, Undecodable> {
    if payload.len() > limits.max_bytes {
        return Err(Undecodable::TooLarge(payload.len()));
    }
    let text = std::str::from_utf8(payload).map_err(|e| Undecodable::NotUtf8(e.valid_up_to()))?;
    let event =
        cds_events_model::decode_event(text, &limits.limits).map_err(Undecodable::Invalid)?;
    // The decoder gives an id-less event a fresh one; here that would be a
    // different id in every bridge, so the message's own id is required.
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
    }
    let has_id = serde_json::from_str::<Id<'_>>(text)
        .ok()
        .and_then(|i| i.id)
        .is_some_and(|id| !id.trim().is_empty());
    if !has_id {
        return Err(Undecodable::MissingId);
    }
    Ok(NewEvent::from(event))
}

/// At most `max` bytes of a message, cut on a character boundary, with
/// control characters escaped so that a log line stays one line.
pub fn excerpt(payload: &[u8], max: usize) -> String {
    let cut = &payload[..payload.len().min(max)];
    let text = String::from_utf8_lossy(cut);
    let mut out: String = text.chars().flat_map(char::escape_debug).collect();
    if payload.len() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message as CDS's Go code writes it: `FullEventV2`'s field order,
    /// `<`, `>` and `&` escaped, a zone offset, nanoseconds.
    const CDS_MESSAGE: &str = r#"{"id":"3f0e7c1a-9a43-4d5e-8b1f-2c6d7e8f9a0b","type":"RunJobEnqueued","payload":{"job":"a \u003c b \u0026\u0026 c"},"project_key":"PROJ","vcs_name":"github","repository":"ovh/cds","workflow":"build","workflow_run_id":"r1","run_job_id":"rj1","run_number":3,"run_attempt":1,"region":"eu","job_id":"compile","status":"Waiting","user_id":"u1","username":"alice","user_mail":"","concurrency":"","timestamp":"2026-11-30T10:15:00.123456789+01:00"}"#;

    #[test]
    fn a_cds_message_keeps_its_id_and_payload_bytes() {
        let ev = decode(CDS_MESSAGE.as_bytes(), &IngestLimits::default()).expect("decodes");
        assert_eq!(ev.head.id, "3f0e7c1a-9a43-4d5e-8b1f-2c6d7e8f9a0b");
        assert!(
            ev.json
                .contains(r#""payload":{"job":"a \u003c b \u0026\u0026 c"},"#),
            "{}",
            ev.json
        );
        assert_eq!(ev.head.project_key, "PROJ");
        assert!(ev.json.contains("\"run_number\":3"));
    }

    #[test]
    fn the_same_limits_as_ingest_apply() {
        let limits = IngestLimits {
            limits: Limits {
                max_depth: 2,
                ..Limits::default()
            },
            max_bytes: 4096,
        };
        let deep = CDS_MESSAGE.replace(r#"{"job":"#, r#"{"job":{"deeper":1},"x":"#);
        assert!(matches!(
            decode(deep.as_bytes(), &limits),
            Err(Undecodable::Invalid(_))
        ));
        let small = IngestLimits {
            max_bytes: 10,
            ..IngestLimits::default()
        };
        assert_eq!(
            decode(CDS_MESSAGE.as_bytes(), &small).map(|_| ()),
            Err(Undecodable::TooLarge(CDS_MESSAGE.len()))
        );
    }

    #[test]
    fn a_message_without_an_id_is_refused() {
        let no_id = CDS_MESSAGE.replace(r#""id":"3f0e7c1a-9a43-4d5e-8b1f-2c6d7e8f9a0b","#, "");
        let empty = CDS_MESSAGE.replace("3f0e7c1a-9a43-4d5e-8b1f-2c6d7e8f9a0b", "");
        for m in [no_id, empty] {
            let e = decode(m.as_bytes(), &IngestLimits::default()).map(|_| ());
            assert_eq!(e, Err(Undecodable::MissingId), "{m}");
        }
    }

    #[test]
    fn garbage_is_undecodable_with_a_reason() {
        let l = IngestLimits::default();
        let cases: [(&[u8], &str); 4] = [
            (b"not json", "invalid_event"),
            (b"\"{\\\"id\\\":\\\"x\\\"}\"", "invalid_event"),
            (b"{\"id\":\"x\",\"type\":\"NoSuchType\"}", "invalid_event"),
            (b"\xff\xfe", "not_utf8"),
        ];
        for (m, reason) in cases {
            let e = decode(m, &l).expect_err("undecodable");
            assert_eq!(e.reason(), reason, "{}", excerpt(m, 100));
        }
    }

    #[test]
    fn an_excerpt_is_bounded_and_one_line() {
        let long = "é".repeat(500);
        let e = excerpt(long.as_bytes(), 101);
        assert!(e.chars().count() <= 52, "{e}");
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(b"a\nb\x1b", 100), "a\\nb\\u{1b}");
        assert_eq!(excerpt(b"\xffok", 100), "\u{fffd}ok");
    }
}
