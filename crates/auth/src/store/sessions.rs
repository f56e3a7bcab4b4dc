//! Console sessions: a browser exchanges its token once for a session
//! value (kept by the server's answer in an HttpOnly cookie) and a CSRF
//! value (kept by the page and sent back as a header on every
//! state-changing request).
//!
//! A session is sealed, not stored: `cdss_<token id>.<expiry>.<mac>`, the
//! MAC keyed by the token's stored hash. So it needs no table, survives a
//! restart, holds on every instance sharing the token backend, carries
//! exactly its token's grants, and ends when its token is revoked or
//! expires (the key is gone) or at its own expiry, whichever comes first.
//!
//! It must never accept a session whose token is no longer active, nor
//! let the session value be derived from the CSRF value or the reverse.

use super::TokenStore;
use crate::{AuthError, Principal};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How every session value starts.
pub const SESSION_PREFIX: &str = "cdss_";

/// A console session, as opened or checked.
#[derive(Debug, Clone)]
pub struct Session {
    /// The cookie's value: shown to the browser only in `Set-Cookie`.
    pub value: String,
    /// What the page sends back in a header on a state-changing request.
    pub csrf: String,
    /// The session ends then (or earlier, with its token).
    pub expires_at: DateTime<Utc>,
    pub principal: Arc<Principal>,
}

impl TokenStore {
    /// Opens a session for `bearer` lasting `ttl` (no longer than the token
    /// itself); `None` for a token that would be refused as a bearer.
    pub async fn open_session(
        &self,
        bearer: &str,
        ttl: Duration,
    ) -> Result<Option<Session>, AuthError> {
        let Some(principal) = self.authenticate_or_look_up(bearer).await? else {
            return Ok(None);
        };
        let now = Utc::now();
        let mut until = TimeDelta::from_std(ttl)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let id = principal.token_id.as_str();
        let sealed = self.copy.read(id, |r| {
            if let Some(e) = r.expires_at() {
                until = until.min(e);
            }
            let body = format!("{SESSION_PREFIX}{id}.{}", until.timestamp());
            let mac = URL_SAFE_NO_PAD.encode(r.seal(&message("session", &body)));
            let value = format!("{body}.{mac}");
            let csrf = URL_SAFE_NO_PAD.encode(r.seal(&message("csrf", &value)));
            Some((value, csrf))
        });
        // A token found only by a look-up (created on another instance a
        // moment ago) gets its session once this copy has heard of it.
        let Some((value, csrf)) = sealed else {
            return Ok(None);
        };
        Ok(Some(Session {
            value,
            csrf,
            expires_at: DateTime::from_timestamp(until.timestamp(), 0).unwrap_or(until),
            principal,
        }))
    }

    /// The session a cookie's value stands for, if it is sealed by an
    /// active token and has not expired. Answered from this instance's
    /// copy alone, as [`TokenStore::authenticate`].
    pub fn session(&self, value: &str) -> Option<Session> {
        let rest = value.strip_prefix(SESSION_PREFIX)?;
        let (body_rest, mac) = rest.rsplit_once('.')?;
        let (id, expiry) = body_rest.split_once('.')?;
        let expiry = DateTime::from_timestamp(expiry.parse::<i64>().ok()?, 0)?;
        if expiry <= Utc::now() {
            return None;
        }
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let body = &value[..value.len() - rest.len() + body_rest.len()];
        self.copy.read(id, |r| {
            let want = r.seal(&message("session", body));
            if !bool::from(want.as_slice().ct_eq(&mac)) {
                return None;
            }
            if r.expires_at().is_some_and(|e| e <= Utc::now()) {
                return None;
            }
            Some(Session {
                value: value.to_owned(),
                csrf: URL_SAFE_NO_PAD.encode(r.seal(&message("csrf", value))),
                expires_at: expiry,
                principal: Arc::clone(r.principal()),
            })
        })
    }
}

impl Session {
    /// Whether `sent` is this session's CSRF value (in constant time).
    pub fn csrf_matches(&self, sent: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(sent.as_bytes()))
    }
}

/// What is sealed: a purpose and the text, so that a MAC made for one
/// purpose never passes for the other.
fn message(purpose: &str, text: &str) -> Vec<u8> {
    format!("cds-events console {purpose}\n{text}").into_bytes()
}

#[cfg(test)]
mod tests {
    use crate::{Grant, Principal, TokenStore};
    use std::time::Duration;

    fn admin() -> Principal {
        Principal {
            token_id: "system".into(),
            name: "system".into(),
            grants: vec![Grant::Admin],
        }
    }

    /// A store, a reader token's secret and a session opened with it.
    async fn store() -> (tempfile::TempDir, TokenStore, String, super::Session) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = TokenStore::open(dir.path(), Duration::from_secs(30))
            .await
            .expect("open");
        let made = store
            .create(
                "reader",
                vec!["read:A".parse().expect("grant")],
                None,
                &admin(),
            )
            .await
            .expect("create");
        let session = store
            .open_session(&made.secret, Duration::from_secs(60))
            .await
            .expect("open")
            .expect("a session");
        (dir, store, made.secret, session)
    }

    #[tokio::test]
    async fn a_session_stands_for_its_token_until_the_token_is_revoked() {
        let (_dir, store, _, s) = store().await;
        let back = store.session(&s.value).expect("valid");
        assert_eq!(back.principal.token_id, s.principal.token_id);
        assert!(back.csrf_matches(&s.csrf));
        assert!(!back.csrf_matches(&s.value));
        assert!(
            store
                .revoke(&s.principal.token_id, &admin())
                .await
                .expect("revoke")
        );
        assert!(store.session(&s.value).is_none());
    }

    #[tokio::test]
    async fn a_tampered_or_expired_session_is_refused() {
        let (_dir, store, secret, s) = store().await;
        // A later expiry with the same MAC.
        let mut parts: Vec<&str> = s.value.split('.').collect();
        let later = (s.expires_at.timestamp() + 3600).to_string();
        parts[1] = &later;
        assert!(store.session(&parts.join(".")).is_none());
        assert!(store.session("cdss_x.1.y").is_none());
        let short = store
            .open_session(&secret, Duration::from_secs(0))
            .await
            .expect("open")
            .expect("a session");
        assert!(store.session(&short.value).is_none());
        assert!(
            store
                .open_session("cdse_nope_nope", Duration::from_secs(60))
                .await
                .expect("open")
                .is_none()
        );
    }
}
