//! `signature: ed25519`: requests signed `v1a,` with a key pair made by the
//! server, verified by PyPI's `cryptography` from the published public key;
//! the private key never leaves the server; rotation as for a secret.

use super::{create, webhook_server};
use crate::receiver::{Received, Receiver};
use crate::{call, client_with_token, job_event};
use serde_json::{Value, json};
use std::time::Duration;

/// Verifies one received call with `cryptography`'s Ed25519: `key` is a
/// PEM public key or `whpk_…`; some `v1a,` signature of the header must
/// verify `{id}.{timestamp}.{body}`.
fn python_verifies(key: &str, got: &Received) -> Result<(), String> {
    crate::ensure_python_package("cryptography", "cryptography");
    let script = r#"
import base64, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
key, headers, body = sys.argv[1], json.loads(sys.argv[2]), sys.stdin.buffer.read()
if key.startswith("whpk_"):
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key[len("whpk_"):]))
else:
    public = load_pem_public_key(key.encode())
signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
for sig in headers["webhook-signature"].split(" "):
    version, _, value = sig.partition(",")
    if version != "v1a":
        continue
    try:
        public.verify(base64.b64decode(value), signed)
        print("verified")
        sys.exit(0)
    except Exception:
        pass
sys.exit("no v1a signature verifies")
"#;
    super::python_check(script, key, got)
}

fn job_call(got: &[Received], n: u64) -> &Received {
    got.iter()
        .find(|c| c.json()["run_job_id"] == format!("rj-{n}"))
        .unwrap_or_else(|| panic!("job {n} in {} calls", got.len()))
}

/// The public key is published (to readers), a delivery's `v1a,` signature
/// verifies with it in `cryptography`, and the private key shows nowhere.
#[test]
fn ed25519_signatures_verify_with_the_published_public_key() {
    let s = webhook_server().start();
    let rx = Receiver::ok();
    let created = create(
        &s,
        "PROJ",
        json!({"name": "signed", "webhook_url": rx.url, "signature": "ed25519",
               "filters": {"jobs": {"event": ["RunJobEnded"]}}}),
    );
    assert_eq!(created["signature"], "ed25519", "{created}");
    let given = created["secret"].as_str().expect("secret").to_owned();
    assert!(given.starts_with("whpk_"), "the public key only: {given}");
    let reader = client_with_token(Some(&s.token(&["read:PROJ"])));
    let (status, key) = call(
        &reader,
        reqwest::Method::GET,
        &s.url("/v2/project/PROJ/notification/signed/public-key"),
        None,
    );
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["public_key"], given.as_str());
    assert!(key.get("previous").is_none(), "{key}");
    let pem = key["pem"].as_str().expect("pem").to_owned();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    s.post_json(&job_event("PROJ", 1));
    let got = rx.wait_for(1, Duration::from_secs(10));
    let first = &got[0];
    let sig = first.header("webhook-signature");
    assert!(sig.starts_with("v1a,") && !sig.contains(' '), "{sig}");
    python_verifies(&pem, first).expect("cryptography verifies with the PEM");
    python_verifies(&given, first).expect("and with the whpk_ key");
    // A changed body does not verify: the check is real.
    let mut tampered = first.clone();
    tampered.body.push(b' ');
    assert!(python_verifies(&pem, &tampered).is_err());
    // The secret route gives managers the public key too; nothing anywhere
    // holds the signing key.
    let (status, secret) = s.get("/v2/project/PROJ/notification/signed/secret");
    assert_eq!(status, 200);
    assert_eq!(secret["secret"], given.as_str());
    let (_, shown) = s.get("/v2/project/PROJ/notification/signed");
    let log = s.query_all("&family=Notification");
    for text in [
        created.to_string(),
        key.to_string(),
        secret.to_string(),
        shown.to_string(),
        format!("{log:?}"),
        s.logs(),
    ] {
        assert!(!text.contains("whsk_"), "a signing key in {text}");
    }
    // A symmetric notification has no public key.
    create(&s, "PROJ", json!({"name": "shared", "webhook_url": rx.url}));
    let (status, err) = s.get("/v2/project/PROJ/notification/shared/public-key");
    assert_eq!(status, 409, "{err}");
}

/// A rotation makes a new key pair; during the overlap each request carries
/// both signatures, each verifying with its own public key.
#[test]
fn an_ed25519_rotation_signs_with_both_keys_during_the_overlap() {
    let s = webhook_server().start();
    let rx = Receiver::ok();
    create(
        &s,
        "PROJ",
        json!({"name": "signed", "webhook_url": rx.url, "signature": "ed25519",
               "filters": {"jobs": {"event": ["RunJobEnded"]}}}),
    );
    let (_, before) = s.get("/v2/project/PROJ/notification/signed/public-key");
    let (status, rotated) = call(
        &s.http,
        reqwest::Method::POST,
        &s.url("/v2/project/PROJ/notification/signed/secret/rotate"),
        None,
    );
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().expect("secret");
    assert!(
        new.starts_with("whpk_") && new != before["public_key"],
        "{rotated}"
    );
    let (_, after) = s.get("/v2/project/PROJ/notification/signed/public-key");
    assert_eq!(after["public_key"], new);
    assert_eq!(after["previous"]["public_key"], before["public_key"]);
    assert!(after["previous"]["valid_until"].is_string(), "{after}");
    s.post_json(&job_event("PROJ", 1));
    let got = rx.wait_for(1, Duration::from_secs(10));
    let call = job_call(&got, 1);
    assert_eq!(call.header("webhook-signature").split(' ').count(), 2);
    let pem = |v: &Value| v["pem"].as_str().expect("pem").to_owned();
    python_verifies(&pem(&after), call).expect("the new key verifies");
    python_verifies(&pem(&before), call).expect("the old key still verifies");
    // Switching a notification to a shared secret is a rotation too.
    let (_, current) = s.get("/v2/project/PROJ/notification/signed");
    let mut body = current.clone();
    body["signature"] = json!("symmetric");
    let (status, updated) = crate::call(
        &s.http,
        reqwest::Method::PUT,
        &s.url("/v2/project/PROJ/notification/signed"),
        Some(&body),
    );
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["signature"], "symmetric");
    let (_, secret) = s.get("/v2/project/PROJ/notification/signed/secret");
    assert!(
        secret["secret"]
            .as_str()
            .is_some_and(|k| k.starts_with("whsec_")),
        "{secret}"
    );
    assert_eq!(secret["previous"]["secret"], after["public_key"]);
}
