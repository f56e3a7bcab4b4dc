//! Tokens, tickets and the audit trail: `/v2/auth/*`.

use crate::{Client, ClientError};
use cds_events_api::{AuditEntry, CreatedTokenOut, TicketOut, TokenIn, TokenOut};
use reqwest::Method;

impl Client {
    /// Creates a token (admin); the answer carries its secret, once.
    pub async fn create_token(&self, input: &TokenIn) -> Result<CreatedTokenOut, ClientError> {
        Self::read(
            self.req_at(Method::POST, &["v2", "auth", "tokens"])?
                .json(input),
        )
        .await
    }

    /// The active tokens, without secrets (admin).
    pub async fn tokens(&self) -> Result<Vec<TokenOut>, ClientError> {
        Self::read(self.req_at(Method::GET, &["v2", "auth", "tokens"])?).await
    }

    /// Revokes a token (admin); effective for the next request.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        Self::done(self.req_at(Method::DELETE, &["v2", "auth", "tokens", id])?).await
    }

    /// A single-use ticket standing for this client's token, for a GET that
    /// cannot carry a header (`?ticket=`).
    pub async fn ticket(&self) -> Result<TicketOut, ClientError> {
        Self::read(self.req_at(Method::POST, &["v2", "auth", "ticket"])?).await
    }

    /// The audit trail, newest first (admin); `limit` defaults to 100.
    pub async fn audit(&self, limit: Option<usize>) -> Result<Vec<AuditEntry>, ClientError> {
        let r = self.req_at(Method::GET, &["v2", "auth", "audit"])?;
        let r = match limit {
            Some(l) => r.query(&[("limit", l)]),
            None => r,
        };
        Self::read(r).await
    }
}
