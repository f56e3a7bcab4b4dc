use crate::support::*;
use cds_events_webhooks::{DeliveryStatus, NotificationAuth, OutcomeKind, WebhooksConfig};

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Every byte SQLite wrote: the database and its write-ahead log.
fn db_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = std::fs::read(dir.join("webhooks.db")).expect("db");
    if let Ok(wal) = std::fs::read(dir.join("webhooks.db-wal")) {
        all.extend(wal);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_secrets_are_encrypted_at_rest() {
    let w = World::start(config()).await;
    let mut n = input("n", "https://example.com/", &[]);
    n.auth = Some(NotificationAuth {
        headers: [("X-Token".to_owned(), "plaintext-header-value-42".to_owned())].into(),
    });
    let secret = w.create_with("PROJ", n).await;
    let rotated = w
        .hooks
        .rotate_secret(&key("PROJ"), "n", &actor())
        .await
        .expect("rotate");
    let (dir, _log, _) = w.stop().await;
    let bytes = db_bytes(dir.path());
    assert!(
        contains(&bytes, "https://example.com/"),
        "the check reads the right file"
    );
    assert!(!contains(&bytes, "plaintext-header-value-42"));
    assert!(!contains(&bytes, secret.trim_start_matches("whsec_")));
    assert!(!contains(
        &bytes,
        rotated.secret.trim_start_matches("whsec_")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_keeps_everything_readable() {
    let w = World::start(config()).await;
    let rx = Receiver::ok().await;
    let mut n = input("n", &rx.url, &["^RunJobEnded$"]);
    n.auth = Some(NotificationAuth {
        headers: [("X-Token".to_owned(), "tok".to_owned())].into(),
    });
    let secret = w.create_with("PROJ", n).await;
    let key_before = std::fs::read_to_string(w.dir.path().join("webhooks.key")).expect("key");
    w.hooks.rotate_key().await.expect("rotate");
    let key_after = std::fs::read_to_string(w.dir.path().join("webhooks.key")).expect("key");
    let keys = |s: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(s).expect("json");
        v["keys"]
            .as_object()
            .expect("keys")
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(keys(&key_after).len(), 1, "the old key is dropped");
    assert_ne!(keys(&key_before), keys(&key_after));
    // Readable now and after a restart (which decrypts from disk).
    assert_eq!(
        w.hooks
            .secret(&key("PROJ"), "n")
            .await
            .expect("secret")
            .secret,
        secret
    );
    let w = w.restart().await;
    assert_eq!(
        w.hooks
            .secret(&key("PROJ"), "n")
            .await
            .expect("secret")
            .secret,
        secret
    );
    w.publish("PROJ", 1).await;
    let r = &rx.wait_for(1).await[0];
    assert_eq!(r.header("x-token"), "tok");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_key_reads_values_of_the_previous_one() {
    use base64::Engine;
    let b64 = |b: u8| base64::engine::general_purpose::STANDARD.encode([b; 32]);
    let w = World::start(WebhooksConfig {
        key: Some(b64(1)),
        ..config()
    })
    .await;
    let secret = w.create("PROJ", "n", "https://example.com/").await;
    assert!(
        w.hooks.rotate_key().await.is_err(),
        "a configured key is rotated by configuration"
    );
    assert!(!w.dir.path().join("webhooks.key").exists());
    let (dir, log, config) = w.stop().await;
    // The operator sets a new key and keeps the old one as previous.
    let w = World::open(
        dir,
        log,
        WebhooksConfig {
            key: Some(b64(2)),
            previous_keys: vec![b64(1)],
            ..config
        },
    )
    .await;
    assert_eq!(
        w.hooks
            .secret(&key("PROJ"), "n")
            .await
            .expect("secret")
            .secret,
        secret
    );
    let (dir, log, config) = w.stop().await;
    // Everything was re-encrypted at open: the old key is no longer needed.
    let w = World::open(
        dir,
        log,
        WebhooksConfig {
            previous_keys: vec![],
            ..config
        },
    )
    .await;
    assert_eq!(
        w.hooks
            .secret(&key("PROJ"), "n")
            .await
            .expect("secret")
            .secret,
        secret
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_targets_are_refused_unless_allowed() {
    let w = World::start(WebhooksConfig {
        allow_private: false,
        retry_schedule: schedule(&[0]),
        ..config()
    })
    .await;
    let rx = Receiver::ok().await;
    w.create("PROJ", "literal", &rx.url).await;
    w.create(
        "PROJ",
        "name",
        &format!("http://localhost:{}/hook", rx.port),
    )
    .await;
    for name in ["literal", "name"] {
        let outcome = w.hooks.test(&key("PROJ"), name).await.expect("test");
        assert_eq!(outcome.outcome, OutcomeKind::Refused, "{name}: {outcome:?}");
        let e = outcome.error.unwrap_or_default();
        assert!(
            e.contains("is loopback") && e.contains("CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE=1"),
            "{e}"
        );
    }
    w.publish("PROJ", 1).await;
    for name in ["literal", "name"] {
        let d = eventually("a failed delivery", || async {
            let p = w
                .hooks
                .deliveries(&key("PROJ"), name, Some(DeliveryStatus::Failed), None, 10)
                .await
                .ok()?;
            p.deliveries.into_iter().next()
        })
        .await;
        let detail = w
            .hooks
            .delivery(&key("PROJ"), name, &d.id)
            .await
            .expect("detail");
        assert!(
            detail.attempts[0]
                .error
                .as_deref()
                .unwrap_or("")
                .contains("is loopback")
        );
    }
    w.settled().await;
    assert!(rx.requests().is_empty(), "nothing reached the receiver");
    w.stop().await;
}
