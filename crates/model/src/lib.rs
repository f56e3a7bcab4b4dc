//! The CDS v2 event catalogue and wire format.
//!
//! This crate owns what an event *is*: its types and families
//! ([`catalogue`]), the flat full event and its exact JSON ([`event`]), and
//! how incoming JSON becomes one ([`decode`]), its CloudEvents 1.0 form
//! ([`cloudevents`]), its CDEvents form ([`cdevents`]) and the JSON Schema of
//! each type ([`schema`]). It does no I/O and knows nothing of storage or HTTP.

pub mod catalogue;
pub mod cdevents;
pub mod cloudevents;
pub mod decode;
pub mod envelope;
pub mod event;
pub mod filter;
pub mod identity;
pub mod schema;

pub use catalogue::*;
pub use decode::{
    BatchError, DecodeError, ErrorCode, Limits, StoredHead, decode_event, decode_json_body,
    decode_ndjson_body, decode_stored, ndjson_line_of, peek_stored,
};
pub use envelope::{ENVELOPE, EnvelopeField, FULL_EVENT_KEYS, FieldKind};
pub use event::{FullEvent, Payload, Timestamp};
pub use filter::{EventFilter, parse_families, parse_types};
pub use identity::{EventScope, ProjectKey, ProjectKeyError};
