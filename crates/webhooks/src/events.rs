//! The Notification events a change of a notification emits
//! (`NotificationCreated`, `NotificationUpdated`, `NotificationDeleted`),
//! built one way for the engine's changes and for the store's automatic
//! disabling. Building an event never stores or sends it: it goes to the
//! outbox with its change.

use crate::error::WebhooksError;
use crate::model::{Actor, NotificationOut};
use cds_events_model::{EventType, FullEvent, NotificationEvent, Payload};

/// The event of type `t` announcing the notification as `out` shows it,
/// made by `actor`.
pub(crate) fn notification_event(
    t: EventType,
    out: &NotificationOut,
    actor: &Actor,
) -> Result<FullEvent, WebhooksError> {
    let payload = Payload::from_value(out).map_err(|source| WebhooksError::Encode {
        what: "the event payload",
        source,
    })?;
    NotificationEvent {
        payload: Some(payload),
        project_key: out.project_key.clone(),
        notification: out.name.clone(),
        user_id: actor.user_id.clone(),
        username: actor.username.clone(),
        ..Default::default()
    }
    .into_event(t)
    .map_err(|e| WebhooksError::invalid(e.field.unwrap_or_default(), e.message))
}
