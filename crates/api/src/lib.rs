//! The HTTP API's shapes that are not events: the filter keys a reader
//! writes ([`FilterText`]), and the bodies of notifications, their
//! deliveries, tokens and tickets, the broker sinks' status and the
//! event counts of `/v2/events/stats`. Plain data, declared once, so that the
//! server reads and writes them, the client and the CLI use them, and
//! `/v2/openapi.json` describes them field by field (`utoipa`) from the same
//! declarations.
//!
//! Field names are the wire's (CDS's for a notification, spec §6). Nothing
//! here validates beyond parsing, stores or sends: the webhooks and auth
//! crates own what a value may be; this crate owns only its shape. It must
//! never grow I/O or a dependency on a store.
//!
//! A crate of its own rather than a module of the model: the model stays
//! free of HTTP, and of the schema derives, whose generic code would
//! otherwise be compiled into the crate every hot path depends on.

mod filter;
mod format;
mod notifications;
mod sinks;
mod stats;
mod tokens;

pub use filter::FilterText;
pub use format::{ContentMode, EventFormat, OrderedBy, SignatureScheme, UnknownFormat};
pub use notifications::{
    AttemptOut, CreatedNotificationOut, DeliveriesQuery, DeliveryDetail, DeliveryOut, DeliveryPage,
    DeliveryStatus, MASK, NotificationAuth, NotificationFilter, NotificationHealthOut,
    NotificationIn, NotificationOut, OutcomeKind, PingOut, PreviewMatch, PreviewOut,
    PreviousPublicKey, PreviousSecret, PublicKey, PublicKeyOut, RedeliveredOut, SecretOut,
};
pub use sinks::{ReplayOut, SinkOut, SinkState, SinksOut};
pub use stats::{BucketOut, StatsOut};
pub use tokens::{
    AuditEntry, CreatedTokenOut, SessionIn, SessionOut, TicketOut, TokenIn, TokenOut,
};
