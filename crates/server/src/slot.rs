//! Slots for open streaming connections (SSE and websockets share
//! `stream.max_connections`): a connection holds one for as long as it
//! lives, and the `cds_events_stream_connections` gauge counts them.

use crate::error::ApiError;
use crate::state::AppState;
use std::sync::Arc;

/// One open streaming connection: holds one of `stream.max_connections`
/// slots and counts in `cds_events_stream_connections` for as long as it
/// lives, however it ends.
#[derive(Debug)]
pub struct ConnectionSlot {
    kind: &'static str,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl ConnectionSlot {
    /// A slot, or 503 with `Retry-After` when every one is taken.
    pub fn acquire(st: &AppState, kind: &'static str) -> Result<Self, ApiError> {
        let permit = Arc::clone(&st.connections)
            .try_acquire_owned()
            .map_err(|_| {
                let mut e = ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_connections",
                    format!(
                        "{} streaming connections are open, the most this server takes (stream.max_connections); retry later",
                        st.config.stream.max_connections
                    ),
                );
                e.retry_after = Some(5);
                e
            })?;
        metrics::gauge!("cds_events_stream_connections", "kind" => kind).increment(1.0);
        Ok(ConnectionSlot {
            kind,
            _permit: permit,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        metrics::gauge!("cds_events_stream_connections", "kind" => self.kind).decrement(1.0);
    }
}
