//! Access control: tokens, grants, tickets and the audit trail.
//!
//! Tokens are opaque bearer secrets (`cdse_<id>_<secret>`), stored only as
//! SHA-256 hashes and compared in constant time. Grants are strings
//! (`read:PROJ`, `publish`, `admin`…). This crate decides who may do what; the
//! server applies it on every route.

mod error;
mod grants;
mod store;

pub use error::AuthError;
pub use grants::{Grant, InvalidGrant, Principal, ReadScope};
pub use store::{
    ADMIN_TOKEN_FILE, AUTH_DB, AuditEntry, Bootstrap, CreatedToken, TokenInfo, TokenStore,
    read_admin_token,
};
