//! Rotation of the file-managed master key that seals notification headers
//! and signing secrets at rest (see `crypto`). The store swaps the keyring
//! and re-seals, so that no write seals a value in between; the keyring
//! refuses a key that comes from the configuration. This module only
//! reports.

use crate::engine::Inner;
use crate::error::WebhooksError;

impl Inner {
    /// See [`crate::Webhooks::rotate_key`].
    pub(crate) async fn rotate_key(&self) -> Result<(), WebhooksError> {
        let n = self.store.rotate_key().await?;
        tracing::info!(values = n, "webhooks master key rotated");
        Ok(())
    }
}
