//! Reading the audit trail. Entries are written by the backend in the
//! transaction of the change they record; this module only reads them.

use super::TokenStore;
use crate::{AuditEntry, AuthError};

impl TokenStore {
    /// The newest audit entries, newest first.
    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, AuthError> {
        self.backend.audit(limit).await
    }
}
