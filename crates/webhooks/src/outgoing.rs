//! What one attempt sends, in its notification's format: CDS's full event
//! (`format: cds`), or a CloudEvent (`format: cloudevents`) in structured
//! mode (the body is the event, `application/cloudevents+json`) or binary
//! mode (`ce-*` headers, the body is the full event). The CloudEvent is the
//! model's one mapping; the signature covers the body actually sent.

use crate::model::{ContentMode, EventFormat};
use cds_events_log::Seq;
use cds_events_model::cloudevents::{CONTENT_TYPE, CloudEvent, DATA_CONTENT_TYPE, Source};
use reqwest::header::{HeaderName, HeaderValue};
use std::borrow::Cow;

/// A request body and its framing headers.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing<'a> {
    pub body: Cow<'a, str>,
    pub content_type: &'static str,
    /// `ce-*` headers in binary mode; none otherwise.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl<'a> Outgoing<'a> {
    /// The body of the event stored at `seq` as `json`, for a notification
    /// of `format` and `mode`. `Err` names why a stored event cannot be sent
    /// as a CloudEvent (it does not decode); `Ok(None)`: the event has no
    /// CDEvents form (`format: cdevents`), so nothing is sent.
    pub(crate) fn event(
        format: EventFormat,
        mode: ContentMode,
        source: &Source,
        seq: Seq,
        json: &'a str,
    ) -> Result<Option<Outgoing<'a>>, String> {
        if format == EventFormat::Cds {
            return Ok(Some(Outgoing::cds(json)));
        }
        let event = cds_events_model::decode_stored(json)
            .map_err(|e| format!("the stored event does not decode: {}", e.message))?;
        if format == EventFormat::CdEvents {
            let Some(cd) = cds_events_model::cdevents::map(source, &event) else {
                return Ok(None);
            };
            let ce = cd.cloudevent(source, seq.0, &event);
            // Binary mode's body is the CDEvent (`data`), owned here.
            let out = Outgoing::cloudevent(&ce, mode, "");
            return Ok(Some(match mode {
                ContentMode::Binary => Outgoing {
                    body: Cow::Owned(cd.data.clone()),
                    ..out
                },
                ContentMode::Structured => out,
            }));
        }
        Ok(Some(Outgoing::cloudevent(
            &CloudEvent::new(source, seq.0, &event, json),
            mode,
            json,
        )))
    }

    /// CDS's full event as is.
    pub(crate) fn cds(json: &'a str) -> Outgoing<'a> {
        Outgoing {
            body: Cow::Borrowed(json),
            content_type: DATA_CONTENT_TYPE,
            headers: Vec::new(),
        }
    }

    /// A CloudEvent in `mode`; `data` is its data (`ce.data`), the body of
    /// binary mode.
    pub(crate) fn cloudevent(
        ce: &CloudEvent<'_>,
        mode: ContentMode,
        data: &'a str,
    ) -> Outgoing<'a> {
        match mode {
            ContentMode::Structured => Outgoing {
                body: Cow::Owned(ce.to_structured_json()),
                content_type: CONTENT_TYPE,
                headers: Vec::new(),
            },
            ContentMode::Binary => Outgoing {
                body: Cow::Borrowed(data),
                content_type: DATA_CONTENT_TYPE,
                headers: ce
                    .binary_headers()
                    .into_iter()
                    .filter_map(|(k, v)| {
                        // Percent-encoded: always a valid header value.
                        Some((
                            HeaderName::from_bytes(k.as_bytes()).ok()?,
                            HeaderValue::from_str(&v).ok()?,
                        ))
                    })
                    .collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cds_events_model::{EventType, FullEvent};

    fn stored() -> String {
        let mut e = FullEvent::new(EventType::RunEnded);
        e.project_key = "P".into();
        e.workflow_run_id = "r 1".into();
        e.to_json()
    }

    #[test]
    fn cds_sends_the_stored_event_untouched() {
        let json = stored();
        let o = Outgoing::event(
            EventFormat::Cds,
            ContentMode::Binary,
            &Source::default(),
            Seq(3),
            &json,
        )
        .expect("sendable")
        .expect("has a form");
        assert_eq!(o.body, json.as_str());
        assert_eq!(o.content_type, "application/json");
        assert!(o.headers.is_empty());
    }

    #[test]
    fn structured_sends_the_cloudevent_with_its_media_type() {
        let json = stored();
        let o = Outgoing::event(
            EventFormat::CloudEvents,
            ContentMode::Structured,
            &Source::default(),
            Seq(3),
            &json,
        )
        .expect("sendable")
        .expect("has a form");
        assert_eq!(o.content_type, "application/cloudevents+json");
        let v: serde_json::Value = serde_json::from_str(&o.body).expect("json");
        assert_eq!(v["type"], "org.ovh.cds.workflowrun.RunEnded");
        assert_eq!(v["cdsseq"], "00000000000000000003");
        assert!(o.headers.is_empty());
    }

    #[test]
    fn binary_sends_the_full_event_with_ce_headers() {
        let json = stored();
        let o = Outgoing::event(
            EventFormat::CloudEvents,
            ContentMode::Binary,
            &Source::default(),
            Seq(3),
            &json,
        )
        .expect("sendable")
        .expect("has a form");
        assert_eq!(o.body, json.as_str());
        assert_eq!(o.content_type, "application/json");
        let get = |name: &str| {
            o.headers
                .iter()
                .find(|(k, _)| k.as_str() == name)
                .map(|(_, v)| v.to_str().unwrap_or("").to_owned())
        };
        assert_eq!(get("ce-specversion").as_deref(), Some("1.0"));
        assert_eq!(get("ce-subject").as_deref(), Some("r%201"));
        assert_eq!(get("ce-cdsproject").as_deref(), Some("P"));
        assert_eq!(o.headers.len(), 8);
    }

    #[test]
    fn cdevents_sends_the_cdevent_and_nothing_for_an_event_without_one() {
        let json = stored();
        let src = Source::default();
        let o = Outgoing::event(
            EventFormat::CdEvents,
            ContentMode::Structured,
            &src,
            Seq(3),
            &json,
        )
        .expect("sendable")
        .expect("a run end has a CDEvent");
        assert_eq!(o.content_type, "application/cloudevents+json");
        let v: serde_json::Value = serde_json::from_str(&o.body).expect("json");
        assert_eq!(v["type"], "dev.cdevents.pipelinerun.finished.0.3.0");
        assert_eq!(v["data"]["context"]["specversion"], "0.5.1");
        let b = Outgoing::event(
            EventFormat::CdEvents,
            ContentMode::Binary,
            &src,
            Seq(3),
            &json,
        )
        .expect("sendable")
        .expect("a run end has a CDEvent");
        let body: serde_json::Value = serde_json::from_str(&b.body).expect("json");
        assert_eq!(body, v["data"], "binary mode's body is the CDEvent");
        let ce_type = b.headers.iter().find(|(k, _)| k.as_str() == "ce-type");
        assert_eq!(
            ce_type.map(|(_, v)| v.to_str().unwrap_or("")),
            Some("dev.cdevents.pipelinerun.finished.0.3.0")
        );
        let user = FullEvent::new(EventType::UserCreated).to_json();
        let none = Outgoing::event(
            EventFormat::CdEvents,
            ContentMode::Structured,
            &src,
            Seq(4),
            &user,
        )
        .expect("sendable");
        assert!(none.is_none(), "a user event has no CDEvents form");
    }
}
