//! The bodies of the HTTP API that are not events: notifications and their
//! deliveries, tokens and tickets. Plain data, declared once, so that the
//! server writes them, the client reads them and `/v2/openapi.json`
//! describes them field by field (`utoipa::ToSchema`) from the same
//! declarations.
//!
//! Field names are the wire's (CDS's for a notification, spec §6). Nothing
//! here validates, stores or sends: the webhooks and auth crates own what a
//! value may be; this module owns only its shape. It must never grow I/O or
//! a dependency on a store.

mod notifications;
mod tokens;

pub use notifications::{
    AttemptOut, CreatedNotificationOut, DeliveryDetail, DeliveryOut, DeliveryPage, DeliveryStatus,
    MASK, NotificationAuth, NotificationFilter, NotificationIn, NotificationOut, OutcomeKind,
    PingOut, PreviousSecret, RedeliveredOut, SecretOut,
};
pub use tokens::{AuditEntry, CreatedTokenOut, TicketOut, TokenIn, TokenOut};
