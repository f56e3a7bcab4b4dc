//! Notifications: what is stored, unique names, the per-project cap,
//! changes with their events in the outbox, the mirror, key rotation.

use super::{
    Harness, Heard, actor, create, key, notification, open, open_with_one, outbox_types, set,
};
use crate::error::WebhooksError;
use crate::model::DeliveryStatus;
use crate::signing::SigningSecret;
use crate::store::NotificationStore;
use std::sync::Arc;

pub async fn a_created_notification_reads_back_after_a_reopen(h: &dyn Harness) {
    let o = open(h).await;
    let mut n = notification("P", "slack");
    n.previous = Some((SigningSecret::generate(), 1_234));
    n.filters.insert(
        "jobs".into(),
        crate::model::NotificationFilter {
            event: vec!["RunJob.*".into()],
        },
    );
    let created = o
        .store
        .create_notification(n.clone(), 10, &actor())
        .await
        .expect("create");
    assert_ne!(created.id.0, 0, "the store gives the id");
    let other = create(o.store.as_ref(), "P", "other").await;
    assert_ne!(other.id, created.id);
    assert_eq!(created.uid, n.uid);
    assert_eq!(o.mirror.get(created.id).as_ref(), Some(&created));
    o.store.close().await.expect("close");

    let o = open(h).await;
    assert_eq!(o.mirror.len(), 2, "every stored notification, at open");
    let back = o.mirror.get(created.id).expect("told at open");
    assert_eq!(
        back, created,
        "every field, secrets and headers in the clear"
    );
    o.store.close().await.expect("close");
}

pub async fn ordering_per_key_is_stored_changed_and_read_back(h: &dyn Harness) {
    use crate::model::OrderedBy;
    let o = open(h).await;
    let s = o.store.as_ref();
    let plain = create(s, "P", "plain").await;
    assert_eq!(plain.ordered_by, None, "not ordered per key by default");
    let mut n = notification("P", "runs");
    n.ordered_by = Some(OrderedBy::WorkflowRunId);
    let created = s
        .create_notification(n, 10, &actor())
        .await
        .expect("create");
    let updated = s
        .update_notification(
            &key("P"),
            "plain",
            set(|n| n.ordered_by = Some(OrderedBy::Repository)),
            &actor(),
        )
        .await
        .expect("update");
    assert_eq!(updated.ordered_by, Some(OrderedBy::Repository));
    s.close().await.expect("close");
    let o = open(h).await;
    let back = |id| o.mirror.get(id).expect("told at open").ordered_by;
    assert_eq!(back(created.id), Some(OrderedBy::WorkflowRunId));
    assert_eq!(back(plain.id), Some(OrderedBy::Repository));
    o.store.close().await.expect("close");
}

pub async fn the_body_format_is_stored_changed_and_read_back(h: &dyn Harness) {
    use crate::model::{ContentMode, EventFormat};
    let o = open(h).await;
    let s = o.store.as_ref();
    let plain = create(s, "P", "plain").await;
    assert_eq!(
        (plain.format, plain.content_mode),
        (EventFormat::Cds, ContentMode::Structured),
        "CDS's body by default"
    );
    let mut n = notification("P", "ce");
    n.format = EventFormat::CloudEvents;
    let created = s
        .create_notification(n, 10, &actor())
        .await
        .expect("create");
    assert_eq!(created.format, EventFormat::CloudEvents);
    let updated = s
        .update_notification(
            &key("P"),
            "ce",
            set(|n| n.content_mode = ContentMode::Binary),
            &actor(),
        )
        .await
        .expect("update");
    assert_eq!(
        (updated.format, updated.content_mode),
        (EventFormat::CloudEvents, ContentMode::Binary)
    );
    s.close().await.expect("close");
    let o = open(h).await;
    let back = o.mirror.get(created.id).expect("told at open");
    assert_eq!(
        (back.format, back.content_mode),
        (EventFormat::CloudEvents, ContentMode::Binary)
    );
    let plain = o.mirror.get(plain.id).expect("told at open");
    assert_eq!(plain.format, EventFormat::Cds);
    o.store.close().await.expect("close");
}

pub async fn names_are_unique_per_project(h: &dyn Harness) {
    let o = open(h).await;
    let s = o.store.as_ref();
    create(s, "A", "x").await;
    create(s, "B", "x").await;
    let again = s
        .create_notification(notification("A", "x"), 10, &actor())
        .await;
    assert!(
        matches!(&again, Err(WebhooksError::AlreadyExists { name }) if name == "x"),
        "{again:?}"
    );
    create(s, "A", "y").await;
    let renamed = s
        .update_notification(&key("A"), "y", set(|n| n.name = "x".into()), &actor())
        .await;
    assert!(
        matches!(renamed, Err(WebhooksError::AlreadyExists { .. })),
        "{renamed:?}"
    );
    assert_eq!(o.mirror.len(), 3, "the refused changes were not told");
    assert_eq!(outbox_types(s).await.len(), 3, "nor announced");
    s.close().await.expect("close");
}

pub async fn the_per_project_cap_is_enforced(h: &dyn Harness) {
    let o = open(h).await;
    let s = o.store.as_ref();
    for name in ["a", "b"] {
        s.create_notification(notification("A", name), 2, &actor())
            .await
            .expect("under the cap");
    }
    let third = s
        .create_notification(notification("A", "c"), 2, &actor())
        .await;
    assert!(
        matches!(&third, Err(WebhooksError::TooMany { project, limit: 2 }) if project == "A"),
        "{third:?}"
    );
    s.create_notification(notification("B", "c"), 2, &actor())
        .await
        .expect("another project has its own cap");
    s.delete_notification(&key("A"), "a", &actor())
        .await
        .expect("delete");
    s.create_notification(notification("A", "c"), 2, &actor())
        .await
        .expect("room again after a deletion");
    s.close().await.expect("close");
}

pub async fn the_per_project_cap_holds_under_concurrent_creations(h: &dyn Harness) {
    let o = open(h).await;
    let tries = (0..8).map(|i| {
        let store = Arc::clone(&o.store);
        tokio::spawn(async move {
            store
                .create_notification(notification("A", &format!("n{i}")), 3, &actor())
                .await
        })
    });
    let mut created = 0;
    for t in tries {
        match t.await.expect("task") {
            Ok(_) => created += 1,
            Err(WebhooksError::TooMany { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(created, 3);
    assert_eq!(o.mirror.len(), 3);
    o.store.close().await.expect("close");
}

pub async fn an_update_applies_the_edit_to_the_notification_as_stored(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let d = super::deliver(s, &n, [1]).await[0];
    // The failure state moves with results, not with edits: an edit keeps
    // what is stored now.
    super::attempt(s, &n, d, DeliveryStatus::Pending).await;
    let failing = o.mirror.get(n.id).and_then(|n| n.failing_since);
    assert!(failing.is_some());
    let changed = s
        .update_notification(
            &key("P"),
            "slack",
            Box::new(|n| {
                n.url = "https://example.com/new".into();
                n.last_modified += 1;
                Ok(())
            }),
            &actor(),
        )
        .await
        .expect("update");
    assert_eq!(changed.url, "https://example.com/new");
    assert_eq!(changed.failing_since, failing);
    assert_eq!(changed.secret, n.secret);
    assert_eq!(o.mirror.get(n.id).as_ref(), Some(&changed));
    s.close().await.expect("close");
    let o = open(h).await;
    assert_eq!(o.mirror.get(n.id), Some(changed));
    o.store.close().await.expect("close");
}

pub async fn a_failed_edit_changes_nothing(h: &dyn Harness) {
    let (o, n) = open_with_one(h).await;
    let s = o.store.as_ref();
    let heard = o.mirror.heard();
    let r = s
        .update_notification(
            &key("P"),
            "slack",
            Box::new(|n| {
                n.url = "https://example.com/half-done".into();
                Err(WebhooksError::invalid("auth.headers.X", "refused"))
            }),
            &actor(),
        )
        .await;
    assert!(matches!(r, Err(WebhooksError::Invalid { .. })), "{r:?}");
    assert_eq!(o.mirror.heard(), heard, "nothing told");
    assert_eq!(outbox_types(s).await, ["NotificationCreated"]);
    s.close().await.expect("close");
    let o = open(h).await;
    assert_eq!(o.mirror.get(n.id), Some(n));
    o.store.close().await.expect("close");
}

pub async fn changing_a_missing_notification_is_not_found(h: &dyn Harness) {
    let o = open(h).await;
    let s = o.store.as_ref();
    create(s, "P", "slack").await;
    let update = s
        .update_notification(&key("Q"), "slack", Box::new(|_| Ok(())), &actor())
        .await;
    assert!(
        matches!(update, Err(WebhooksError::NotFound(_))),
        "{update:?}"
    );
    let delete = s.delete_notification(&key("P"), "teams", &actor()).await;
    assert!(
        matches!(delete, Err(WebhooksError::NotFound(_))),
        "{delete:?}"
    );
    s.close().await.expect("close");
}

pub async fn every_change_puts_its_event_in_the_outbox(h: &dyn Harness) {
    let o = open(h).await;
    let s = o.store.as_ref();
    create(s, "P", "slack").await;
    s.update_notification(&key("P"), "slack", set(|n| n.ordered = true), &actor())
        .await
        .expect("update");
    s.delete_notification(&key("P"), "slack", &actor())
        .await
        .expect("delete");
    assert_eq!(
        outbox_types(s).await,
        [
            "NotificationCreated",
            "NotificationUpdated",
            "NotificationDeleted"
        ]
    );
    let updated = &s.outbox(10).await.expect("outbox")[1];
    let e = cds_events_model::decode_stored(&updated.event).expect("decodes");
    assert_eq!(
        (e.project_key.as_str(), e.notification.as_str()),
        ("P", "slack")
    );
    assert_eq!(e.username, "alice");
    let payload: serde_json::Value =
        serde_json::from_str(e.payload.get()).expect("payload is json");
    assert_eq!(payload["ordered"], true, "the notification as changed");
    assert_eq!(
        payload["auth"]["headers"]["Authorization"],
        crate::model::MASK,
        "header values never leave masked"
    );
    s.close().await.expect("close");
}

pub async fn the_outbox_keeps_an_event_until_removed(h: &dyn Harness) {
    let o = open(h).await;
    for name in ["a", "b", "c"] {
        create(o.store.as_ref(), "P", name).await;
    }
    let first_two = o.store.outbox(2).await.expect("outbox");
    assert_eq!(first_two.len(), 2, "at most the limit, oldest first");
    o.store.close().await.expect("close");

    let o = open(h).await;
    let s = o.store.as_ref();
    assert_eq!(
        s.outbox(10).await.expect("outbox")[..2],
        first_two[..],
        "kept"
    );
    s.remove_from_outbox(first_two.iter().map(|e| e.id).collect())
        .await
        .expect("remove");
    let left = s.outbox(10).await.expect("outbox");
    assert_eq!(left.len(), 1);
    s.remove_from_outbox(vec![left[0].id])
        .await
        .expect("remove");
    s.close().await.expect("close");

    let o = open(h).await;
    assert!(o.store.outbox(10).await.expect("outbox").is_empty());
    o.store.close().await.expect("close");
}

pub async fn the_mirror_hears_every_committed_change_in_order(h: &dyn Harness) {
    let o = open(h).await;
    let s = o.store.as_ref();
    let a = create(s, "P", "a").await;
    let b = create(s, "P", "b").await;
    s.update_notification(&key("P"), "a", set(|n| n.enabled = false), &actor())
        .await
        .expect("update");
    s.delete_notification(&key("P"), "b", &actor())
        .await
        .expect("delete");
    assert_eq!(
        o.mirror.heard(),
        [
            Heard::Put(a.id),
            Heard::Put(b.id),
            Heard::Put(a.id),
            Heard::Removed(b.id)
        ]
    );
    assert_eq!(o.mirror.get(a.id).map(|n| n.enabled), Some(false));
    s.close().await.expect("close");
}

pub async fn a_key_rotation_keeps_every_value_readable(h: &dyn Harness) {
    let o = open(h).await;
    let s: &dyn NotificationStore = o.store.as_ref();
    let mut n = notification("P", "slack");
    n.previous = Some((SigningSecret::generate(), i64::MAX));
    let n = s
        .create_notification(n, 10, &actor())
        .await
        .expect("create");
    let resealed = s.rotate_key().await.expect("rotate");
    assert_eq!(resealed, 3, "headers, secret and previous secret");
    let after = create(s, "P", "after").await;
    s.close().await.expect("close");
    let o = open(h).await;
    assert_eq!(o.mirror.get(n.id), Some(n));
    assert_eq!(o.mirror.get(after.id), Some(after));
    o.store.close().await.expect("close");
}

pub async fn an_ed25519_signing_key_is_stored_sealed_and_read_back(h: &dyn Harness) {
    use cds_events_api::SignatureScheme;
    let o = open(h).await;
    let s: &dyn NotificationStore = o.store.as_ref();
    let mut n = notification("P", "signed");
    n.secret = SigningSecret::generate_for(SignatureScheme::Ed25519);
    // Switched from a shared secret: the old one still signs for a while.
    n.previous = Some((SigningSecret::generate(), i64::MAX));
    let n = s
        .create_notification(n, 10, &actor())
        .await
        .expect("create");
    assert_eq!(n.out().signature, SignatureScheme::Ed25519);
    // Never in clear in the event announcing it.
    let outbox = s.outbox(10).await.expect("outbox");
    assert!(!outbox[0].event.contains(n.secret.expose()));
    assert_eq!(
        s.rotate_key().await.expect("rotate"),
        3,
        "headers, secret and previous"
    );
    s.close().await.expect("close");
    let o = open(h).await;
    let back = o.mirror.get(n.id).expect("stored");
    assert_eq!(back.secret.scheme(), SignatureScheme::Ed25519);
    assert_eq!(back, n, "the same key pair, the previous secret too");
    assert_eq!(
        back.secret.sign("msg_1", 1, b"{}"),
        n.secret.sign("msg_1", 1, b"{}")
    );
    o.store.close().await.expect("close");
}
