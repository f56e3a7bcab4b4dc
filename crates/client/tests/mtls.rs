//! Mutual TLS: the real server, in this process, serving HTTPS and
//! requiring a client certificate (`tls.client_ca`); the SDK publishes and
//! queries with its identity (`ClientOptions::identity_pem`); without one
//! it is answered 401 saying so, and one another CA signed ends the
//! handshake. The CA and certificates are made fresh for each test (`rcgen`).

use cds_events_client::{Client, ClientError, ClientOptions, Retry};
use cds_events_model::{EventType, FullEvent};
use cds_events_server::Server;
use cds_events_server::config::Config;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// A private CA.
fn new_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("the CA")
}

/// A certificate `ca` signed for `names` and `usage`: its PEM and its key's.
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("signed");
    (cert.pem(), key.serialize_pem())
}

/// The server on HTTPS requiring a certificate of `client_ca`: its URL,
/// admin token, and what stops it.
async fn start(dir: &Path, ca: &CertifiedIssuer<'static, KeyPair>) -> (String, String, Stop) {
    let (cert, key) = leaf(ca, &["127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        Some(path)
    };
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.tls.cert = write("server.pem", &cert);
    config.tls.key = write("server.key", &key);
    config.tls.client_ca = write("client-ca.pem", &ca.pem());
    let server = Server::bind(config).await.expect("the server starts");
    let token = std::fs::read_to_string(dir.join("data").join("admin.token"))
        .expect("a generated admin token")
        .trim()
        .to_owned();
    let url = format!("https://{}", server.local_addr().expect("bound"));
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { server.run(stop).await.expect("the server runs") }
    });
    (url, token, Stop { stop, task })
}

struct Stop {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Stop {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("the server stopped");
    }
}

fn client(url: &str, token: &str, ca: &str, identity: Option<String>) -> Client {
    let options = ClientOptions {
        token: Some(token.to_owned()),
        pool: 2,
        ca_cert_pem: Some(ca.as_bytes().to_vec()),
        identity_pem: identity.map(String::into_bytes),
        retry: Retry::NEVER,
    };
    Client::with_options(url, options).expect("client")
}

fn event(i: usize) -> FullEvent {
    let mut e = FullEvent::new(EventType::ProjectUpdated);
    e.project_key = "MTLS".to_owned();
    e.username = format!("user{i}");
    e
}

/// The error and its sources, as a person reading it would see them all.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_certificate_the_client_publishes_and_queries_and_without_it_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca();
    let (url, token, server) = start(dir.path(), &ca).await;
    let (cert, key) = leaf(&ca, &["cds-client"], ExtendedKeyUsagePurpose::ClientAuth);

    let with = client(&url, &token, &ca.pem(), Some(format!("{cert}{key}")));
    let stored = with
        .publish(&[event(1), event(2)])
        .await
        .expect("published with the identity");
    assert_eq!(stored.len(), 2);
    let page = with
        .query(&[("project_key".to_owned(), "MTLS".to_owned())])
        .await
        .expect("queried with the identity");
    assert_eq!(page.events.len(), 2);

    // No certificate: every request is answered 401, saying what is missing.
    let without = client(&url, &token, &ca.pem(), None);
    let e = without
        .publish(&[event(3)])
        .await
        .expect_err("no certificate");
    match &e {
        ClientError::Api { status: 401, body } => {
            assert_eq!(body.code, "client_certificate_required", "{e}");
            assert!(body.message.contains("tls.client_ca"), "{e}");
        }
        _ => panic!("not the 401 it should be: {}", chain(&e)),
    }

    // A certificate from another CA: refused as well.
    let other = new_ca();
    let (cert, key) = leaf(&other, &["cds-client"], ExtendedKeyUsagePurpose::ClientAuth);
    let stranger = client(&url, &token, &ca.pem(), Some(format!("{cert}{key}")));
    let e = stranger
        .query(&[])
        .await
        .expect_err("a stranger's certificate");
    let text = chain(&e);
    assert!(matches!(e, ClientError::Http(_)), "{text}");
    eprintln!("a stranger's certificate: {text}");

    // Nothing the refused clients sent was stored.
    let page = with.query(&[]).await.expect("query");
    assert_eq!(page.events.len(), 2);
    server.stop().await;
}

#[test]
fn an_identity_that_is_not_a_certificate_and_key_is_refused_at_build() {
    let ca = new_ca();
    let (cert, key) = leaf(&ca, &["cds-client"], ExtendedKeyUsagePurpose::ClientAuth);
    for (bad, why) in [
        (cert.clone(), "a certificate without its key"),
        (key, "a key without its certificate"),
        ("not pem at all".to_owned(), "no PEM"),
    ] {
        let options = ClientOptions {
            identity_pem: Some(bad.into_bytes()),
            ..ClientOptions::default()
        };
        let e = Client::with_options("https://127.0.0.1:1", options).expect_err(why);
        assert!(
            matches!(&e, ClientError::BadIdentity(_)),
            "{why}: {}",
            chain(&e)
        );
        assert!(
            e.to_string()
                .contains("private key or certificate not found"),
            "{why}: {e}"
        );
    }
    let shown = format!(
        "{:?}",
        ClientOptions {
            identity_pem: Some(cert.into_bytes()),
            token: Some("t0ken-s3cret".into()),
            ..ClientOptions::default()
        }
    );
    assert!(
        !shown.contains("BEGIN") && !shown.contains("t0ken-s3cret"),
        "{shown}"
    );
}
