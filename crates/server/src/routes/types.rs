//! `/v2/events/types`: the catalogue, and the JSON Schema of each type.
//!
//! Both are derived from the model's declarations (the catalogue, the
//! envelope, the ingest limits in force); nothing here lists a type or a
//! field. A schema's `$id` and the catalogue's links are absolute URLs of
//! this server as the client reached it (`Host`, or a proxy's
//! `X-Forwarded-Host` and `X-Forwarded-Proto`).

use crate::error::{ApiError, ErrorBody, NoToken};
use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use cds_events_model::schema::{self, event_schema, schema_url};
use cds_events_model::{EventType, Family};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// `/v2/events/types` and `/v2/events/types/{type}/schema`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/events/types", routing::get(types))
        .route("/v2/events/types/{type}/schema", routing::get(type_schema))
}

/// A family in the catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct FamilyOut {
    pub name: &'static str,
    /// `project` or `global`.
    pub scope: &'static str,
    pub fields: Vec<FieldOut>,
    pub types: Vec<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldOut {
    pub name: &'static str,
    /// CDS may leave it empty.
    pub optional: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TypeOut {
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub family: &'static str,
    pub scope: &'static str,
    /// The URL of the type's JSON Schema (`GET /v2/events/types/{type}/schema`).
    pub schema: String,
}

/// The catalogue for clients to discover.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogueOut {
    pub families: Vec<FamilyOut>,
    pub types: Vec<TypeOut>,
}

/// The catalogue, its schema links under `base` (the server's public
/// address; empty for paths alone).
pub fn catalogue(base: &str) -> CatalogueOut {
    CatalogueOut {
        families: Family::ALL
            .iter()
            .map(|f| FamilyOut {
                name: f.as_str(),
                scope: f.scope().as_str(),
                fields: f
                    .fields()
                    .iter()
                    .map(|s| FieldOut {
                        name: s.name,
                        optional: s.optional,
                    })
                    .collect(),
                types: f.types().iter().map(|t| t.as_str()).collect(),
            })
            .collect(),
        types: EventType::ALL
            .iter()
            .map(|t| TypeOut {
                event_type: t.as_str(),
                family: t.family().as_str(),
                scope: t.scope().as_str(),
                schema: schema_url(base, *t),
            })
            .collect(),
    }
}

/// `scheme://host` as the client reached this server, or `""` when the
/// request names no usable host (the links are then paths).
fn public_base(st: &AppState, headers: &HeaderMap) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            // A proxy chain lists several: the first is the client's.
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let host = header("x-forwarded-host").or_else(|| header(header::HOST.as_str()));
    let Some(host) = host.filter(|h| h.parse::<axum::http::uri::Authority>().is_ok()) else {
        return String::new();
    };
    let scheme = match header("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ if st.config.tls.cert.is_some() => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// The event catalogue: families, types, scopes, context fields, and each
/// type's schema link.
#[utoipa::path(get, path = "/v2/events/types", tag = "events",
    responses(
        (status = 200, description = "the catalogue", body = CatalogueOut),
        NoToken,
    ))]
pub async fn types(State(st): State<AppState>, headers: HeaderMap) -> axum::Json<CatalogueOut> {
    axum::Json(catalogue(&public_base(&st, &headers)))
}

/// The JSON Schema (draft 2020-12) of one event type: what `POST /v2/events`
/// accepts for it, the full event or the family's shape, under the ingest
/// limits in force.
#[utoipa::path(get, path = "/v2/events/types/{type}/schema", tag = "events",
    params(("type" = String, Path, description = "an event type of the catalogue (case-sensitive)")),
    responses(
        (status = 200, description = "the type's JSON Schema", content_type = "application/schema+json",
            body = Object),
        NoToken,
        (status = 404, description = "no such type; the details name `type` and the nearest ones", body = ErrorBody),
    ))]
pub async fn type_schema(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(given): Path<String>,
) -> Result<Response, ApiError> {
    let Some(event_type) = EventType::parse(&given) else {
        let suggestions: Vec<&str> = EventType::suggest(&given, 3)
            .into_iter()
            .map(EventType::as_str)
            .collect();
        return Err(
            ApiError::not_found(format!("no event type {given:?}")).with_details(vec![json!({
                "field": "type",
                "message": format!("unknown event type {given:?}"),
                "suggestions": suggestions,
            })]),
        );
    };
    let doc = event_schema(
        event_type,
        &public_base(&st, &headers),
        &st.config.ingest.limits,
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(schema::CONTENT_TYPE),
        )],
        doc.to_string(),
    )
        .into_response())
}
