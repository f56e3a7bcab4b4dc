//! CloudEvents responses of the query API: a page as a batch
//! (`application/cloudevents-batch+json`), one event as a structured
//! CloudEvent. The mapping is the model's ([`CloudEvent::new`]); this module
//! only chooses headers.
//!
//! A batch is a bare JSON array, so the page's cursor travels in headers:
//! `cds-events-next-cursor: N` and `Link: <…&cursor=N>; rel="next"` (both
//! absent on the last page available now).

use crate::error::ApiError;
use axum::http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use cds_events_log::{Page, Seq, StoredEvent};
use cds_events_model::FullEvent;
use cds_events_model::cloudevents::{
    BATCH_CONTENT_TYPE, CONTENT_TYPE, CloudEvent, Source, batch_json,
};

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
/// the `Link` to the next page.
pub fn page_response(source: &Source, page: &Page, uri: &Uri) -> Result<Response, ApiError> {
    let events = page
        .events
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?;
    let body = batch_json(
        page.events
            .iter()
            .zip(&events)
            .map(|(s, e)| CloudEvent::new(source, s.seq.0, e, &s.json)),
    );
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

/// One stored event as a structured CloudEvent.
pub fn one_response(source: &Source, stored: &StoredEvent) -> Result<Response, ApiError> {
    let event = decode(stored)?;
    let body = CloudEvent::new(source, stored.seq.0, &event, &stored.json).to_structured_json();
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
