//! Tokens, tickets and the audit trail as the API reads and writes them
//! (`/v2/auth/*`). Grants travel as their strings (`read:PROJ`); the auth
//! crate parses them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

/// A token to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenIn {
    pub name: String,
    /// `admin`, `publish`, `publish:PROJ`, `read:PROJ`, `read:*`, `read-global`, `manage-notifications:PROJ`.
    pub grants: Vec<String>,
    /// RFC 3339; no expiry when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenOut {
    pub id: String,
    pub name: String,
    pub grants: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// `null`: it never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// The token id that created it (`null` for the bootstrap token).
    pub created_by: Option<String>,
}

/// A token just created, with its secret: shown this once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedTokenOut {
    #[serde(flatten)]
    pub info: TokenOut,
    /// The bearer secret. It is not stored and cannot be shown again.
    pub token: String,
}

impl fmt::Debug for CreatedTokenOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedTokenOut")
            .field("info", &self.info)
            .field("token", &"***")
            .finish()
    }
}

/// A short-lived, single-use stand-in for the caller's token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TicketOut {
    /// Pass as `?ticket=` on a GET, once, within `expires_in` seconds.
    pub ticket: String,
    pub expires_in: u64,
}

impl fmt::Debug for TicketOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketOut")
            .field("ticket", &"***")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The token id that acted (`"system"` for bootstrap).
    pub actor: String,
    /// `token.create`, `token.revoke`, ….
    pub action: String,
    /// The token id acted on.
    pub target: String,
    pub detail: serde_json::Value,
}

/// A console sign-in: the token, exchanged once for a session cookie.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionIn {
    pub token: String,
}

impl fmt::Debug for SessionIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionIn").field("token", &"***").finish()
    }
}

/// A console session: whose token it stands for, until when, and the CSRF
/// value to send in `X-CSRF-Token` with every state-changing request.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionOut {
    pub token_id: String,
    pub name: String,
    pub grants: Vec<String>,
    pub expires_at: DateTime<Utc>,
    pub csrf: String,
}

impl fmt::Debug for SessionOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionOut")
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .field("csrf", &"***")
            .finish_non_exhaustive()
    }
}
