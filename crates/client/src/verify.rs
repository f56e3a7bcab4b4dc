//! Checking, in a webhook receiver, that a request comes from cds-events.
//!
//! Requests follow Standard Webhooks: `webhook-id`, `webhook-timestamp`
//! (unix seconds) and `webhook-signature`, a space-separated list of
//! signatures of `"{id}.{timestamp}.{body}"`: `v1,<base64 HMAC-SHA256>`
//! keyed by the base64 after `whsec_` in the notification's secret, or, for
//! a notification signed with ed25519, `v1a,<base64 Ed25519 signature>`
//! checked with its public key (`whpk_…`). During a rotation a request
//! carries one signature per valid key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderMap;
use ring::signature;
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far a request's `webhook-timestamp` may be from the receiver's clock
/// (replayed old requests are refused).
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a webhook request is not accepted as coming from cds-events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A `webhook-…` header is missing or not text.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not a number of seconds.
    #[error("webhook-timestamp is not unix seconds")]
    BadTimestamp,
    /// The request is older (or newer) than [`TOLERANCE`].
    #[error("webhook-timestamp is {0} s away from now")]
    Expired(i64),
    /// A given secret is neither `whsec_<base64>` nor `whpk_<base64 of 32 bytes>`.
    #[error("a secret is neither whsec_<base64> nor whpk_<base64>")]
    BadSecret,
    /// No signature matches any of the secrets.
    #[error("no signature matches")]
    NoMatch,
}

/// Checks a webhook request against the notification's secrets (`whsec_…`,
/// or public keys `whpk_…` for ed25519; give both during a rotation): a
/// signature must match one of them and
/// the timestamp be within [`TOLERANCE`] of now. `body` is the request body
/// exactly as received, before any parsing.
///
/// ```
/// use cds_events_client::verify::{sign, verify};
/// let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// let body = br#"{"type":"ProjectCreated"}"#;
/// let headers = sign(secret, "msg_1", std::time::SystemTime::now(), body).unwrap();
/// assert!(verify(&headers, body, &[secret]).is_ok());
/// assert!(verify(&headers, b"{}", &[secret]).is_err());
/// ```
pub fn verify(headers: &HeaderMap, body: &[u8], secrets: &[&str]) -> Result<(), VerifyError> {
    verify_at(headers, body, secrets, SystemTime::now())
}

/// [`verify`] with the receiver's clock given.
pub fn verify_at(
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
    now: SystemTime,
) -> Result<(), VerifyError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(VerifyError::MissingHeader(name))
    };
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    let skew = unix(now).saturating_sub(sent);
    if skew.unsigned_abs() > TOLERANCE.as_secs() {
        return Err(VerifyError::Expired(skew));
    }
    let keys = secrets
        .iter()
        .map(|s| Key::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    for candidate in signatures.split_whitespace() {
        let Some((scheme, b64)) = candidate.split_once(',') else {
            continue;
        };
        let Ok(given) = STANDARD.decode(b64) else {
            continue;
        };
        for key in &keys {
            let ok = match (scheme, key) {
                ("v1", Key::Hmac(k)) => mac(k, id, sent, body).verify_slice(&given).is_ok(),
                ("v1a", Key::Ed25519(public)) => {
                    let ts = sent.to_string();
                    let signed = [id.as_bytes(), b".", ts.as_bytes(), b".", body].concat();
                    signature::UnparsedPublicKey::new(&signature::ED25519, public)
                        .verify(&signed, &given)
                        .is_ok()
                }
                _ => false,
            };
            if ok {
                return Ok(());
            }
        }
    }
    Err(VerifyError::NoMatch)
}

/// The `webhook-*` headers cds-events would send for `body` signed with
/// `secret` at `at`: for a receiver's own tests.
pub fn sign(secret: &str, id: &str, at: SystemTime, body: &[u8]) -> Result<HeaderMap, VerifyError> {
    let timestamp = unix(at);
    let Key::Hmac(key) = Key::parse(secret)? else {
        return Err(VerifyError::BadSecret); // signing needs the private key
    };
    let signature = mac(&key, id, timestamp, body).finalize().into_bytes();
    let mut headers = HeaderMap::new();
    let value = |s: String| {
        s.parse()
            .map_err(|_| VerifyError::MissingHeader("webhook-id"))
    };
    headers.insert("webhook-id", value(id.to_owned())?);
    headers.insert("webhook-timestamp", value(timestamp.to_string())?);
    headers.insert(
        "webhook-signature",
        value(format!("v1,{}", STANDARD.encode(signature)))?,
    );
    Ok(headers)
}

/// What a given secret checks: HMAC signatures or ed25519 ones.
enum Key {
    Hmac(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl Key {
    fn parse(secret: &str) -> Result<Key, VerifyError> {
        if let Some(b64) = secret.strip_prefix("whpk_") {
            return match STANDARD.decode(b64) {
                Ok(k) if k.len() == 32 => Ok(Key::Ed25519(k)),
                _ => Err(VerifyError::BadSecret),
            };
        }
        let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
        match STANDARD.decode(b64) {
            Ok(k) if !k.is_empty() => Ok(Key::Hmac(k)),
            _ => Err(VerifyError::BadSecret),
        }
    }
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const OTHER: &str = "whsec_dGhlIG90aGVyIHNlY3JldCBvZiB0aGUgdGVzdA==";

    #[test]
    fn the_standard_webhooks_example_verifies() {
        // The Standard Webhooks specification's own test vector.
        let mut h = HeaderMap::new();
        h.insert(
            "webhook-id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek".parse().expect("test value"),
        );
        h.insert(
            "webhook-timestamp",
            "1614265330".parse().expect("test value"),
        );
        h.insert(
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
                .parse()
                .expect("test value"),
        );
        let body = br#"{"test": 2432232314}"#;
        let at = UNIX_EPOCH + Duration::from_secs(1614265330);
        assert_eq!(verify_at(&h, body, &[SECRET], at), Ok(()));
        assert_eq!(
            verify_at(&h, b"{}", &[SECRET], at),
            Err(VerifyError::NoMatch)
        );
        assert_eq!(
            verify_at(&h, body, &[SECRET], at + Duration::from_secs(301)),
            Err(VerifyError::Expired(301))
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let at = SystemTime::now();
        let old = sign(OTHER, "m1", at, b"x").expect("test value");
        let mut both = sign(SECRET, "m1", at, b"x").expect("test value");
        let pair = format!(
            "{} {}",
            both["webhook-signature"].to_str().expect("test value"),
            old["webhook-signature"].to_str().expect("test value")
        );
        both.insert("webhook-signature", pair.parse().expect("test value"));
        assert_eq!(verify_at(&both, b"x", &[OTHER], at), Ok(()));
        assert_eq!(verify_at(&both, b"x", &[SECRET], at), Ok(()));
        assert_eq!(
            verify_at(&old, b"x", &[SECRET], at),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn what_is_missing_or_malformed_is_named() {
        let at = SystemTime::now();
        let mut h = sign(SECRET, "m1", at, b"x").expect("test value");
        assert_eq!(
            verify_at(&h, b"x", &["whsec_!!"], at),
            Err(VerifyError::BadSecret)
        );
        h.insert(
            "webhook-timestamp",
            "yesterday".parse().expect("test value"),
        );
        assert_eq!(
            verify_at(&h, b"x", &[SECRET], at),
            Err(VerifyError::BadTimestamp)
        );
        h.remove("webhook-id");
        assert_eq!(
            verify_at(&h, b"x", &[SECRET], at),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
    }
}
