//! `/v2/events`: ingest, query and get by id (the catalogue is `types`).

use crate::auth::{Caller, forbidden};
use crate::cloudevents::Standard;
use crate::error::{ApiError, ErrorBody, NoToken, ProjectReader};
use crate::extract::{EventsParams, event_format, restrict_to_readable};
use crate::schema::{FullEventSchema, PageSchema};
use crate::state::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::{OriginalUri, Path, Query, State, rejection::QueryRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use cds_events_api::FilterText;
use cds_events_auth::Principal;
use cds_events_log::{NewEvent, Order, Seq};
use cds_events_model::cloudevents::decode::{BINARY_MODE_HEADERS, decode_binary_cloudevent};
use cds_events_model::cloudevents::{BATCH_CONTENT_TYPE, CONTENT_TYPE as CE_CONTENT_TYPE};
use cds_events_model::{BatchError, EventScope, EventType};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// `/v2/events` and `/v2/events/{id}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/events", routing::get(query).post(ingest))
        .route("/v2/events/{id}", routing::get(get))
}

/// The header that carries an event's sequence number beside a bare event.
pub const SEQ_HEADER: &str = "cds-events-seq";

/// One stored event in the ingest answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppendedOut {
    pub id: String,
    pub seq: u64,
    /// The id was already stored: nothing was written; `seq` is the original.
    pub duplicate: bool,
}

/// The ingest answer: one entry per event, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestOut {
    pub events: Vec<AppendedOut>,
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    matches!(
        media_type(headers).as_str(),
        "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
    )
}

/// The media type of the body, lowercase, without parameters.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_cloudevents(headers: &HeaderMap) -> bool {
    matches!(
        media_type(headers).as_str(),
        CE_CONTENT_TYPE | BATCH_CONTENT_TYPE
    )
}

/// A CloudEvent in binary content mode: any required `ce-*` attribute
/// header, outside the structured media types (which win, as the HTTP
/// binding says).
fn is_binary_cloudevent(headers: &HeaderMap) -> bool {
    !is_cloudevents(headers) && BINARY_MODE_HEADERS.iter().any(|h| headers.contains_key(*h))
}

/// Publish events.
///
/// The body is one event object, a JSON array of events, or NDJSON
/// (`Content-Type: application/x-ndjson`). Each event may have the CDS
/// producer (family) shape or the full-event shape. With
/// `Content-Type: application/cloudevents+json` (one structured CloudEvent)
/// or `application/cloudevents-batch+json` (an array of them), each
/// CloudEvent's `data` must be a CDS event: it is stored as that event, its
/// id kept; a CloudEvent that does not match its data is refused naming the
/// field. One CloudEvent in binary content mode (the `ce-specversion`,
/// `ce-id`, `ce-source`, `ce-type` headers, percent-encoded; the body, a CDS
/// event, being its data, with `Content-Type` its JSON `datacontenttype`) is
/// taken as the same event in structured mode; a bad header is refused by
/// name (`ce-type`, `content-type`). The batch is all-or-nothing; the answer
/// comes after the commit.
#[utoipa::path(
    post, path = "/v2/events", tag = "events",
    request_body(content = Vec<FullEventSchema>, description = "one event, an array, or NDJSON; \
        with ce-* headers, one event as the data of a binary-mode CloudEvent",
        content_type = "application/json"),
    params(
        ("ce-specversion" = Option<String>, Header, description = "binary-mode CloudEvent: `1.0`"),
        ("ce-id" = Option<String>, Header, description = "binary-mode CloudEvent: its id (the data's id, when it has one)"),
        ("ce-source" = Option<String>, Header, description = "binary-mode CloudEvent: its source (any non-empty URI reference)"),
        ("ce-type" = Option<String>, Header, description = "binary-mode CloudEvent: the data's mapped type, `org.ovh.cds.<family>.<Type>`"),
    ),
    responses(
        (status = 200, description = "every event committed (or already stored)", body = IngestOut),
        (status = 400, description = "invalid events; details list each bad event's index and reason (a binary-mode CloudEvent's bad header by name)", body = ErrorBody),
        NoToken,
        (status = 403, description = "an event outside the token's publish grants; nothing stored", body = ErrorBody),
        (status = 413, description = "body or batch too large", body = ErrorBody),
        (status = 429, description = "the token's publish rate is exceeded; see Retry-After", body = ErrorBody),
        (status = 503, description = "storage busy or away; nothing stored; see Retry-After", body = ErrorBody),
        (status = 507, description = "the disk holding the log is full; nothing stored; see Retry-After", body = ErrorBody),
    )
)]
pub async fn ingest(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let max = st.config.ingest.max_body_bytes;
    let bytes = axum::body::to_bytes(body, max).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::too_large(format!("request body exceeds {max} bytes"))
        } else {
            ApiError::bad_request("invalid_body", format!("cannot read the request body: {e}"))
        }
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_utf8",
            format!("body is not valid UTF-8 at byte {}", e.valid_up_to()),
        )
    })?;
    let limits = &st.config.ingest.limits;
    let binary = is_binary_cloudevent(&headers);
    let ndjson = !binary && is_ndjson(&headers);
    let decoded = if binary {
        let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
        decode_binary_cloudevent(pairs, text, limits)
            .map(|e| vec![e])
            .map_err(|e| BatchError::Items(vec![(0, e)]))
    } else if ndjson {
        cds_events_model::decode_ndjson_body(text, limits)
    } else if is_cloudevents(&headers) {
        cds_events_model::cloudevents::decode::decode_cloudevents_body(text, limits)
    } else {
        cds_events_model::decode_json_body(text, limits)
    };
    let events = match decoded {
        Ok(events) => events,
        Err(BatchError::Body(e)) => {
            return Err(ApiError::bad_request("invalid_json", e.message.clone())
                .with_details(vec![json!(e)]));
        }
        Err(BatchError::Items(errors)) => {
            let details: Vec<serde_json::Value> = errors
                .iter()
                .map(|(i, e)| {
                    let mut d = json!({"index": i});
                    if ndjson {
                        d["line"] = json!(cds_events_model::ndjson_line_of(text, *i));
                    }
                    if let (Some(obj), serde_json::Value::Object(err)) =
                        (d.as_object_mut(), json!(e))
                    {
                        obj.extend(err);
                    }
                    d
                })
                .collect();
            let first = &errors[0];
            return Err(ApiError::bad_request(
                "invalid_events",
                format!(
                    "{} invalid event(s); nothing was stored; first, at index {}: {}",
                    errors.len(),
                    first.0,
                    first.1.message
                ),
            )
            .with_details(details));
        }
    };
    if events.is_empty() {
        return Err(ApiError::bad_request(
            "empty_batch",
            "the request holds no event",
        ));
    }
    if events.len() > st.config.ingest.max_batch_events {
        return Err(ApiError::too_large(format!(
            "batch of {} events exceeds the limit of {}",
            events.len(),
            st.config.ingest.max_batch_events
        )));
    }
    // The whole batch is refused if any event is outside the token's grants.
    if let Some((i, e)) = events
        .iter()
        .enumerate()
        .find(|(_, e)| !caller.can_publish_event(e))
    {
        let what = if e.project_key.is_empty() {
            "global events".to_owned()
        } else {
            format!("project {}", e.project_key)
        };
        return Err(forbidden(format!(
            "this token may not publish {what}; nothing was stored"
        ))
        .with_details(vec![json!({"index": i, "field": "project_key"})]));
    }
    if let Some(limiter) = &st.publish_limiter {
        check_rate(limiter, &caller, events.len())?;
    }
    metrics::histogram!("cds_events_ingest_batch_events").record(events.len() as f64);
    let mut per_type = [0u64; 128];
    for e in &events {
        per_type[type_index(e.event_type)] += 1;
    }
    let batch: Vec<NewEvent> = events.into_iter().map(NewEvent::from).collect();
    let out = st.log.append(batch).await?;
    let dups = out.iter().filter(|a| a.duplicate).count() as u64;
    for (i, n) in per_type.iter().enumerate() {
        if *n > 0 {
            metrics::counter!("cds_events_ingested_total", "type" => EventType::ALL[i].as_str())
                .increment(*n);
        }
    }
    if dups > 0 {
        metrics::counter!("cds_events_duplicates_total").increment(dups);
    }
    let body = IngestOut {
        events: out
            .into_iter()
            .map(|a| AppendedOut {
                id: a.id,
                seq: a.seq.0,
                duplicate: a.duplicate,
            })
            .collect(),
    };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// Spends `n` events of the token's publish budget, or answers 429 with the
/// seconds to wait in `Retry-After`.
fn check_rate(
    limiter: &crate::state::PublishLimiter,
    caller: &Principal,
    n: usize,
) -> Result<(), ApiError> {
    use governor::clock::{Clock, DefaultClock};
    let n = std::num::NonZeroU32::new(n.min(u32::MAX as usize) as u32)
        .unwrap_or(std::num::NonZeroU32::MIN);
    match limiter.check_key_n(&caller.token_id, n) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(ApiError::too_many(
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            ))
        }
        Err(_) => Err(ApiError::too_many(1).with_details(vec![json!({
            "message": "this batch is larger than the token's publish burst; send smaller batches"
        })])),
    }
}

fn type_index(t: EventType) -> usize {
    EventType::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_ref()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Query the history.
///
/// Filters combine with AND. Pages follow the sequence order; pass
/// `next_cursor` back as `cursor` for the next page (`null`: no more now).
/// With `format=cloudevents` (or `Accept: application/cloudevents-batch+json`)
/// the body is a JSON array of CloudEvents and the next cursor is in the
/// `cds-events-next-cursor` header and a `Link: <…>; rel="next"`.
#[utoipa::path(
    get, path = "/v2/events", tag = "events", params(FilterText, EventsParams),
    responses(
        (status = 200, description = "a page of events, each with its sequence number beside it (or a CloudEvents batch)", body = PageSchema,
            headers(("cds-events-next-cursor" = u64, description = "with format=cloudevents: the next page's cursor"))),
        (status = 400, description = "an invalid parameter, named in the error", body = ErrorBody),
        ProjectReader,
    )
)]
pub async fn query(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let format = event_format(params.format.as_deref(), &headers, BATCH_CONTENT_TYPE)?;
    let mut filter = params.filter()?;
    restrict_to_readable(&caller, &mut filter)?;
    let limit = match nonempty(&params.limit) {
        None => st.config.query.default_limit,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if n >= 1 && n <= st.config.query.max_limit => n,
            _ => {
                return Err(ApiError::bad_param(
                    "limit",
                    format!("must be an integer from 1 to {}", st.config.query.max_limit),
                ));
            }
        },
    };
    let order = match nonempty(&params.order).as_deref() {
        None | Some("asc") => Order::Asc,
        Some("desc") => Order::Desc,
        Some(other) => {
            return Err(ApiError::bad_param(
                "order",
                format!("{other:?} is neither asc nor desc"),
            ));
        }
    };
    let cursor = match nonempty(&params.cursor) {
        None => None,
        Some(c) => Some(Seq(c.parse::<u64>().map_err(|_| {
            ApiError::bad_param("cursor", "must be a sequence number")
        })?)),
    };
    let page = st
        .log
        .query(cds_events_log::Query {
            filter,
            cursor,
            limit,
            order,
        })
        .await?;
    if let Some(standard) = Standard::of(format, &st.ce_source) {
        return crate::cloudevents::page_response(&standard, &page, &uri);
    }
    // The stored JSON is spliced in as is: no decode, no re-encode.
    let mut body =
        String::with_capacity(page.events.iter().map(|e| e.json.len() + 32).sum::<usize>() + 64);
    body.push_str("{\"events\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str("{\"seq\":");
        body.push_str(&e.seq.0.to_string());
        body.push_str(",\"event\":");
        body.push_str(&e.json);
        body.push('}');
    }
    body.push_str("],\"next_cursor\":");
    match page.next_cursor {
        Some(c) => body.push_str(&c.0.to_string()),
        None => body.push_str("null"),
    }
    body.push('}');
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// `?format=` of `GET /v2/events/{id}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatParam {
    /// `cds` (the default), `cloudevents` (also chosen by
    /// `Accept: application/cloudevents+json`) or `cdevents` (406 for an
    /// event without a CDEvents counterpart).
    pub format: Option<String>,
}

/// Get one event by id.
///
/// The body is the bare full event (or, with `format=cloudevents`, a
/// structured CloudEvent); its sequence number is in the `cds-events-seq`
/// header.
#[utoipa::path(
    get, path = "/v2/events/{id}", tag = "events",
    params(("id" = String, Path, description = "the event id"), FormatParam),
    responses(
        (status = 200, description = "the full event", body = FullEventSchema,
            headers(("cds-events-seq" = u64, description = "the event's sequence number"))),
        (status = 400, description = "an unknown `format`", body = ErrorBody),
        NoToken,
        (status = 404, description = "no such event, or one the token may not read", body = ErrorBody),
        (status = 406, description = "`format=cdevents` for an event with no CDEvents counterpart", body = ErrorBody),
    )
)]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<FormatParam>,
) -> Result<Response, ApiError> {
    let format = event_format(params.format.as_deref(), &headers, CE_CONTENT_TYPE)?;
    let not_found = || ApiError::not_found("no event with this id");
    let ev = st.log.get(&id).await?.ok_or_else(not_found)?;
    // An event the caller may not read is indistinguishable from no event.
    #[derive(Deserialize)]
    struct Scope {
        #[serde(default)]
        project_key: String,
    }
    let scope: Scope = serde_json::from_str(&ev.json).map_err(|_| not_found())?;
    if !caller.can_read(&EventScope::from_wire(&scope.project_key)) {
        return Err(not_found());
    }
    if let Some(standard) = Standard::of(format, &st.ce_source) {
        let mut resp = crate::cloudevents::one_response(&standard, &ev)?;
        resp.headers_mut().insert(
            header::HeaderName::from_static(SEQ_HEADER),
            HeaderValue::from(ev.seq.0),
        );
        return Ok(resp);
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::HeaderName::from_static(SEQ_HEADER),
                HeaderValue::from(ev.seq.0),
            ),
        ],
        ev.json.to_string(),
    )
        .into_response())
}
