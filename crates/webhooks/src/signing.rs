//! Standard Webhooks signatures, symmetric or asymmetric.
//!
//! Each request carries `webhook-id`, `webhook-timestamp` (unix seconds of
//! this attempt) and `webhook-signature`, a space-separated list of
//! signatures of `"{id}.{timestamp}.{body}"`, one per valid key, so that
//! during a rotation a receiver that knows either the old or the new key
//! accepts the request:
//!
//! - symmetric: `v1,<base64 HMAC-SHA256>`, keyed by a secret `whsec_`
//!   followed by the base64 of 32 random bytes, which the receiver holds too;
//! - ed25519: `v1a,<base64 Ed25519 signature>`, by a signing key `whsk_`
//!   followed by the base64 of its 32-byte seed and 32-byte public key; the
//!   receiver holds only the public key (`whpk_` + base64), so it cannot
//!   forge a request.
//!
//! Which scheme a key is of is read from its text: a stored key needs
//! nothing beside it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cds_events_api::SignatureScheme;
use hmac::{Hmac, KeyInit, Mac};
use ring::rand::SecureRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;

/// The prefix of every symmetric signing secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// The prefix of an Ed25519 signing (private) key.
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
/// The prefix of an Ed25519 public key.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// DER of an Ed25519 SubjectPublicKeyInfo up to the key's 32 bytes
/// (RFC 8410: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING }).
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

type HmacSha256 = Hmac<Sha256>;

/// A signing key: its text (`whsec_…` or `whsk_…`) and the key it stands
/// for. `Debug` never shows either.
#[derive(Clone)]
pub struct SigningSecret {
    text: String,
    key: Key,
}

#[derive(Clone)]
enum Key {
    Hmac(Vec<u8>),
    Ed25519(Arc<Ed25519KeyPair>),
}

/// The text determines the key.
impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for SigningSecret {}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

impl SigningSecret {
    /// A new random symmetric secret.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        let text = format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes));
        SigningSecret {
            text,
            key: Key::Hmac(bytes.to_vec()),
        }
    }

    /// A new random key of `scheme`.
    pub fn generate_for(scheme: SignatureScheme) -> Self {
        match scheme {
            SignatureScheme::Symmetric => SigningSecret::generate(),
            SignatureScheme::Ed25519 => {
                // The seed from the operating system's generator, as ring's
                // own key generation takes it.
                let mut seed = [0u8; 32];
                ring::rand::SystemRandom::new()
                    .fill(&mut seed)
                    .expect("the system random generator works");
                let pair =
                    Ed25519KeyPair::from_seed_unchecked(&seed).expect("any 32 bytes are a seed");
                let mut both = seed.to_vec();
                both.extend_from_slice(pair.public_key().as_ref());
                SigningSecret {
                    text: format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(&both)),
                    key: Key::Ed25519(Arc::new(pair)),
                }
            }
        }
    }

    /// Parses `whsk_<base64 of seed and public key>` (an Ed25519 key) or
    /// `whsec_<base64>` (the prefix is optional, as receivers' libraries
    /// accept both).
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(b64) = text.strip_prefix(SIGNING_KEY_PREFIX) {
            let both = STANDARD.decode(b64).ok()?;
            if both.len() != 64 {
                return None;
            }
            let pair = Ed25519KeyPair::from_seed_and_public_key(&both[..32], &both[32..]).ok()?;
            return Some(SigningSecret {
                text: text.to_owned(),
                key: Key::Ed25519(Arc::new(pair)),
            });
        }
        let b64 = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        let key = STANDARD.decode(b64).ok()?;
        if key.is_empty() {
            return None;
        }
        Some(SigningSecret {
            text: text.to_owned(),
            key: Key::Hmac(key),
        })
    }

    /// The key's text, to store (sealed). For a symmetric secret it is also
    /// what the receiver is given; an Ed25519 signing key is never given
    /// out (see [`SigningSecret::receiver_key`]).
    pub fn expose(&self) -> &str {
        &self.text
    }

    pub fn scheme(&self) -> SignatureScheme {
        match self.key {
            Key::Hmac(_) => SignatureScheme::Symmetric,
            Key::Ed25519(_) => SignatureScheme::Ed25519,
        }
    }

    /// What a receiver verifies with: the `whsec_` secret, or the public
    /// key `whpk_…` of an Ed25519 key.
    pub fn receiver_key(&self) -> String {
        match self.public_key() {
            Some(pk) => format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(pk)),
            None => self.text.clone(),
        }
    }

    /// The 32 bytes of an Ed25519 key's public key.
    pub fn public_key(&self) -> Option<&[u8]> {
        match &self.key {
            Key::Ed25519(pair) => Some(pair.public_key().as_ref()),
            Key::Hmac(_) => None,
        }
    }

    /// An Ed25519 key's public key as a PEM SubjectPublicKeyInfo, which
    /// common libraries load as is.
    pub fn public_key_pem(&self) -> Option<String> {
        let pk = self.public_key()?;
        let mut der = SPKI_ED25519_PREFIX.to_vec();
        der.extend_from_slice(pk);
        Some(format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(der)
        ))
    }

    /// `v1,<base64 signature>` (or `v1a,…`) of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut out = String::with_capacity(96);
        self.sign_into(&mut out, msg_id, timestamp, body);
        out
    }

    fn sign_into(&self, out: &mut String, msg_id: &str, timestamp: i64, body: &[u8]) {
        match &self.key {
            Key::Hmac(key) => {
                let mac = mac(key, msg_id, timestamp, body);
                out.push_str("v1,");
                STANDARD.encode_string(mac.finalize().into_bytes(), out);
            }
            Key::Ed25519(pair) => {
                let sig = pair.sign(&signed_content(msg_id, timestamp, body));
                out.push_str("v1a,");
                STANDARD.encode_string(sig.as_ref(), out);
            }
        }
    }
}

/// What is signed: `{id}.{timestamp}.{body}`.
fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut m = Vec::with_capacity(msg_id.len() + ts.len() + body.len() + 2);
    m.extend_from_slice(msg_id.as_bytes());
    m.push(b'.');
    m.extend_from_slice(ts.as_bytes());
    m.push(b'.');
    m.extend_from_slice(body);
    m
}

fn mac(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
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
    let Key::Hmac(key) = &secret.key else {
        return Err(VerifyError::BadSecret);
    };
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
        if mac(key, msg_id, ts, body).verify_slice(&given).is_ok() {
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
        let k = SigningSecret::generate_for(SignatureScheme::Ed25519);
        assert!(!format!("{k:?}").contains(k.expose()));
    }

    #[test]
    fn an_ed25519_key_signs_v1a_verifiable_with_its_public_key_only() {
        let k = SigningSecret::generate_for(SignatureScheme::Ed25519);
        assert_eq!(k.scheme(), SignatureScheme::Ed25519);
        assert!(k.expose().starts_with(SIGNING_KEY_PREFIX));
        let public = k.receiver_key();
        assert!(public.starts_with(PUBLIC_KEY_PREFIX));
        assert!(!public.contains(&k.expose()[SIGNING_KEY_PREFIX.len()..]));
        let sig = k.sign("msg_1", 100, b"{}");
        let b64 = sig.strip_prefix("v1a,").expect("v1a");
        let raw = STANDARD.decode(b64).expect("base64");
        let pk = STANDARD
            .decode(&public[PUBLIC_KEY_PREFIX.len()..])
            .expect("base64");
        let verifier =
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, pk.as_slice());
        assert!(verifier.verify(b"msg_1.100.{}", &raw).is_ok());
        assert!(verifier.verify(b"msg_1.100.{ }", &raw).is_err());
        // Read back from its text: the same key.
        let back = SigningSecret::parse(k.expose()).expect("parses");
        assert_eq!(back, k);
        assert_eq!(back.receiver_key(), public);
        assert_eq!(
            back.sign("msg_1", 100, b"{}"),
            sig,
            "Ed25519 is deterministic"
        );
        // A symmetric secret's verifier refuses it: no scheme confusion.
        assert_eq!(
            verify(k.expose(), "msg_1", "100", &sig, b"{}", 100, 300),
            Err(VerifyError::BadSecret)
        );
    }

    #[test]
    fn the_pem_is_the_spki_of_the_public_key() {
        let k = SigningSecret::generate_for(SignatureScheme::Ed25519);
        let pem = k.public_key_pem().expect("ed25519");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).expect("base64");
        assert_eq!(der.len(), 44);
        assert_eq!(&der[12..], k.public_key().expect("key"));
        assert!(SigningSecret::generate().public_key_pem().is_none());
        assert!(SigningSecret::parse("whsk_AAAA").is_none(), "not 64 bytes");
    }
}
