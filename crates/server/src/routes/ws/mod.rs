//! `GET /v2/ws`: CDS's websocket protocol (spec §5), plus our superset:
//! an `events` filter with the query API's conditions, and resume; and the
//! hatchery queue, `GET /v2/hatchery/ws`, on the same session.
//!
//! The client sends a filter, an array of filters, or
//! `{"filters":[…],"resume_from":N}`; each message replaces the whole set.
//! `{"resume_from":N}` alone replays the current set from N. `?since=N` on the
//! URL is the resume point of the first set. Every matching event arrives as
//! `{"status":"OK","error":"","event":{…},"seq":N}`; a refused filter gets
//! `{"status":"KO","error":"…"}` (with CDS's empty event) and the connection
//! stays open. With `?format=cloudevents` (or the subprotocol
//! `cloudevents.json`) each event message is a structured CloudEvent instead;
//! without either, the messages are byte for byte CDS's.
//!
//! The protocol and the grants are the server's: [`cds`] turns CDS's filters
//! into a hub [`Matcher`] bounded by what the caller may read, [`hatchery`]
//! the regions of a hatchery token. The hub only routes events to matchers.

pub mod cds;
pub mod hatchery;

use crate::auth::Caller;
use crate::cloudevents::Standard;
use crate::error::{ApiError, NoTokenOrTicket};
use crate::extract::event_format;
use crate::slot::ConnectionSlot;
use crate::state::AppState;
use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cds::{CdsFilterSet, parse_request};
use cds_events_api::EventFormat;
use cds_events_auth::Principal;
use cds_events_hub::{Feed, FeedError, LiveEvent, Matcher};
use cds_events_log::Seq;
use cds_events_model::EventType;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// `/v2/ws` and the hatchery queue, `/v2/hatchery/ws`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/ws", get(ws))
        .route("/v2/hatchery/ws", get(hatchery::hatchery_ws))
}

/// The job queue: what a `queue` filter and the hatchery queue receive.
const QUEUE_TYPES: &[EventType] = &[
    EventType::RunJobEnqueued,
    EventType::RunJobBlocked,
    EventType::RunJobCancelled,
    EventType::RunJobSkipped,
    EventType::RunJobStopped,
    EventType::RunJobScheduled,
    EventType::RunJobBuilding,
    EventType::RunJobEnded,
];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsParams {
    /// Resume the first filter set after this sequence number.
    pub since: Option<u64>,
    /// `cds` (CDS's messages, the default), `cloudevents`: each event
    /// message is then one structured CloudEvent (as the CloudEvents
    /// websocket binding's `cloudevents.json` subprotocol, which chooses it
    /// too), or `cdevents`: one CDEvent, events without one skipped; status
    /// messages (`KO`) are unchanged.
    pub format: Option<String>,
}

/// The CloudEvents websocket binding's subprotocol (structured JSON).
const CE_SUBPROTOCOL: &str = "cloudevents.json";

/// The CDS websocket: live events by filter, with resume.
#[utoipa::path(get, path = "/v2/ws", tag = "streams", params(WsParams),
    responses(
        (status = 101, description = "websocket; see the module documentation for the protocol"),
        NoTokenOrTicket,
    ))]
pub async fn ws(req: WsRequest) -> Result<Response, ApiError> {
    req.open(None)
}

/// What both websocket endpoints take, extracted in this order: the caller,
/// `?since=N`, the upgrade.
#[derive(Debug)]
pub struct WsRequest {
    st: AppState,
    caller: Arc<Principal>,
    since: Option<Seq>,
    /// `Some` when events go out as CloudEvents or CDEvents.
    cloudevents: Option<Standard>,
    upgrade: WebSocketUpgrade,
}

impl FromRequestParts<AppState> for WsRequest {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let axum::Extension(caller) = Caller::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        let Query(params) = Query::<WsParams>::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        let asks_subprotocol = parts
            .headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == CE_SUBPROTOCOL);
        let format = match params.format.as_deref() {
            None if asks_subprotocol => EventFormat::CloudEvents,
            f => event_format(f, &HeaderMap::new(), "").map_err(IntoResponse::into_response)?,
        };
        let upgrade = WebSocketUpgrade::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?
            .protocols([CE_SUBPROTOCOL]);
        Ok(WsRequest {
            st: st.clone(),
            caller,
            since: params.since.map(Seq),
            cloudevents: Standard::of(format, &st.ce_source),
            upgrade,
        })
    }
}

impl WsRequest {
    /// Takes a connection slot and upgrades to a [`session`]. `fixed` is the
    /// matcher of an endpoint whose client sends no filters.
    fn open(self, fixed: Option<Arc<dyn Matcher>>) -> Result<Response, ApiError> {
        let WsRequest {
            st,
            caller,
            since,
            cloudevents,
            upgrade,
        } = self;
        let slot = ConnectionSlot::acquire(&st, "ws")?;
        Ok(configure(upgrade)
            .on_upgrade(move |socket| session(socket, st, slot, caller, since, fixed, cloudevents)))
    }
}

/// Socket buffers sized for many mostly idle clients: tungstenite's default
/// 128 KiB read buffer is touched in full on the first read, which alone
/// would cost 128 KiB per connection. Clients send small filter messages.
fn configure(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        // A frame announced larger is refused from its header, before any
        // of it is read (the default, 16 MiB, would be read in full first).
        .max_frame_size(MAX_CLIENT_MESSAGE)
}

const READ_BUFFER: usize = 4 * 1024;
/// Queued messages are written out once this much is buffered (and at each
/// flush): a backlog leaves in few large writes.
const WRITE_BUFFER: usize = 32 * 1024;
/// A client message is a filter set; 1 MiB is far beyond any real one.
const MAX_CLIENT_MESSAGE: usize = 1024 * 1024;
/// Events sent per flush at most.
const MAX_EVENTS_PER_FLUSH: usize = 64;

/// CDS sends a zero event with its KO messages; clients decode it as such.
const ZERO_EVENT: &str = r#"{"id":"","type":"","payload":null,"user_mail":"","concurrency":"","timestamp":"0001-01-01T00:00:00Z"}"#;

fn ko(error: &str, resume_from: Option<Seq>) -> String {
    let error = Value::String(error.to_owned());
    match resume_from {
        Some(r) => format!(
            r#"{{"status":"KO","error":{error},"event":{ZERO_EVENT},"resume_from":{}}}"#,
            r.0
        ),
        None => format!(r#"{{"status":"KO","error":{error},"event":{ZERO_EVENT}}}"#),
    }
}

/// One websocket. `fixed` is the matcher of an endpoint whose client sends no
/// filters (the hatchery queue); otherwise the client's messages set it.
async fn session(
    socket: WebSocket,
    st: AppState,
    _slot: ConnectionSlot,
    caller: Arc<Principal>,
    since: Option<Seq>,
    fixed: Option<Arc<dyn Matcher>>,
    cloudevents: Option<Standard>,
) {
    let (mut sink, mut stream) = socket.split();
    let mut feed: Option<Feed> = None;
    let accepts_filters = fixed.is_none();
    let mut matcher: Option<Arc<dyn Matcher>> = fixed;
    let mut first_resume = since;
    if let Some(m) = &matcher {
        match Feed::open(
            &st.hub,
            Arc::clone(m),
            first_resume.take(),
            st.config.stream.feed_options(),
        )
        .await
        {
            Ok(f) => feed = Some(f),
            Err(e) => {
                let resume = match e {
                    FeedError::Lagged { resume_from } => Some(resume_from),
                    _ => None,
                };
                let _ = sink
                    .send(Message::Text(ko(&e.to_string(), resume).into()))
                    .await;
                return;
            }
        }
    }
    let limits = &st.config.stream;
    let mut ping = tokio::time::interval(limits.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let filter_deadline = tokio::time::sleep(limits.filter_timeout);
    tokio::pin!(filter_deadline);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                last_heard = Instant::now();
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(_) => break,
                    _ => continue,
                };
                let request = match parse_request(&text) {
                    Ok(r) => r,
                    Err(e) => {
                        if sink.send(Message::Text(ko(&e.to_string(), None).into())).await.is_err() { break }
                        continue;
                    }
                };
                if request.filters.is_some() && !accepts_filters {
                    if sink.send(Message::Text(ko("this endpoint takes no filters", None).into())).await.is_err() { break }
                    continue;
                }
                if let Some(filters) = &request.filters {
                    match CdsFilterSet::compile(filters, Arc::clone(&caller)) {
                        Ok(set) => matcher = Some(Arc::new(set)),
                        Err(e) => {
                            if sink.send(Message::Text(ko(&e.to_string(), None).into())).await.is_err() { break }
                            continue;
                        }
                    }
                }
                let Some(m) = &matcher else {
                    if sink.send(Message::Text(ko("no filter to resume", None).into())).await.is_err() { break }
                    continue;
                };
                let after = request.resume_from.or(first_resume.take());
                // The old set's subscription ends before the new one starts.
                drop(feed.take());
                match Feed::open(&st.hub, Arc::clone(m), after, st.config.stream.feed_options()).await {
                    Ok(f) => feed = Some(f),
                    Err(FeedError::Lagged { resume_from }) => {
                        let _ = sink.send(Message::Text(ko("lagged", Some(resume_from)).into())).await;
                        break;
                    }
                    Err(e) => {
                        let _ = sink.send(Message::Text(ko(&e.to_string(), None).into())).await;
                        break;
                    }
                }
            }
            next = next_event(&mut feed) => match next {
                Ok(e) => {
                    // This event and whatever else is already queued, in one
                    // flush; a peer that takes none of it for `ping_timeout`
                    // is dead.
                    let Some(f) = feed.as_mut() else { break };
                    let sent = tokio::time::timeout(limits.ping_timeout, send_batch(&mut sink, e, f, cloudevents.as_ref())).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        tracing::debug!(token_id = %caller.token_id, "websocket peer not reading; closing");
                        break;
                    }
                }
                Err(err) => {
                    let resume = feed.as_ref().map(Feed::position);
                    let reason = match &err {
                        FeedError::Lagged { .. } => "lagged",
                        _ => "server shutting down",
                    };
                    let at = match err { FeedError::Lagged { resume_from } => Some(resume_from), _ => resume };
                    let _ = sink.send(Message::Text(ko(reason, at).into())).await;
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > limits.ping_timeout {
                    tracing::debug!(token_id = %caller.token_id, "websocket peer silent; closing");
                    break;
                }
                let ping = sink.send(Message::Ping(Default::default()));
                if !matches!(tokio::time::timeout(limits.ping_timeout, ping).await, Ok(Ok(()))) { break }
            }
            _ = &mut filter_deadline, if matcher.is_none() => {
                let why = format!("no filter set within {}s", limits.filter_timeout.as_secs_f64());
                let _ = sink.send(Message::Text(ko(&why, None).into())).await;
                let _ = sink.send(Message::Close(None)).await;
                break;
            }
        }
    }
}

/// Sends `first` and up to [`MAX_EVENTS_PER_FLUSH`] events already queued,
/// then flushes once. Each message is the event's shared websocket text.
async fn send_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    first: Arc<LiveEvent>,
    feed: &mut Feed,
    cloudevents: Option<&Standard>,
) -> Result<(), axum::Error> {
    if let Some(m) = text_message(&first, cloudevents) {
        sink.feed(m).await?;
    }
    for _ in 1..MAX_EVENTS_PER_FLUSH {
        let Some(e) = feed.try_next() else { break };
        if let Some(m) = text_message(&e, cloudevents) {
            sink.feed(m).await?;
        }
    }
    sink.flush().await
}

/// The event's message; `None` for an event without a CDEvents form when
/// the client asked for CDEvents (skipped, counted).
fn text_message(e: &LiveEvent, cloudevents: Option<&Standard>) -> Option<Message> {
    if let Some(standard) = cloudevents {
        let json = standard.live(e, "ws")?;
        return Some(Message::Text(Utf8Bytes::from(&*json)));
    }
    // The hub built the text once; checking it is UTF-8 costs no copy.
    Some(match Utf8Bytes::try_from(e.ws_message()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Text(String::from_utf8_lossy(&e.ws_message()).into_owned().into()),
    })
}

async fn next_event(feed: &mut Option<Feed>) -> Result<Arc<LiveEvent>, FeedError> {
    match feed {
        Some(f) => f.next().await,
        None => std::future::pending().await,
    }
}
