//! Access control: tokens, grants, tickets and the audit trail.
//!
//! Tokens are opaque bearer secrets (`cdse_<id>_<secret>`), stored only as
//! SHA-256 hashes and compared in constant time. Grants are strings
//! (`read:PROJ`, `publish`, `admin`…). This crate decides who may do what; the
//! server applies it on every route.
//!
//! [`TokenStore`] holds the policy over a [`TokenBackend`], where tokens, the
//! audit trail and tickets are kept: [`sqlite::SqliteTokens`] (the embedded
//! default) or [`postgres::PgTokens`] (one database several instances
//! share). Every backend must pass the shared [`conformance`] suite.

mod api;
mod backend;
pub mod conformance;
mod error;
mod grants;
pub mod postgres;
mod records;
pub mod sqlite;
mod store;

pub use backend::TokenBackend;
pub use error::AuthError;
pub use grants::{Grant, InvalidGrant, Principal, ReadScope};
pub use records::{
    AuditEntry, CreatedToken, NewAuditEntry, SecretHash, StoredToken, Ticket, TokenInfo,
};
pub use sqlite::AUTH_DB;
pub use store::{
    ADMIN_TOKEN_FILE, Bootstrap, SESSION_PREFIX, Session, TokenStore, read_admin_token,
};
