//! The Kafka sink over TLS: a private `tansu` behind a TLS-terminating
//! proxy of the test's own that requires a client certificate (rustls'
//! `WebPkiClientVerifier`), with tansu advertising the proxy so every
//! connection the client opens goes through it. A CA and the certificates
//! are made fresh per test with `rcgen`. The conformance checks that send
//! and receive run through it, with the sink's `tls`, `ca_cert_pem` and
//! client identity; a sink trusting another CA is refused with an error
//! naming the certificate, holds back its own events (lag), and never
//! panics.

use async_trait::async_trait;
use cds_events_sinks::conformance::{self, Harness, Reader, Received};
use cds_events_sinks::kafka::KafkaConfig;
use cds_events_sinks::kafka::testing::{Tansu, free_port};
use cds_events_sinks::{SinkError, SinkKind, build};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

type Ca = CertifiedIssuer<'static, KeyPair>;

fn new_ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("the CA")
}

/// A certificate of `ca` for `name` and `usage`: its PEM and its key's.
fn leaf(ca: &Ca, name: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).expect("params");
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("signed");
    (cert.pem(), key.serialize_pem())
}

fn pem_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("certificates")
}

/// Terminates TLS (requiring a client certificate of `ca`) on `listener`
/// and forwards the plain bytes to `upstream`, until the runtime ends.
fn tls_proxy(listener: TcpListener, upstream: String, ca: &Ca) {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let (cert, key) = leaf(ca, "127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            pem_certs(&cert),
            PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // A refused handshake just ends the connection.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
}

/// tansu behind the TLS proxy; the CA that signed both sides, and the
/// client's certificate and key.
struct TlsKafka {
    _broker: Tansu,
    proxy: String,
    ca: Ca,
    client: (String, String),
}

impl TlsKafka {
    async fn start() -> TlsKafka {
        let ca = new_ca();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = listener.local_addr().expect("addr").to_string();
        let port = free_port();
        tls_proxy(listener, format!("127.0.0.1:{port}"), &ca);
        let broker = Tansu::start_on(port, Some(&proxy));
        let client = leaf(&ca, "cds-events-sink", ExtendedKeyUsagePurpose::ClientAuth);
        TlsKafka {
            _broker: broker,
            proxy,
            ca,
            client,
        }
    }

    /// Settings reaching the proxy over TLS with the test's CA and the
    /// client's identity.
    fn config(&self, ns: &str) -> KafkaConfig {
        let mut c = KafkaConfig::new(vec![self.proxy.clone()]);
        c.topic = format!("cdstest.{ns}");
        c.tls = true;
        c.ca_cert_pem = Some(self.ca.pem());
        c.client_cert_pem = Some(self.client.0.clone());
        c.client_key_pem = Some(self.client.1.clone());
        c
    }

    /// A client of the broker through the proxy, as the sink connects.
    async fn client(&self) -> Client {
        let c = self.config("reader");
        let tls = rustls_config(&c);
        ClientBuilder::new(vec![self.proxy.clone()])
            .tls_config(tls)
            .build()
            .await
            .expect("the test's tansu, through TLS")
    }
}

/// The reader's TLS settings, from the same PEM the sink is given.
fn rustls_config(c: &KafkaConfig) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs(c.ca_cert_pem.as_deref().expect("ca")) {
        roots.add(cert).expect("root");
    }
    let key = c.client_key_pem.as_deref().expect("key").as_bytes();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(
        pem_certs(c.client_cert_pem.as_deref().expect("cert")),
        PrivateKeyDer::from_pem_slice(key).expect("key"),
    )
    .expect("client config");
    Arc::new(config)
}

/// Partition 0 of a topic, from its start, through the TLS proxy.
struct TlsReader {
    client: Client,
    topic: String,
    partition: Option<PartitionClient>,
    offset: i64,
    buffered: VecDeque<Received>,
}

#[async_trait]
impl Reader for TlsReader {
    async fn next(&mut self, timeout: Duration) -> Option<Received> {
        let deadline = Instant::now() + timeout;
        while self.buffered.is_empty() {
            if Instant::now() >= deadline {
                return None;
            }
            if self.partition.is_none() {
                let exists = self
                    .client
                    .list_topics()
                    .await
                    .is_ok_and(|t| t.iter().any(|t| t.name == self.topic));
                if exists {
                    self.partition = self
                        .client
                        .partition_client(&self.topic, 0, UnknownTopicHandling::Retry)
                        .await
                        .ok();
                }
            }
            let Some(p) = &self.partition else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let Ok((records, _)) = p.fetch_records(self.offset, 1..1_000_000, 100).await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let from = self.offset;
            for r in records.into_iter().filter(|r| r.offset >= from) {
                self.offset = r.offset + 1;
                let header = |k: &str| {
                    r.record
                        .headers
                        .get(k)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                };
                self.buffered.push_back(Received {
                    id: header("cds-events-id").unwrap_or_default(),
                    seq: header("cds-events-seq").and_then(|s| s.parse().ok()),
                    body: r.record.value.clone().unwrap_or_default(),
                    route: String::from_utf8_lossy(r.record.key.as_deref().unwrap_or_default())
                        .into_owned(),
                    content_type: header("content-type"),
                });
            }
        }
        self.buffered.pop_front()
    }
}

#[async_trait]
impl Harness for TlsKafka {
    fn settings(&self, ns: &str) -> SinkKind {
        SinkKind::Kafka(self.config(ns))
    }

    /// The same proxy, but trusting another CA: the handshake is refused,
    /// so the broker is never reached (and the password never sent).
    fn unreachable(&self, ns: &str, secret: &str) -> SinkKind {
        let mut c = self.config(ns);
        c.ca_cert_pem = Some(new_ca().pem());
        c.user = Some("cds".into());
        c.password = Some(secret.into());
        c.connect_timeout = Duration::from_millis(500);
        c.timeout = Duration::from_millis(500);
        SinkKind::Kafka(c)
    }

    async fn reader(&self, ns: &str) -> Box<dyn Reader> {
        Box::new(TlsReader {
            client: self.client().await,
            topic: format!("cdstest.{ns}"),
            partition: None,
            offset: 0,
            buffered: VecDeque::new(),
        })
    }

    fn broker_addr(&self) -> String {
        self.proxy.clone()
    }

    fn settings_at(&self, ns: &str, addr: &str) -> SinkKind {
        let mut c = self.config(ns);
        c.brokers = vec![addr.to_owned()];
        SinkKind::Kafka(c)
    }

    fn client_resends(&self) -> bool {
        true
    }

    async fn cleanup(&self, ns: &str) {
        let _ = self
            .client()
            .await
            .controller_client()
            .expect("controller")
            .delete_topic(format!("cdstest.{ns}"), 5_000)
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sent_over_tls_with_a_client_certificate_arrives_in_order() {
    let k = TlsKafka::start().await;
    conformance::a_sent_batch_arrives_in_order_with_ids_and_stored_bytes(&k).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_driver_sends_over_tls_and_stores_the_position_after_the_ack() {
    let k = TlsKafka::start().await;
    conformance::the_driver_sends_what_is_appended_and_stores_the_position_after_the_ack(&k).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_over_tls_and_a_wrong_ca_is_disconnected() {
    let k = TlsKafka::start().await;
    conformance::health_says_whether_the_broker_is_reached(&k).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_trusting_another_ca_lags_alone_and_shows_why() {
    let k = TlsKafka::start().await;
    conformance::a_broker_that_is_down_holds_back_only_its_own_sink(&k).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_or_a_missing_client_certificate_is_a_clear_connect_error() {
    let k = TlsKafka::start().await;
    let sink = |c: KafkaConfig| {
        let mut c = c;
        c.connect_timeout = Duration::from_millis(800);
        c.timeout = Duration::from_millis(800);
        build(&conformance::config("k", SinkKind::Kafka(c))).expect("build")
    };
    let mut wrong_ca = k.config("wrong");
    wrong_ca.ca_cert_pem = Some(new_ca().pem());
    let e = sink(wrong_ca).connect().await.expect_err("another CA");
    assert!(matches!(e, SinkError::Connect(_)), "{e}");
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");

    let mut anonymous = k.config("anonymous");
    anonymous.client_cert_pem = None;
    anonymous.client_key_pem = None;
    let e = sink(anonymous)
        .connect()
        .await
        .expect_err("no client certificate");
    assert!(matches!(e, SinkError::Connect(_)), "{e}");
    assert!(e.to_string().contains("CertificateRequired"), "{e}");

    // Plain TCP to a TLS listener: refused, not hung, not a panic.
    let mut plain = k.config("plain");
    plain.tls = false;
    (
        plain.ca_cert_pem,
        plain.client_cert_pem,
        plain.client_key_pem,
    ) = (None, None, None);
    let e = sink(plain).connect().await.expect_err("plain to TLS");
    assert!(matches!(e, SinkError::Connect(_)), "{e}");
}
