//! Mutual TLS through the binary: `serve --tls-client-ca` requires a client
//! certificate, and the CLI presents one with `--client-cert`/`--client-key`
//! (or their environment variables); without one the command fails saying
//! what is missing.

use crate::{ADMIN, BIN, TestServer, succeeded};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::Path;
use std::process::{Command, Output};

type Ca = CertifiedIssuer<'static, KeyPair>;

fn new_ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("the CA")
}

/// Writes a certificate of `ca` (and its key) as `<name>.pem`/`<name>.key`.
fn leaf(dir: &Path, ca: &Ca, name: &str, san: &str, usage: ExtendedKeyUsagePurpose) {
    let mut params = CertificateParams::new(vec![san.to_owned()]).expect("params");
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("signed");
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write");
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write");
}

fn query(s: &TestServer, dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["query", "--server", &s.base, "--token", ADMIN, "--ca-cert"])
        .arg(dir.join("ca.pem"))
        .args(args)
        .env_remove("CDS_EVENTS_CLIENT_CERT")
        .env_remove("CDS_EVENTS_CLIENT_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("cli")
}

#[test]
fn the_cli_presents_its_client_certificate_to_a_server_that_requires_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let ca = new_ca();
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write");
    leaf(
        dir,
        &ca,
        "server",
        "127.0.0.1",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    leaf(
        dir,
        &ca,
        "client",
        "cds-cli",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let path = |name: &str| dir.join(name).to_str().expect("utf8").to_owned();
    let s = TestServer::builder()
        .arg("--tls-cert")
        .arg(&path("server.pem"))
        .arg("--tls-key")
        .arg(&path("server.key"))
        .arg("--tls-client-ca")
        .arg(&path("ca.pem"))
        .start();

    let flags = [
        "--client-cert",
        &path("client.pem"),
        "--client-key",
        &path("client.key"),
    ];
    succeeded(query(&s, dir, &flags, &[]), "query with certificate flags");

    let (cert, key) = (dir.join("client.pem"), dir.join("client.key"));
    let env = [
        ("CDS_EVENTS_CLIENT_CERT", cert.as_path()),
        ("CDS_EVENTS_CLIENT_KEY", key.as_path()),
    ];
    succeeded(
        query(&s, dir, &[], &env),
        "query with certificate variables",
    );

    let out = query(&s, dir, &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no certificate, yet: {stderr}");
    assert!(stderr.contains("client_certificate_required"), "{stderr}");

    // A key that is not PEM: refused before any request, naming it.
    std::fs::write(dir.join("bad.key"), "not a key").expect("write");
    let flags = [
        "--client-cert",
        &path("client.pem"),
        "--client-key",
        &path("bad.key"),
    ];
    let out = query(&s, dir, &flags, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("client identity"), "{stderr}");
}
