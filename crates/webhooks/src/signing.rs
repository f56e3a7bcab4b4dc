//! Standard Webhooks signatures.
//!
//! A secret is `whsec_` followed by the base64 of 32 random bytes; the HMAC
//! key is those bytes. Each request carries `webhook-id`, `webhook-timestamp`
//! (unix seconds of this attempt) and `webhook-signature`, a space-separated
//! list of `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`: one
//! signature per valid secret, so that during a rotation a receiver that
//! knows either the old or the new secret accepts the request.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

/// The prefix of every signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

type HmacSha256 = Hmac<Sha256>;

/// A signing secret: its text (`whsec_…`) and the HMAC key it stands for.
/// `Debug` never shows either.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    text: String,
    key: Vec<u8>,
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

impl SigningSecret {
    /// A new random secret.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        let text = format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes));
        SigningSecret {
            text,
            key: bytes.to_vec(),
        }
    }

    /// Parses `whsec_<base64>` (the prefix is optional, as receivers' libraries
    /// accept both).
    pub fn parse(text: &str) -> Option<Self> {
        let b64 = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = STANDARD.decode(b64).ok()?;
        if key.is_empty() {
            return None;
        }
        Some(SigningSecret {
            text: text.to_owned(),
            key,
        })
    }

    /// The secret's text, to hand to the receiver.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut out = String::with_capacity(48);
        self.sign_into(&mut out, msg_id, timestamp, body);
        out
    }

    fn sign_into(&self, out: &mut String, msg_id: &str, timestamp: i64, body: &[u8]) {
        let mac = self.mac(msg_id, timestamp, body);
        out.push_str("v1,");
        STANDARD.encode_string(mac.finalize().into_bytes(), out);
    }

    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("hmac takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// The `webhook-signature` header value for the given secrets.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a SigningSecret>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut out = String::with_capacity(100);
    for s in secrets {
        if !out.is_empty() {
            out.push(' ');
        }
        s.sign_into(&mut out, msg_id, timestamp, body);
    }
    out
}

/// Why a signed request was refused by [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the secret is not a valid whsec_ secret")]
    BadSecret,
    #[error("the timestamp is not a number")]
    BadTimestamp,
    #[error("the timestamp is too far from now")]
    Expired,
    #[error("no signature matches")]
    NoMatch,
}

/// Checks a received request the way a Standard Webhooks receiver does:
/// the timestamp within `tolerance_secs` of `now` (unix seconds), and one of
/// the `v1` signatures of the header matching, compared in constant time.
pub fn verify(
    secret: &str,
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let secret = SigningSecret::parse(secret).ok_or(VerifyError::BadSecret)?;
    let ts: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now - ts).abs() > tolerance_secs {
        return Err(VerifyError::Expired);
    }
    for sig in signature_header.split(' ') {
        let Some(b64) = sig.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = STANDARD.decode(b64) else {
            continue;
        };
        if secret.mac(msg_id, ts, body).verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        let secret =
            SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
        let body = br#"{"test": 2432232314}"#;
        let sig = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn verify_accepts_any_listed_signature_and_refuses_others() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert!(a.expose().starts_with(SECRET_PREFIX));
        let header = signature_header([&a, &b], "msg_1", 100, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        for s in [&a, &b] {
            assert_eq!(
                verify(s.expose(), "msg_1", "100", &header, b"{}", 100, 300),
                Ok(())
            );
        }
        let c = SigningSecret::generate();
        assert_eq!(
            verify(c.expose(), "msg_1", "100", &header, b"{}", 100, 300),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(a.expose(), "msg_1", "100", &header, b"{ }", 100, 300),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify(a.expose(), "msg_1", "100", &header, b"{}", 1000, 300),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let a = SigningSecret::generate();
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
