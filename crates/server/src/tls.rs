//! HTTPS: the server's certificate and key, and with `tls.client_ca` the
//! CAs whose client certificates it requires (mutual TLS).
//!
//! A certificate that is presented is verified in the handshake (one no
//! `tls.client_ca` signed ends it). A client that presents none completes
//! the handshake but every request it sends is answered 401
//! `client_certificate_required`: in TLS 1.3 a handshake refused for a
//! missing certificate reaches the client as a mere closed connection,
//! where an answer says what is missing.

use crate::ServerError;
use crate::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// The server's TLS: its acceptor and whether a client certificate is
/// required.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) client_cert_required: bool,
}

impl Tls {
    /// Whether this accepted connection may reach the API.
    pub(crate) fn admits<IO>(&self, stream: &tokio_rustls::server::TlsStream<IO>) -> bool {
        !self.client_cert_required || stream.get_ref().1.peer_certificates().is_some()
    }
}

/// What every request of a connection without a client certificate gets.
pub(crate) fn certificate_required() -> axum::Router {
    use axum::response::IntoResponse;
    axum::Router::new().fallback(|| async {
        crate::error::ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "client_certificate_required",
            "this server requires a TLS client certificate signed by one of its tls.client_ca",
        )
        .into_response()
    })
}

/// The TLS of `config`, or `None` when it asks for none.
pub(crate) fn acceptor(config: &TlsConfig) -> Result<Option<Tls>, ServerError> {
    let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
        return Ok(None);
    };
    let certs = certificates("tls.cert", cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServerError::Tls(format!("tls.key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in certificates("tls.client_ca", path)? {
                roots.add(ca).map_err(|e| {
                    ServerError::Tls(format!("tls.client_ca {}: {e}", path.display()))
                })?;
            }
            // A certificate presented must be one of these CAs'; a
            // connection without one is answered 401 (see `admits`).
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| ServerError::Tls(format!("tls.client_ca {}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut tls = builder
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        client_cert_required: config.client_ca.is_some(),
    }))
}

/// The certificates of a PEM file; none is an error naming the setting.
fn certificates(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("{setting} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{setting} {}: no certificate",
            path.display()
        )));
    }
    Ok(certs)
}
