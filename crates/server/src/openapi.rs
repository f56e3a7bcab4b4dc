//! The OpenAPI 3 document, generated from the handlers' annotations.

use cds_events_model::FULL_EVENT_KEYS;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, schema};
use utoipa::{OpenApi, PartialSchema, ToSchema};

/// The flat full event (spec §3), for the document only.
#[derive(Debug)]
pub struct FullEventSchema;

impl PartialSchema for FullEventSchema {
    fn schema() -> RefOr<Schema> {
        let mut obj = ObjectBuilder::new()
            .description(Some("A CDS v2 full event (FullEventV2). Producers may send the family shape: the same keys, fewer of them."))
            .required("id")
            .required("type")
            .required("payload")
            .required("user_mail")
            .required("concurrency")
            .required("timestamp");
        for key in FULL_EVENT_KEYS {
            let prop: Schema = match *key {
                "payload" => ObjectBuilder::new()
                    .schema_type(SchemaType::AnyValue)
                    .description(Some(
                        "the resource after the action; any JSON value, null when absent",
                    ))
                    .into(),
                "run_number" | "run_attempt" => ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(schema::SchemaFormat::KnownFormat(
                        schema::KnownFormat::Int64,
                    )))
                    .into(),
                "timestamp" => ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(schema::SchemaFormat::KnownFormat(
                        schema::KnownFormat::DateTime,
                    )))
                    .into(),
                _ => ObjectBuilder::new().schema_type(Type::String).into(),
            };
            obj = obj.property(*key, prop);
        }
        RefOr::T(obj.into())
    }
}

impl ToSchema for FullEventSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "FullEvent".into()
    }
}

/// `{"error":{"code","message","details"}}`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    pub error: ErrorInner,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorInner {
    pub code: String,
    pub message: String,
    /// For a batch: one entry per bad event, with `index` (and `line` for NDJSON), `field`, `code`, `message`.
    pub details: Vec<serde_json::Value>,
}

/// One entry of a page: the sequence number beside the event.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PageItem {
    pub seq: u64,
    pub event: FullEventSchema,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PageSchema {
    pub events: Vec<PageItem>,
    /// Pass as `cursor` for the next page; null when there is no more now.
    pub next_cursor: Option<u64>,
}

#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct StatusSchema {
    /// `ok` or `unavailable`.
    pub status: String,
    pub version: String,
    pub uptime_seconds: u64,
    /// backend, events, oldest_seq, head_seq, bytes_on_disk.
    pub storage: Option<serde_json::Value>,
    pub durability: Option<String>,
    pub error: Option<String>,
}

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
        crate::routes::ws::hatchery_ws,
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

/// This document.
#[utoipa::path(get, path = "/v2/openapi.json", tag = "mon",
    responses((status = 200, description = "the OpenAPI 3 document", body = serde_json::Value)))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
