//! `GET /v2/events/stream`: Server-Sent Events with the query API's filters
//! and exact resume (`Last-Event-ID`, `?since=N` or `?cursor=N`).

use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::events::{EventsParams, params_rejection, restrict_to_readable};
use crate::state::AppState;
use axum::extract::{Query, State, rejection::QueryRejection};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use cds_events_hub::{Feed, FeedError, Matcher};
use cds_events_log::Seq;
use futures_util::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Where a client asked to resume: `Last-Event-ID` first (what a browser's
/// EventSource sends when it reconnects), then `since=N`, then `cursor=N`.
/// A `since` that is not a number is the query API's time filter.
fn resume_point(headers: &HeaderMap, params: &mut EventsParams) -> Result<Option<Seq>, ApiError> {
    if let Some(v) = headers.get("last-event-id") {
        let s = v.to_str().unwrap_or("").trim();
        let n = s
            .parse::<u64>()
            .map_err(|_| ApiError::bad_param("Last-Event-ID", "must be a sequence number"))?;
        return Ok(Some(Seq(n)));
    }
    if let Some(n) = params
        .since
        .as_deref()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        params.since = None;
        return Ok(Some(Seq(n)));
    }
    match params.cursor.take() {
        Some(c) => Ok(Some(Seq(c.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_param("cursor", "must be a sequence number")
        })?))),
        None => Ok(None),
    }
}

/// Stream events as they are committed.
///
/// Each SSE message has the sequence number as its `id:` and the full event as
/// its `data:`. A reconnecting `EventSource` sends `Last-Event-ID` and gets
/// every matching event after it exactly once, then live. A comment every 15 s
/// keeps proxies from closing an idle stream. A client too far behind gets an
/// `event: lagged` message with `{"resume_from":N}`; at shutdown, an
/// `event: shutdown` message with the same; then the stream ends.
#[utoipa::path(get, path = "/v2/events/stream", tag = "events", params(EventsParams), security(("bearer" = [])),
    responses(
        (status = 200, description = "text/event-stream of full events, id = sequence number", content_type = "text/event-stream", body = String),
        (status = 400, description = "an invalid parameter", body = crate::openapi::ErrorBody),
        (status = 401, description = "no valid token (or ticket)", body = crate::openapi::ErrorBody),
        (status = 403, description = "a project the token may not read", body = crate::openapi::ErrorBody),
    ))]
pub async fn stream(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(mut params) = params.map_err(params_rejection)?;
    let after = resume_point(&headers, &mut params)?;
    let mut filter = params.filter()?;
    restrict_to_readable(&caller, &mut filter)?;
    let matcher: Arc<dyn Matcher> = Arc::new(filter);
    let feed = Feed::open(&st.hub, matcher, after, st.config.stream.feed_options())
        .await
        .map_err(|e| match e {
            FeedError::Lagged { resume_from } => ApiError::bad_request(
                "too_far_behind",
                format!("resume point is too far behind; resume from {resume_from} with a narrower filter"),
            ),
            other => ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "unavailable", other.to_string()),
        })?;
    let guard = ConnectionGauge::new("sse");
    let first = Event::default()
        .retry(Duration::from_secs(2))
        .comment("connected");
    let state = (Some(first), Some((feed, guard)));
    let events = futures_util::stream::unfold(state, |(first, open)| async move {
        if let Some(first) = first {
            return Some((Ok(first), (None, open)));
        }
        let (mut feed, guard) = open?;
        match feed.next().await {
            Ok(e) => {
                let ev = Event::default().id(e.seq.0.to_string()).data(&*e.json);
                Some((Ok(ev), (None, Some((feed, guard)))))
            }
            Err(err) => {
                let (name, resume_from) = match &err {
                    FeedError::Lagged { resume_from } => ("lagged", *resume_from),
                    _ => ("shutdown", feed.position()),
                };
                let ev = Event::default()
                    .event(name)
                    .data(format!(r#"{{"resume_from":{}}}"#, resume_from.0));
                Some((Ok(ev), (None, None)))
            }
        }
    });
    Ok(Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(st.config.stream.heartbeat)
            .text("heartbeat"),
    ))
}

/// Counts a live connection in `cds_events_stream_connections` for as long as
/// it lives, however it ends.
#[derive(Debug)]
pub struct ConnectionGauge(&'static str);

impl ConnectionGauge {
    pub fn new(kind: &'static str) -> Self {
        metrics::gauge!("cds_events_stream_connections", "kind" => kind).increment(1.0);
        ConnectionGauge(kind)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!("cds_events_stream_connections", "kind" => self.0).decrement(1.0);
    }
}
