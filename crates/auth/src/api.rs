//! How the store's values read as API bodies (`cds_events_api`):
//! grants as their strings, never a secret.

use crate::{Grant, TokenInfo};
use cds_events_api::TokenOut;

impl From<TokenInfo> for TokenOut {
    fn from(t: TokenInfo) -> Self {
        TokenOut {
            id: t.id,
            name: t.name,
            grants: t.grants.iter().map(Grant::to_string).collect(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            created_by: t.created_by,
        }
    }
}
