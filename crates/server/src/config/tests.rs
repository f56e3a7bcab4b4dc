//! What the configuration refuses, and the secrets it never prints.

use super::*;

#[test]
fn a_postgres_password_never_reaches_the_printed_configuration() {
    for (url, shown) in [
        (
            "postgres://cds:s3cret@db:5432/events",
            "postgres://cds:***@db:5432/events",
        ),
        ("postgres://cds@db/events", "postgres://cds@db/events"),
        (
            "postgresql://db/events?user=cds&password=s3cret",
            "postgresql://db/events?user=cds&password=***",
        ),
        (
            "host=db user=cds password=s3cret dbname=events",
            "host=db user=cds password=*** dbname=events",
        ),
    ] {
        assert_eq!(mask_password(url), shown);
        let mut c = Config::default();
        c.storage.postgres_url = Some(url.to_owned());
        let toml = c.to_toml();
        assert!(!toml.contains("s3cret"), "{toml}");
        assert!(toml.contains(shown), "{toml}");
    }
}

#[test]
fn a_postgres_url_that_cannot_be_parsed_is_refused_without_being_repeated() {
    let mut c = Config::default();
    c.storage.postgres_url = Some("postgres://u:pw@host:notaport/db".into());
    let err = c.validate().expect_err("bad port").to_string();
    assert!(err.contains("storage.postgres_url"), "{err}");
    assert!(!err.contains("pw@"), "{err}");
    c.storage.postgres_url = Some("  ".into());
    assert!(c.validate().is_err());
    c.storage.postgres_url = Some("postgres://u@h/db".into());
    c.storage.postgres_pool_size = 0;
    assert!(c.validate().is_err());
    c.storage.postgres_pool_size = 4;
    c.validate().expect("valid");
    let pg = c.storage.postgres().expect("configured");
    assert_eq!(pg.pool_size, 4);
    assert_eq!(c.storage.backend(), "postgresql");
    assert_eq!(Config::default().storage.backend(), "sqlite");
}

#[test]
fn a_redis_sink_on_the_bridges_channel_is_refused() {
    let mut c = Config::default();
    c.bridge.cds_redis_url = Some("redis://127.0.0.1:6379".into());
    let sink: cds_events_sinks::SinkConfig =
        toml::from_str("name = \"r\"\nkind = \"redis\"\nurl = \"redis://localhost/1\"")
            .expect("parses");
    c.sinks = vec![sink.clone()];
    let e = c.validate().expect_err("loops").to_string();
    assert!(e.contains("sinks[r]") && e.contains("loop"), "{e}");
    c.bridge.channel = "relay:ui".into();
    c.validate().expect("another channel");
}

#[test]
fn client_certificates_need_the_server_to_serve_tls() {
    let mut c = Config::default();
    c.tls.client_ca = Some("/etc/cds/clients.pem".into());
    let e = c.validate().expect_err("no TLS").to_string();
    assert!(e.contains("tls.client_ca"), "{e}");
    c.tls.cert = Some("/etc/cds/cert.pem".into());
    c.tls.key = Some("/etc/cds/key.pem".into());
    c.validate().expect("with TLS");
}

#[test]
fn a_memory_map_larger_than_sqlite_makes_is_refused() {
    let mut c = Config::default();
    c.validate().expect("the default");
    c.storage.reader_mmap_mib = 4096;
    let e = c.validate().expect_err("over the cap").to_string();
    assert!(e.contains("storage.reader_mmap_mib"), "{e}");
    c.storage.reader_mmap_mib = 0;
    c.validate().expect("off");
}
