//! Descriptions, for the OpenAPI document only, of bodies the handlers write
//! by hand (the stored event JSON is spliced in as is, never re-encoded):
//! the full event, a query page, the status answer.
//!
//! Nothing here is serialized; a body that is a real struct carries its own
//! schema where it is declared.

use cds_events_model::FULL_EVENT_KEYS;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{RefOr, schema};
use utoipa::{PartialSchema, ToSchema};

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
    /// Where the stores live: `sqlite` (the data directory) or `postgresql`
    /// (shared by every instance).
    pub backend: String,
    /// This instance's id among those sharing the database.
    pub instance: String,
    pub error: Option<String>,
    /// When the CDS bridge is configured: state, connected_since,
    /// gap_open_since, windows (start, end, seconds, reason; newest last),
    /// windows_total, gap_seconds_total, messages (received, ingested,
    /// duplicates, undecodable, dropped), last_error.
    pub bridge: Option<serde_json::Value>,
}
