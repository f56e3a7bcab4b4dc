use crate::support::*;
use cds_events_log::{EventLog, Query};
use cds_events_model::{EventFilter, EventType};
use cds_events_webhooks::{MASK, NotificationAuth, WebhooksConfig, WebhooksError};

async fn notification_events(log: &dyn EventLog) -> Vec<serde_json::Value> {
    let page = log
        .query(Query {
            filter: EventFilter {
                types: Some(
                    [
                        EventType::NotificationCreated,
                        EventType::NotificationUpdated,
                        EventType::NotificationDeleted,
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .expect("query");
    page.events
        .iter()
        .map(|e| serde_json::from_str(&e.json).expect("json"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_round_trip_emits_notification_events() {
    let w = World::start(config()).await;
    let created = w
        .hooks
        .create(
            &key("PROJ"),
            input("slack", "https://example.com/a", &["Run.*"]),
            &actor(),
        )
        .await
        .expect("create");
    assert!(created.secret.starts_with("whsec_"));
    assert_eq!(created.notification.project_key, "PROJ");
    assert!(created.notification.enabled);
    assert_eq!(
        w.hooks.get(&key("PROJ"), "slack").await.expect("get"),
        created.notification
    );
    assert_eq!(w.hooks.list(&key("PROJ")).await.expect("list").len(), 1);
    assert!(w.hooks.list(&key("OTHER")).await.expect("list").is_empty());

    let updated = w
        .hooks
        .update(
            &key("PROJ"),
            "slack",
            input("slack", "https://example.com/b", &[]),
            &actor(),
        )
        .await
        .expect("update");
    assert_eq!(updated.webhook_url, "https://example.com/b");
    assert!(updated.filters.is_empty());
    assert_eq!(updated.id, created.notification.id);

    w.hooks
        .delete(&key("PROJ"), "slack", &actor())
        .await
        .expect("delete");
    assert!(matches!(
        w.hooks.get(&key("PROJ"), "slack").await,
        Err(WebhooksError::NotFound(_))
    ));
    assert!(matches!(
        w.hooks.delete(&key("PROJ"), "slack", &actor()).await,
        Err(WebhooksError::NotFound(_))
    ));

    let events = notification_events(w.log.as_ref()).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        [
            "NotificationCreated",
            "NotificationUpdated",
            "NotificationDeleted"
        ]
    );
    for e in &events {
        assert_eq!(e["project_key"], "PROJ");
        assert_eq!(e["notification"], "slack");
        assert_eq!(e["username"], "alice");
        assert_eq!(e["payload"]["name"], "slack");
    }
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_the_log_fails_gets_its_event_once_the_log_is_back() {
    use cds_events_log::sqlite::{SqliteLog, SqliteOptions};
    let w = World::start(config()).await;
    // The log stops taking appends (as when its disk is full).
    w.log.close().await.expect("close the log");
    let created = w
        .hooks
        .create(
            &key("PROJ"),
            input("n", "https://example.com/", &[]),
            &actor(),
        )
        .await
        .expect("the change is stored even though its event cannot be appended yet");
    let (dir, _, config) = w.stop().await;
    let log: std::sync::Arc<dyn EventLog> = std::sync::Arc::new(
        SqliteLog::open(dir.path(), SqliteOptions::default()).expect("reopen the log"),
    );
    assert!(notification_events(log.as_ref()).await.is_empty());
    let w = World::open(dir, log, config).await;
    let events = eventually("the event from the outbox", || async {
        let e = notification_events(w.log.as_ref()).await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "NotificationCreated");
    assert_eq!(events[0]["notification"], created.notification.name);
    // Later flushes (after another change) append nothing twice.
    w.hooks
        .set_enabled(&key("PROJ"), "n", false, &actor())
        .await
        .expect("disable");
    let types: Vec<String> = notification_events(w.log.as_ref())
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(types, ["NotificationCreated", "NotificationUpdated"]);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_unique_per_project() {
    let w = World::start(config()).await;
    w.create("PROJ", "n", "https://example.com/").await;
    let again = w
        .hooks
        .create(
            &key("PROJ"),
            input("n", "https://example.com/", &[]),
            &actor(),
        )
        .await;
    assert!(matches!(again, Err(WebhooksError::AlreadyExists { name }) if name == "n"));
    // Same name elsewhere is fine; renaming onto a taken name is not.
    w.create("OTHER", "n", "https://example.com/").await;
    w.create("PROJ", "m", "https://example.com/").await;
    let rename = w
        .hooks
        .update(
            &key("PROJ"),
            "m",
            input("n", "https://example.com/", &[]),
            &actor(),
        )
        .await;
    assert!(matches!(rename, Err(WebhooksError::AlreadyExists { .. })));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_has_at_most_max_per_project_notifications() {
    let w = World::start(WebhooksConfig {
        max_per_project: 2,
        ..config()
    })
    .await;
    w.create("PROJ", "a", "https://example.com/").await;
    w.create("PROJ", "b", "https://example.com/").await;
    let third = w
        .hooks
        .create(
            &key("PROJ"),
            input("c", "https://example.com/", &[]),
            &actor(),
        )
        .await;
    assert!(
        matches!(&third, Err(WebhooksError::TooMany { project, limit: 2 }) if project == "PROJ"),
        "{third:?}"
    );
    // Per project; and deleting one makes room again.
    w.create("OTHER", "c", "https://example.com/").await;
    w.hooks
        .delete(&key("PROJ"), "a", &actor())
        .await
        .expect("delete");
    w.create("PROJ", "c", "https://example.com/").await;
    assert_eq!(w.hooks.list(&key("PROJ")).await.expect("list").len(), 2);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_names_the_field() {
    let w = World::start(config()).await;
    let mut n = input("n", "https://example.com/", &[]);
    n.filters.insert(
        "any-name".into(),
        cds_events_webhooks::NotificationFilter {
            event: vec!["Run.*".into(), "Run(".into()],
        },
    );
    match w.hooks.create(&key("PROJ"), n, &actor()).await {
        Err(WebhooksError::Invalid { field, .. }) => assert_eq!(field, "filters.any-name.event[1]"),
        other => panic!("expected invalid, got {other:?}"),
    }
    for (n, field) in [
        (input("", "https://example.com/", &[]), "name"),
        (input("n", "file:///etc/passwd", &[]), "webhook_url"),
        (input("n", "not a url", &[]), "webhook_url"),
    ] {
        match w.hooks.create(&key("PROJ"), n, &actor()).await {
            Err(WebhooksError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    assert!(w.hooks.list(&key("PROJ")).await.expect("list").is_empty());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_values_are_masked_and_the_mask_keeps_them() {
    let w = World::start(config()).await;
    let rx = Receiver::ok().await;
    let mut n = input("n", &rx.url, &["^RunJobEnded$"]);
    n.auth = Some(NotificationAuth {
        headers: [("Authorization".to_owned(), "Bearer s3cr3t-token".to_owned())].into(),
    });
    w.create_with("PROJ", n).await;
    let got = w.hooks.get(&key("PROJ"), "n").await.expect("get");
    assert_eq!(got.auth.headers["Authorization"], MASK);
    assert!(
        !serde_json::to_string(&got)
            .expect("json")
            .contains("s3cr3t")
    );

    // A client round-trips what it read, changing only the URL path.
    let mut back: cds_events_webhooks::NotificationIn =
        serde_json::from_value(serde_json::to_value(&got).expect("json")).expect("in");
    back.webhook_url = format!("{}/v2", rx.url);
    w.hooks
        .update(&key("PROJ"), "n", back, &actor())
        .await
        .expect("update");
    w.publish("PROJ", 1).await;
    let r = rx.wait_for(1).await;
    assert_eq!(r[0].header("authorization"), "Bearer s3cr3t-token");

    // A new value replaces it.
    let mut n = input("n", &rx.url, &["^RunJobEnded$"]);
    n.auth = Some(NotificationAuth {
        headers: [("Authorization".to_owned(), "Bearer other".to_owned())].into(),
    });
    w.hooks
        .update(&key("PROJ"), "n", n, &actor())
        .await
        .expect("update");
    w.publish("PROJ", 1).await;
    let r = rx.wait_for(2).await;
    assert_eq!(r[1].header("authorization"), "Bearer other");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_enabled_false_holds_deliveries_until_enabled() {
    let w = World::start(config()).await;
    let rx = Receiver::ok().await;
    w.create("PROJ", "n", &rx.url).await;
    let off = w
        .hooks
        .set_enabled(&key("PROJ"), "n", false, &actor())
        .await
        .expect("disable");
    assert!(!off.enabled);
    // Disabled: no deliveries are created for new events.
    w.publish("PROJ", 2).await;
    w.settled().await;
    assert!(rx.requests().is_empty());
    let page = w
        .hooks
        .deliveries(&key("PROJ"), "n", None, None, 10)
        .await
        .expect("list");
    assert!(page.deliveries.is_empty());
    w.hooks
        .set_enabled(&key("PROJ"), "n", true, &actor())
        .await
        .expect("enable");
    w.publish("PROJ", 1).await;
    assert_eq!(rx.wait_for(1).await.len(), 1);
    w.stop().await;
}
