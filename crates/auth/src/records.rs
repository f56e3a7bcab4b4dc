//! The records the token store and its backends exchange: a token as listed,
//! a token as stored (its hash, never its secret), an audit entry, a ticket.
//!
//! These are plain data with no storage in them; they must never carry a
//! secret in clear, except [`CreatedToken`], the one-time answer of `create`.

use crate::Grant;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub grants: Vec<Grant>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The token id that created it (`None` for the bootstrap token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// A token just created: the only time its secret is known.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub info: TokenInfo,
    pub secret: String,
}

/// One entry of the audit trail, as stored and as the API shows it (declared
/// once, with the API's bodies): `seq` is given by the backend, increasing
/// in the order entries were written.
pub use cds_events_api::AuditEntry;

/// An audit entry to write; the backend gives it its `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

/// The SHA-256 of a secret (a token's or a ticket's): all a backend ever
/// receives, so no backend can keep a secret in clear.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// The hash of `secret`.
    pub fn of(secret: &str) -> SecretHash {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// A hash read back from storage; `None` unless it is 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<SecretHash> {
        bytes.try_into().ok().map(SecretHash)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `secret` hashes to this, compared in constant time so that the
    /// time taken says nothing about how close a guess was.
    pub fn matches(&self, secret: &str) -> bool {
        bool::from(SecretHash::of(secret).0.ct_eq(&self.0))
    }
}

/// Only a prefix: enough to tell two apart in a log, and the full hash of a
/// short secret is worth nothing to print.
impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretHash(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A token as a backend keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub info: TokenInfo,
    pub hash: SecretHash,
}

/// A browser ticket as a backend keeps it: whose token it stands for, until
/// when (exclusive: at `expires_at` it is gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub hash: SecretHash,
    pub token_id: String,
    pub expires_at: DateTime<Utc>,
}
