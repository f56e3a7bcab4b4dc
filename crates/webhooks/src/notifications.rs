//! What a change of a notification does: create, replace, delete, enable or
//! disable, and the signing secrets. Each change is validated here, made by
//! the store in one transaction with its Notification event (the outbox),
//! then the event goes to the log.
//!
//! Reads come from the registry (memory), which the store keeps in step;
//! nothing here touches the database but through the store's named
//! operations.

use crate::engine::Inner;
use crate::error::WebhooksError;
use crate::model::{
    self, Actor, CreatedNotificationOut, NotificationIn, NotificationOut, PreviousPublicKey,
    PreviousSecret, PublicKey, PublicKeyOut, SecretOut,
};
use crate::registry::Notification;
use crate::signing::SigningSecret;
use crate::store::{Edit, NotificationId, NotificationRecord};
use crate::time::{self, now_ms};
use base64::Engine;
use cds_events_api::SignatureScheme;
use cds_events_model::ProjectKey;
use std::sync::Arc;

impl Inner {
    /// See [`crate::Webhooks::list`].
    pub(crate) fn list(&self, project: &ProjectKey) -> Vec<NotificationOut> {
        self.registry
            .list(project)
            .iter()
            .map(|n| n.out())
            .collect()
    }

    /// See [`crate::Webhooks::create`].
    pub(crate) async fn create(
        self: &Arc<Self>,
        project: &ProjectKey,
        input: NotificationIn,
        actor: &Actor,
    ) -> Result<CreatedNotificationOut, WebhooksError> {
        model::validate_project(project)?;
        let v = model::validate(input)?;
        let headers = model::resolve_masked(v.headers, &Default::default())?;
        let secret = SigningSecret::generate_for(v.signature.unwrap_or_default());
        // What the receiver needs, never an Ed25519 private key.
        let text = secret.receiver_key();
        let n = NotificationRecord {
            id: NotificationId(0),
            uid: uuid::Uuid::now_v7().to_string(),
            project: project.to_owned(),
            name: v.name,
            url: v.url.to_string(),
            filters: v.filters,
            headers,
            secret,
            previous: None,
            enabled: v.enabled.unwrap_or(true),
            ordered: v.ordered.unwrap_or(false),
            ordered_by: v.ordered_by,
            format: v.format.unwrap_or_default(),
            content_mode: v.content_mode.unwrap_or_default(),
            disabled_reason: None,
            failing_since: None,
            last_modified: now_ms(),
        };
        // Refused before anything is stored if it does not compile.
        Notification::build(n.clone())?;
        let n = self
            .store
            .create_notification(n, self.config.max_per_project, actor)
            .await?;
        self.start_workers();
        self.flush_outbox().await;
        Ok(CreatedNotificationOut {
            notification: n.out(),
            secret: text,
        })
    }

    /// See [`crate::Webhooks::update`].
    pub(crate) async fn update(
        &self,
        project: &ProjectKey,
        name: &str,
        input: NotificationIn,
        actor: &Actor,
    ) -> Result<NotificationOut, WebhooksError> {
        let v = model::validate(input)?;
        let overlap = time::millis(self.config.secret_overlap);
        let n = self
            .change(project, name, actor, move |f: &mut NotificationRecord| {
                f.headers = model::resolve_masked(v.headers, &f.headers)?;
                f.name = v.name;
                f.url = v.url.to_string();
                f.filters = v.filters;
                // `ordered_by` sets the per-key mode; `ordered` alone
                // (either way) leaves it.
                if v.ordered_by.is_some() {
                    f.ordered = false;
                    f.ordered_by = v.ordered_by;
                } else if let Some(ordered) = v.ordered {
                    f.ordered = ordered;
                    f.ordered_by = None;
                }
                f.format = v.format.unwrap_or(f.format);
                f.content_mode = v.content_mode.unwrap_or(f.content_mode);
                if let Some(scheme) = v.signature.filter(|s| *s != f.secret.scheme()) {
                    // Another scheme is a rotation to a key of that scheme.
                    rotate(f, scheme, now_ms() + overlap);
                }
                set_enabled_fields(f, v.enabled.unwrap_or(f.enabled));
                Ok(())
            })
            .await?;
        Ok(n.out())
    }

    /// See [`crate::Webhooks::delete`].
    pub(crate) async fn delete(
        &self,
        project: &ProjectKey,
        name: &str,
        actor: &Actor,
    ) -> Result<(), WebhooksError> {
        self.store.delete_notification(project, name, actor).await?;
        self.flush_outbox().await;
        Ok(())
    }

    /// See [`crate::Webhooks::set_enabled`].
    pub(crate) async fn set_enabled(
        &self,
        project: &ProjectKey,
        name: &str,
        enabled: bool,
        actor: &Actor,
    ) -> Result<NotificationOut, WebhooksError> {
        let n = self
            .change(project, name, actor, move |f: &mut NotificationRecord| {
                set_enabled_fields(f, enabled);
                Ok(())
            })
            .await?;
        Ok(n.out())
    }

    /// See [`crate::Webhooks::secret`].
    pub(crate) fn secret(
        &self,
        project: &ProjectKey,
        name: &str,
    ) -> Result<SecretOut, WebhooksError> {
        let n = self.find(project, name)?;
        Ok(secret_out(&n.secret, n.previous.as_ref(), now_ms()))
    }

    /// See [`crate::Webhooks::public_key`].
    pub(crate) fn public_key(
        &self,
        project: &ProjectKey,
        name: &str,
    ) -> Result<PublicKeyOut, WebhooksError> {
        let n = self.find(project, name)?;
        let Some(current) = public_key(&n.secret) else {
            return Err(WebhooksError::Unsupported(format!(
                "notification {name} is signed with a shared secret (signature: symmetric); \
                 only an ed25519 notification has a public key"
            )));
        };
        let now = now_ms();
        Ok(PublicKeyOut {
            current,
            previous: n
                .previous
                .as_ref()
                .filter(|(_, until)| *until > now)
                .and_then(|(s, until)| {
                    Some(PreviousPublicKey {
                        key: public_key(s)?,
                        valid_until: time::to_datetime(*until),
                    })
                }),
        })
    }

    /// See [`crate::Webhooks::rotate_secret`].
    pub(crate) async fn rotate_secret(
        &self,
        project: &ProjectKey,
        name: &str,
        actor: &Actor,
    ) -> Result<SecretOut, WebhooksError> {
        let overlap = time::millis(self.config.secret_overlap);
        let now = now_ms();
        let n = self
            .change(project, name, actor, move |f: &mut NotificationRecord| {
                rotate(f, f.secret.scheme(), now + overlap);
                Ok(())
            })
            .await?;
        Ok(secret_out(&n.secret, n.previous.as_ref(), now))
    }

    /// Applies `edit` to a notification in the store (with its
    /// NotificationUpdated), then sends the event to the log.
    async fn change(
        &self,
        project: &ProjectKey,
        name: &str,
        actor: &Actor,
        edit: impl FnOnce(&mut NotificationRecord) -> Result<(), WebhooksError> + Send + 'static,
    ) -> Result<NotificationRecord, WebhooksError> {
        let edit: Edit = Box::new(move |f| {
            edit(f)?;
            f.last_modified = now_ms();
            // Refused before anything is stored if it does not compile.
            Notification::build(f.clone())?;
            Ok(())
        });
        let n = self
            .store
            .update_notification(project, name, edit, actor)
            .await?;
        self.flush_outbox().await;
        Ok(n)
    }
}

/// An Ed25519 key's public key in its three spellings.
fn public_key(s: &SigningSecret) -> Option<PublicKey> {
    Some(PublicKey {
        public_key: s.receiver_key(),
        base64: base64::engine::general_purpose::STANDARD.encode(s.public_key()?),
        pem: s.public_key_pem()?,
    })
}

/// A new key of `scheme`; the current one still signs until `until`.
fn rotate(f: &mut NotificationRecord, scheme: SignatureScheme, until: i64) {
    f.previous = Some((f.secret.clone(), until));
    f.secret = SigningSecret::generate_for(scheme);
}

fn set_enabled_fields(f: &mut NotificationRecord, enabled: bool) {
    if enabled && !f.enabled {
        f.disabled_reason = None;
        f.failing_since = None;
    }
    f.enabled = enabled;
}

/// The keys to accept at `now`: the current one, and the previous one
/// while its overlap lasts (for Ed25519, their public keys).
fn secret_out(
    secret: &SigningSecret,
    previous: Option<&(SigningSecret, i64)>,
    now: i64,
) -> SecretOut {
    SecretOut {
        secret: secret.receiver_key(),
        previous: previous
            .filter(|(_, until)| *until > now)
            .map(|(s, until)| PreviousSecret {
                secret: s.receiver_key(),
                valid_until: time::to_datetime(*until),
            }),
    }
}
