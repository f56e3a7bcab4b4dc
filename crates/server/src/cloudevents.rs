//! CloudEvents responses of the query API: a page as a batch
//! (`application/cloudevents-batch+json`), one event as a structured
//! CloudEvent. The mapping is the model's ([`CloudEvent::new`], or
//! `cdevents::map` for `format=cdevents`: a CDEvent is sent exactly as a
//! CloudEvent); this module only chooses headers, and [`Standard`] is the
//! one choice every stream makes between the two.
//!
//! An event without a CDEvents counterpart is not sent as a CDEvent: it is
//! left out and counted in `cds_events_cdevents_unmapped_total{way}`.
//!
//! A batch is a bare JSON array, so the page's cursor travels in headers:
//! `cds-events-next-cursor: N` and `Link: <…&cursor=N>; rel="next"` (both
//! absent on the last page available now).

use crate::error::ApiError;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cds_events_api::EventFormat;
use cds_events_hub::LiveEvent;
use cds_events_log::{Page, Seq, StoredEvent};
use cds_events_model::FullEvent;
use cds_events_model::cdevents::{self, CdEvent};
use cds_events_model::cloudevents::{
    BATCH_CONTENT_TYPE, CONTENT_TYPE, CloudEvent, Source, batch_json,
};
use std::sync::Arc;

/// The standard a reader asked its events in (CDS's own shape is `None`
/// of it), with the process's one configured `source` base.
#[derive(Debug, Clone)]
pub enum Standard {
    CloudEvents(Source),
    CdEvents(Source),
}

impl Standard {
    /// The standard of `format`, or `None` for CDS's shape.
    pub fn of(format: EventFormat, source: &Source) -> Option<Standard> {
        match format {
            EventFormat::Cds => None,
            EventFormat::CloudEvents => Some(Standard::CloudEvents(source.clone())),
            EventFormat::CdEvents => Some(Standard::CdEvents(source.clone())),
        }
    }

    /// A live event's structured JSON in this standard (shared by every
    /// reader); `None`, counted under `way`, when it has no CDEvents form.
    pub fn live(&self, e: &LiveEvent, way: &'static str) -> Option<Arc<str>> {
        match self {
            Standard::CloudEvents(source) => e.cloudevent(source),
            Standard::CdEvents(source) => {
                let out = e.cdevent(source);
                if out.is_none() {
                    unmapped(way, 1);
                }
                out
            }
        }
    }

    fn source(&self) -> &Source {
        match self {
            Standard::CloudEvents(s) | Standard::CdEvents(s) => s,
        }
    }
}

/// Counts events left out of a CDEvents output at `way` (query, sse, ws,
/// webhook).
pub fn unmapped(way: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!("cds_events_cdevents_unmapped_total", "way" => way).increment(n);
    }
}

/// The header with the next page's cursor, beside a CloudEvents batch.
pub const NEXT_CURSOR_HEADER: &str = "cds-events-next-cursor";

fn decode(e: &StoredEvent) -> Result<FullEvent, ApiError> {
    cds_events_model::decode_stored(&e.json).map_err(|err| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("stored event {} does not decode: {}", e.seq.0, err.message),
        )
    })
}

/// A page of the history as a CloudEvents batch; `uri` is the request's, for
/// the `Link` to the next page. In CDEvents, the events without a
/// counterpart are left out (the page may hold fewer than `limit`; the
/// cursor still moves past them).
pub fn page_response(standard: &Standard, page: &Page, uri: &Uri) -> Result<Response, ApiError> {
    let source = standard.source();
    let events = page
        .events
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?;
    let body = match standard {
        Standard::CloudEvents(_) => batch_json(
            page.events
                .iter()
                .zip(&events)
                .map(|(s, e)| CloudEvent::new(source, s.seq.0, e, &s.json)),
        ),
        Standard::CdEvents(_) => {
            let cds: Vec<Option<CdEvent>> =
                events.iter().map(|e| cdevents::map(source, e)).collect();
            unmapped("query", cds.iter().filter(|c| c.is_none()).count() as u64);
            batch_json(
                page.events
                    .iter()
                    .zip(&events)
                    .zip(&cds)
                    .filter_map(|((s, e), cd)| Some(cd.as_ref()?.cloudevent(source, s.seq.0, e))),
            )
        }
    };
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(BATCH_CONTENT_TYPE),
        )],
        body,
    )
        .into_response();
    if let Some(next) = page.next_cursor {
        let h = resp.headers_mut();
        h.insert(
            HeaderName::from_static(NEXT_CURSOR_HEADER),
            HeaderValue::from(next.0),
        );
        if let Ok(link) = HeaderValue::from_str(&next_link(uri, next)) {
            h.insert(header::LINK, link);
        }
    }
    Ok(resp)
}

/// `<path?…&cursor=N>; rel="next"`: the request's own parameters, its cursor
/// replaced.
fn next_link(uri: &Uri, next: Seq) -> String {
    let mut query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
        .collect();
    let cursor = format!("cursor={}", next.0);
    query.push(&cursor);
    format!("<{}?{}>; rel=\"next\"", uri.path(), query.join("&"))
}

/// One stored event as a structured CloudEvent; in CDEvents, 406 for an
/// event without a counterpart.
pub fn one_response(standard: &Standard, stored: &StoredEvent) -> Result<Response, ApiError> {
    let event = decode(stored)?;
    let body = match standard {
        Standard::CloudEvents(source) => {
            CloudEvent::new(source, stored.seq.0, &event, &stored.json).to_structured_json()
        }
        Standard::CdEvents(source) => match cdevents::map(source, &event) {
            Some(cd) => cd
                .cloudevent(source, stored.seq.0, &event)
                .to_structured_json(),
            None => {
                unmapped("query", 1);
                return Err(ApiError::new(
                    StatusCode::NOT_ACCEPTABLE,
                    "no_cdevent",
                    format!("a {} event has no CDEvents form", event.event_type),
                ));
            }
        },
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_keeps_the_filters_and_replaces_the_cursor() {
        let uri: Uri = "/v2/events?project_key=A&cursor=3&format=cloudevents"
            .parse()
            .expect("uri");
        assert_eq!(
            next_link(&uri, Seq(42)),
            "</v2/events?project_key=A&format=cloudevents&cursor=42>; rel=\"next\""
        );
        let bare: Uri = "/v2/events".parse().expect("uri");
        assert_eq!(
            next_link(&bare, Seq(1)),
            "</v2/events?cursor=1>; rel=\"next\""
        );
    }
}
