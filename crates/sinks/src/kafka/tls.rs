//! TLS to the brokers: which CAs to trust (the system's, or those given)
//! and, for brokers that require one, the client's certificate and key.

use super::KafkaConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

type Invalid = (&'static str, String);

/// PEM given inline (`<name>_pem`) or as a file (`<name>_file`), never both.
fn pem(
    inline: &Option<String>,
    file: &Option<std::path::PathBuf>,
    keys: (&'static str, &'static str),
) -> Result<Option<Vec<u8>>, Invalid> {
    match (inline, file) {
        (Some(_), Some(_)) => Err((keys.1, format!("give {} or {}, not both", keys.0, keys.1))),
        (Some(text), None) => Ok(Some(text.clone().into_bytes())),
        (None, Some(path)) => std::fs::read(path)
            .map(Some)
            .map_err(|e| (keys.1, format!("cannot read {}: {e}", path.display()))),
        (None, None) => Ok(None),
    }
}

fn certificates(bytes: &[u8], key: &'static str) -> Result<Vec<CertificateDer<'static>>, Invalid> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (key, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err((key, "holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// Whether any TLS setting is given (they all need `tls = true`).
pub(super) fn any_set(c: &KafkaConfig) -> bool {
    c.ca_cert_pem.is_some()
        || c.ca_cert_file.is_some()
        || c.client_cert_pem.is_some()
        || c.client_cert_file.is_some()
        || c.client_key_pem.is_some()
        || c.client_key_file.is_some()
}

/// The rustls settings of `c`, or `None` without `tls = true`. Errors name
/// the setting at fault.
pub(super) fn client_config(c: &KafkaConfig) -> Result<Option<Arc<rustls::ClientConfig>>, Invalid> {
    if !c.tls {
        return Ok(None);
    }
    let cert = pem(
        &c.client_cert_pem,
        &c.client_cert_file,
        ("client_cert_pem", "client_cert_file"),
    )?;
    let key = pem(
        &c.client_key_pem,
        &c.client_key_file,
        ("client_key_pem", "client_key_file"),
    )?;
    if cert.is_some() != key.is_some() {
        return Err((
            "client_key_file",
            "a client certificate and its key go together".into(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    match pem(
        &c.ca_cert_pem,
        &c.ca_cert_file,
        ("ca_cert_pem", "ca_cert_file"),
    )? {
        Some(bytes) => {
            let key = if c.ca_cert_pem.is_some() {
                "ca_cert_pem"
            } else {
                "ca_cert_file"
            };
            for cert in certificates(&bytes, key)? {
                roots.add(cert).map_err(|e| (key, e.to_string()))?;
            }
        }
        None => {
            // The system's CAs, as any TLS client; unreadable ones skipped.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err((
                    "ca_cert_file",
                    "no system CA certificates found: give ca_cert_file or ca_cert_pem".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("tls", e.to_string()))?
        .with_root_certificates(roots);
    let config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(&cert, "client_cert_file")?;
            // Not the parser's error: it could quote the key.
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|_| ("client_key_file", "holds no PEM private key".to_owned()))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                (
                    "client_key_file",
                    format!("unusable with the certificate: {e}"),
                )
            })?
        }
        // Neither (one alone was refused above).
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}
