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
        crate::routes::stats::stats,
        crate::routes::types::types,
        crate::routes::types::type_schema,
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
        crate::routes::console::session::sign_in,
        crate::routes::console::session::current,
        crate::routes::console::session::sign_out,
        crate::routes::notifications::list,
        crate::routes::notifications::create,
        crate::routes::notifications::get,
        crate::routes::notifications::update,
        crate::routes::notifications::delete,
        crate::routes::notifications::preview::preview,
        crate::routes::notifications::secret,
        crate::routes::notifications::rotate_secret,
        crate::routes::notifications::public_key,
        crate::routes::notifications::enable,
        crate::routes::notifications::disable,
        crate::routes::notifications::health,
        crate::routes::notifications::deliveries,
        crate::routes::notifications::delivery,
        crate::routes::notifications::redeliver,
        crate::routes::notifications::redeliver_failed,
        crate::routes::notifications::test,
        crate::routes::notifications::rotate_key,
        crate::routes::sinks::list,
        crate::routes::sinks::pause,
        crate::routes::sinks::resume,
        crate::routes::sinks::replay,
        openapi_json,
    ),
    // Every route needs a bearer token unless it says otherwise
    // (`security(())`), as the router protects every route but its public
    // list.
    security(("bearer" = [])),
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
#[utoipa::path(get, path = "/v2/openapi.json", tag = "mon", security(()),
    responses((status = 200, description = "the OpenAPI 3 document", body = serde_json::Value)))]
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cds_events_api::{
        DeliveryOut, DeliveryStatus, NotificationAuth, NotificationOut, OrderedBy, TokenOut,
    };
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// The properties the document gives a schema.
    fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema} has no properties in the document"))
            .keys()
            .cloned()
            .collect()
    }

    /// The keys a value has on the wire, every optional one filled in.
    fn keys(value: impl serde::Serialize) -> BTreeSet<String> {
        match serde_json::to_value(value).expect("serializes") {
            Value::Object(m) => m.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn the_document_lists_every_field_of_a_notification_a_delivery_and_a_token() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("document");
        let now = chrono::Utc::now();
        let notification = NotificationOut {
            id: "n".into(),
            project_key: "PROJ".into(),
            name: "slack".into(),
            last_modified: now,
            webhook_url: "https://example.com/hook".into(),
            filters: Default::default(),
            auth: NotificationAuth::default(),
            enabled: false,
            ordered: false,
            ordered_by: Some(OrderedBy::WorkflowRunId),
            format: Default::default(),
            content_mode: Default::default(),
            signature: Default::default(),
            disabled_reason: Some("failing".into()),
            failing_since: Some(now),
        };
        let delivery = DeliveryOut {
            id: "msg_1".into(),
            event_id: "e".into(),
            event_seq: 1,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: Some(now),
            created_at: now,
            updated_at: now,
        };
        let token = TokenOut {
            id: "t".into(),
            name: "ci".into(),
            grants: vec!["read:*".into()],
            created_at: now,
            expires_at: Some(now),
            created_by: Some("admin".into()),
        };
        assert_eq!(properties(&doc, "NotificationOut"), keys(&notification));
        assert_eq!(properties(&doc, "DeliveryOut"), keys(&delivery));
        assert_eq!(properties(&doc, "TokenOut"), keys(&token));
        // The bodies that carry them refer to them rather than to `Object`.
        let body = |path: &str, method: &str, status: &str| {
            doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
                .to_string()
        };
        let one = "/v2/project/{projectKey}/notification/{name}";
        assert!(body(one, "get", "200").contains("NotificationOut"));
        assert!(body(&format!("{one}/deliveries"), "get", "200").contains("DeliveryPage"));
        assert!(body("/v2/auth/tokens", "get", "200").contains("TokenOut"));
    }
}
