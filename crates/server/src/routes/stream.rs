//! `GET /v2/events/stream`: Server-Sent Events with the query API's filters
//! and exact resume (`Last-Event-ID`, `?since=N` or `?cursor=N`).

use crate::auth::Caller;
use crate::cloudevents::Standard;
use crate::error::{ApiError, ErrorBody, NoTokenOrTicket};
use crate::extract::{EventsParams, event_format, restrict_to_readable};
use crate::slot::ConnectionSlot;
use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State, rejection::QueryRejection};
use axum::http::HeaderMap;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use cds_events_api::FilterText;
use cds_events_hub::{Feed, FeedError, LiveEvent, Matcher, sse_message};
use cds_events_log::Seq;
use futures_util::StreamExt;
use std::convert::Infallible;
use std::sync::Arc;

/// `/v2/events/stream`.
pub fn router() -> Router<AppState> {
    Router::new().route("/v2/events/stream", get(stream))
}

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
        .filter
        .since
        .as_deref()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        params.filter.since = None;
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
/// its `data:` (with `format=cloudevents`, a structured CloudEvent; with
/// `format=cdevents`, a CDEvent, events without one skipped). A reconnecting `EventSource` sends `Last-Event-ID` and gets
/// every matching event after it exactly once, then live. A comment every 15 s
/// keeps proxies from closing an idle stream. A client too far behind gets an
/// `event: lagged` message with `{"resume_from":N}`; at shutdown, an
/// `event: shutdown` message with the same; then the stream ends.
#[utoipa::path(get, path = "/v2/events/stream", tag = "events", params(FilterText, EventsParams),
    responses(
        (status = 200, description = "text/event-stream of full events, id = sequence number", content_type = "text/event-stream", body = String),
        (status = 400, description = "an invalid parameter", body = ErrorBody),
        NoTokenOrTicket,
        (status = 403, description = "a project the token may not read", body = ErrorBody),
    ))]
pub async fn stream(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(mut params) = params?;
    let slot = ConnectionSlot::acquire(&st, "sse")?;
    let after = resume_point(&headers, &mut params)?;
    // Only the parameter chooses: a stream's `Accept` is text/event-stream.
    let standard = Standard::of(
        event_format(params.format.as_deref(), &HeaderMap::new(), "")?,
        &st.ce_source,
    );
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
            FeedError::Log(e) => ApiError::from(e),
            FeedError::Closed => ApiError::from(cds_events_log::LogError::Closed),
        })?;
    let mut heartbeat = tokio::time::interval(st.config.stream.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sse = SseFeed {
        feed: Some(feed),
        heartbeat,
        sent_since_tick: true,
        standard,
        _slot: slot,
    };
    let first = Bytes::from_static(b"retry: 2000\n: connected\n\n");
    let body = futures_util::stream::once(async move { Ok::<_, Infallible>(first) }).chain(
        futures_util::stream::unfold(sse, |mut s| async move {
            s.next_chunk().await.map(|chunk| (Ok(chunk), s))
        }),
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// Events written per chunk at most: a client with a backlog gets it in
/// large writes rather than one system call per event.
const MAX_EVENTS_PER_CHUNK: usize = 64;

/// One SSE connection's writer: the feed, framed with each event's shared
/// `LiveEvent::sse_frame` (built once however many clients get it), plus the
/// heartbeat comment when nothing else was sent for a whole interval.
struct SseFeed {
    feed: Option<Feed>,
    heartbeat: tokio::time::Interval,
    sent_since_tick: bool,
    /// `format=cloudevents` or `cdevents`: each `data:` is a structured
    /// CloudEvent or CDEvent (an event without a CDEvents form is skipped).
    standard: Option<Standard>,
    _slot: ConnectionSlot,
}

/// One event's SSE message, in the connection's format (nothing for an
/// event without a CDEvents form).
fn frame(standard: &Option<Standard>, e: &LiveEvent) -> Bytes {
    match standard {
        None => e.sse_frame(),
        Some(s) => s
            .live(e, "sse")
            .map(|json| sse_message(e.seq, &json))
            .unwrap_or_default(),
    }
}

impl SseFeed {
    /// The next bytes to write, or `None` when the stream ends.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let feed = self.feed.as_mut()?;
        loop {
            tokio::select! {
                next = feed.next() => {
                    self.sent_since_tick = true;
                    return Some(match next {
                        Ok(first) => {
                            let Some(second) = feed.try_next() else { return Some(frame(&self.standard, &first)) };
                            let mut chunk = BytesMut::with_capacity(4 * first.json.len());
                            chunk.extend_from_slice(&frame(&self.standard, &first));
                            chunk.extend_from_slice(&frame(&self.standard, &second));
                            for _ in 2..MAX_EVENTS_PER_CHUNK {
                                let Some(e) = feed.try_next() else { break };
                                chunk.extend_from_slice(&frame(&self.standard, &e));
                            }
                            chunk.freeze()
                        }
                        Err(err) => {
                            let (name, resume_from) = match &err {
                                FeedError::Lagged { resume_from } => ("lagged", *resume_from),
                                _ => ("shutdown", feed.position()),
                            };
                            self.feed = None;
                            Bytes::from(format!(
                                "event: {name}\ndata: {{\"resume_from\":{}}}\n\n",
                                resume_from.0
                            ))
                        }
                    });
                }
                _ = self.heartbeat.tick() => {
                    if !std::mem::replace(&mut self.sent_since_tick, false) {
                        return Some(Bytes::from_static(b": heartbeat\n\n"));
                    }
                }
            }
        }
    }
}
