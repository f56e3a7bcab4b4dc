//! Project notifications (webhooks) and their deliveries:
//! `/v2/project/{project}/notification…`.

use crate::{Client, ClientError};
use cds_events_api::{
    CreatedNotificationOut, DeliveriesQuery, DeliveryDetail, DeliveryOut, DeliveryPage,
    NotificationHealthOut, NotificationIn, NotificationOut, PingOut, PreviewOut, PublicKeyOut,
    RedeliveredOut, SecretOut,
};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;

/// The path of a project's notifications, or of one, then `more`.
fn at<'a>(project: &'a str, name: Option<&'a str>, more: &[&'a str]) -> Vec<&'a str> {
    let mut p = vec!["v2", "project", project, "notification"];
    p.extend(name);
    p.extend_from_slice(more);
    p
}

impl Client {
    /// A project's notifications (header values masked).
    pub async fn notifications(&self, project: &str) -> Result<Vec<NotificationOut>, ClientError> {
        Self::read(self.req_at(Method::GET, &at(project, None, &[]))?).await
    }

    /// One notification (header values masked).
    pub async fn notification(
        &self,
        project: &str,
        name: &str,
    ) -> Result<NotificationOut, ClientError> {
        Self::read(self.req_at(Method::GET, &at(project, Some(name), &[]))?).await
    }

    /// Creates a notification; the answer carries its signing secret, once.
    pub async fn create_notification(
        &self,
        project: &str,
        input: &NotificationIn,
    ) -> Result<CreatedNotificationOut, ClientError> {
        Self::read(
            self.req_at(Method::POST, &at(project, None, &[]))?
                .json(input),
        )
        .await
    }

    /// Replaces a notification; a header value of `***` keeps the stored one.
    pub async fn update_notification(
        &self,
        project: &str,
        name: &str,
        input: &NotificationIn,
    ) -> Result<NotificationOut, ClientError> {
        Self::read(
            self.req_at(Method::PUT, &at(project, Some(name), &[]))?
                .json(input),
        )
        .await
    }

    /// Deletes a notification and its pending deliveries.
    pub async fn delete_notification(&self, project: &str, name: &str) -> Result<(), ClientError> {
        Self::done(self.req_at(Method::DELETE, &at(project, Some(name), &[]))?).await
    }

    /// Turns a notification on (pending deliveries resume) or off.
    pub async fn set_notification_enabled(
        &self,
        project: &str,
        name: &str,
        enabled: bool,
    ) -> Result<NotificationOut, ClientError> {
        let action = if enabled { "enable" } else { "disable" };
        Self::read(self.req_at(Method::POST, &at(project, Some(name), &[action]))?).await
    }

    /// The signing secret(s) receivers should accept now.
    pub async fn notification_secret(
        &self,
        project: &str,
        name: &str,
    ) -> Result<SecretOut, ClientError> {
        Self::read(self.req_at(Method::GET, &at(project, Some(name), &["secret"]))?).await
    }

    /// A new signing secret; the old one stays valid for the configured overlap.
    pub async fn rotate_notification_secret(
        &self,
        project: &str,
        name: &str,
    ) -> Result<SecretOut, ClientError> {
        let path = at(project, Some(name), &["secret", "rotate"]);
        Self::read(self.req_at(Method::POST, &path)?).await
    }

    /// Which of the project's notifications an example event (its JSON, as
    /// it would be published) would reach; nothing is stored or sent.
    pub async fn preview_notifications(
        &self,
        project: &str,
        event_json: &str,
    ) -> Result<PreviewOut, ClientError> {
        Self::read(
            self.req_at(Method::POST, &at(project, Some("preview"), &[]))?
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(event_json.to_owned()),
        )
        .await
    }

    /// The public key(s) of a notification signed with ed25519, for its
    /// receivers (the previous one too during a rotation).
    pub async fn notification_public_key(
        &self,
        project: &str,
        name: &str,
    ) -> Result<PublicKeyOut, ClientError> {
        Self::read(self.req_at(Method::GET, &at(project, Some(name), &["public-key"]))?).await
    }

    /// Sends a signed ping now; how the endpoint answered.
    pub async fn test_notification(
        &self,
        project: &str,
        name: &str,
    ) -> Result<PingOut, ClientError> {
        Self::read(self.req_at(Method::POST, &at(project, Some(name), &["test"]))?).await
    }

    /// A notification's last 24 hours: attempts, success rate, p95 latency,
    /// deliveries pending and failed.
    pub async fn notification_health(
        &self,
        project: &str,
        name: &str,
    ) -> Result<NotificationHealthOut, ClientError> {
        Self::read(self.req_at(Method::GET, &at(project, Some(name), &["health"]))?).await
    }

    /// A page of a notification's deliveries, newest first.
    pub async fn deliveries(
        &self,
        project: &str,
        name: &str,
        query: &DeliveriesQuery,
    ) -> Result<DeliveryPage, ClientError> {
        let path = at(project, Some(name), &["deliveries"]);
        Self::read(self.req_at(Method::GET, &path)?.query(query)).await
    }

    /// One delivery with every attempt.
    pub async fn delivery(
        &self,
        project: &str,
        name: &str,
        id: &str,
    ) -> Result<DeliveryDetail, ClientError> {
        let path = at(project, Some(name), &["deliveries", id]);
        Self::read(self.req_at(Method::GET, &path)?).await
    }

    /// Sends one delivery again (same `webhook-id`, fresh attempt budget).
    pub async fn redeliver(
        &self,
        project: &str,
        name: &str,
        id: &str,
    ) -> Result<DeliveryOut, ClientError> {
        let path = at(project, Some(name), &["deliveries", id, "redeliver"]);
        Self::read(self.req_at(Method::POST, &path)?).await
    }

    /// Sends again every failed delivery created since `since`.
    pub async fn redeliver_failed_since(
        &self,
        project: &str,
        name: &str,
        since: DateTime<Utc>,
    ) -> Result<RedeliveredOut, ClientError> {
        let since = since.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let path = at(project, Some(name), &["redeliver"]);
        Self::read(self.req_at(Method::POST, &path)?.query(&[("since", since)])).await
    }

    /// Re-encrypts every stored header and secret under a new master key (admin).
    pub async fn rotate_webhooks_key(&self) -> Result<(), ClientError> {
        let path = ["v2", "admin", "webhooks", "rotate-key"];
        Self::done(self.req_at(Method::POST, &path)?).await
    }
}
