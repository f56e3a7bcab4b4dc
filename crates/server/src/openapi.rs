//! The OpenAPI 3 document, generated from the handlers' annotations, and
//! the public route that serves it.
//!
//! This module reads the routes (their `utoipa` paths); no route reads it:
//! schemas a handler names live beside the handler, in `error.rs` or in
//! `schema.rs`.

use crate::error::{ErrorBody, ErrorInner};
use crate::schema::{FullEventSchema, PageItem, PageSchema, StatusSchema};
use crate::state::AppState;
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "cds-events",
        description = "The CDS v2 event log: ingest, query, stream."
    ),
    paths(
        crate::routes::events::ingest,
        crate::routes::events::query,
        crate::routes::events::get,
        crate::routes::events::types,
        crate::routes::stream::stream,
        crate::routes::ws::ws,
        crate::routes::ws::hatchery::hatchery_ws,
        crate::routes::mon::status,
        crate::routes::mon::version,
        crate::routes::mon::metrics,
        crate::routes::tokens::create,
        crate::routes::tokens::list,
        crate::routes::tokens::revoke,
        crate::routes::tokens::ticket,
        crate::routes::tokens::audit,
        crate::routes::notifications::list,
        crate::routes::notifications::create,
        crate::routes::notifications::get,
        crate::routes::notifications::update,
        crate::routes::notifications::delete,
        crate::routes::notifications::secret,
        crate::routes::notifications::rotate_secret,
        crate::routes::notifications::enable,
        crate::routes::notifications::disable,
        crate::routes::notifications::deliveries,
        crate::routes::notifications::delivery,
        crate::routes::notifications::redeliver,
        crate::routes::notifications::redeliver_failed,
        crate::routes::notifications::test,
        crate::routes::notifications::rotate_key,
        openapi_json,
    ),
    modifiers(&BearerScheme),
    components(schemas(
        FullEventSchema,
        ErrorBody,
        ErrorInner,
        PageItem,
        PageSchema,
        StatusSchema
    ))
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the paths refer to.
#[derive(Debug)]
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `/v2/openapi.json`; public.
pub fn router() -> Router<AppState> {
    Router::new().route("/v2/openapi.json", get(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/v2/openapi.json", tag = "mon",
    responses((status = 200, description = "the OpenAPI 3 document", body = serde_json::Value)))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
