//! A receiver answering `410 Gone` wants no more calls: its notification is
//! disabled at once, announced like any other change.

use super::{create, webhook_server};
use crate::job_event;
use crate::receiver::Receiver;
use serde_json::json;
use std::time::Duration;

/// One 410 is one call: the delivery fails without a retry, the
/// notification is disabled with the reason, a NotificationUpdated is in
/// the log, and a later event is not sent to it.
#[test]
fn a_410_gone_disables_the_notification_at_once() {
    let s = webhook_server().start();
    let rx = Receiver::with(|_| Some((410, Duration::ZERO)));
    create(
        &s,
        "PROJ",
        json!({"name": "left", "webhook_url": rx.url, "filters": {"jobs": {"event": ["RunJobEnded"]}}}),
    );
    s.post_json(&job_event("PROJ", 1));
    rx.wait_for(1, Duration::from_secs(10));
    crate::eventually("the notification disabled", || {
        let (_, n) = s.get("/v2/project/PROJ/notification/left");
        n["enabled"] == false
    });
    let (_, n) = s.get("/v2/project/PROJ/notification/left");
    assert!(
        n["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("410 Gone")),
        "{n}"
    );
    let (_, page) = s.get("/v2/project/PROJ/notification/left/deliveries");
    assert_eq!(page["deliveries"][0]["status"], "failed", "{page}");
    assert_eq!(page["deliveries"][0]["attempts"], 1, "{page}");
    crate::eventually("a NotificationUpdated by the system", || {
        s.query_all("&family=Notification")
            .iter()
            .any(|(_, e)| e["type"] == "NotificationUpdated" && e["notification"] == "left")
    });
    // A later event is not delivered to it (a disabled notification takes
    // no new event): once a witness has it, the dispatcher is past it.
    let witness = Receiver::ok();
    create(
        &s,
        "PROJ",
        json!({"name": "witness", "webhook_url": witness.url, "filters": {"jobs": {"event": ["RunJobEnded"]}}}),
    );
    s.post_json(&job_event("PROJ", 2));
    witness.wait_for(1, Duration::from_secs(10));
    let (_, page) = s.get("/v2/project/PROJ/notification/left/deliveries");
    assert_eq!(
        page["deliveries"].as_array().map(Vec::len),
        Some(1),
        "{page}"
    );
    assert_eq!(rx.count(), 1, "never called again");
}
