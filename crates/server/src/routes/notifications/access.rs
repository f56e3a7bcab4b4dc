//! Who may do what to a project's notifications, checked while the request
//! is extracted: a handler names the right it needs in its signature
//! ([`OnProject<Read>`], [`OnNotification<Manage>`]), so no handler can
//! forget to check it.
//!
//! Reading (list, show, deliveries) needs `read:PROJECT`; anything that
//! changes a notification, shows its secret or sends needs
//! `manage-notifications:PROJECT`.

use crate::auth::forbidden;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Extension;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use cds_events_auth::Principal;
use cds_events_model::{EventScope, ProjectKey};
use cds_events_webhooks::Actor;
use serde::Deserialize;
use std::marker::PhantomData;
use std::sync::Arc;
use utoipa::IntoParams;

/// A right over a project's notifications.
pub trait Right: Send + Sync {
    fn check(caller: &Principal, project: &ProjectKey) -> Result<(), ApiError>;
}

/// `read:PROJECT`.
#[derive(Debug)]
pub enum Read {}

impl Right for Read {
    fn check(caller: &Principal, project: &ProjectKey) -> Result<(), ApiError> {
        if caller.can_read(&EventScope::Project(project.clone())) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "this token may not read project {project}"
            )))
        }
    }
}

/// `manage-notifications:PROJECT`.
#[derive(Debug)]
pub enum Manage {}

impl Right for Manage {
    fn check(caller: &Principal, project: &ProjectKey) -> Result<(), ApiError> {
        if caller.can_manage_notifications(project) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "this token may not manage the notifications of project {project} (manage-notifications:{project})"
            )))
        }
    }
}

/// `{projectKey}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    #[param(rename = "projectKey")]
    pub project: String,
}

/// `{projectKey}/notification/{name}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NotificationPath {
    #[param(rename = "projectKey")]
    pub project: String,
    /// The notification's name.
    pub name: String,
}

/// `…/deliveries/{id}`: a delivery of the notification in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DeliveryPath {
    /// The delivery id (`msg_…`, the `webhook-id` receivers saw).
    pub id: String,
}

/// A route on a project's notifications, by a caller with the right `R`.
#[derive(Debug)]
pub struct OnProject<R> {
    pub caller: Arc<Principal>,
    pub project: ProjectKey,
    right: PhantomData<R>,
}

/// A route on one notification, by a caller with the right `R` over its
/// project.
#[derive(Debug)]
pub struct OnNotification<R> {
    pub caller: Arc<Principal>,
    pub project: ProjectKey,
    pub name: String,
    right: PhantomData<R>,
}

/// The caller (put there by `require_principal`), the path and its project
/// key, then the right. A rejection is the extractor's own answer, as it
/// was when the handlers took `Extension` and `Path` themselves.
async fn extract<P, R>(
    parts: &mut Parts,
    st: &AppState,
    project: impl FnOnce(&P) -> &str,
) -> Result<(Arc<Principal>, P, ProjectKey), Response>
where
    P: serde::de::DeserializeOwned + Send,
    R: Right,
{
    let Extension(caller) = Extension::<Arc<Principal>>::from_request_parts(parts, st)
        .await
        .map_err(IntoResponse::into_response)?;
    let Path(path) = Path::<P>::from_request_parts(parts, st)
        .await
        .map_err(IntoResponse::into_response)?;
    let key = ProjectKey::new(project(&path))
        .map_err(|e| ApiError::bad_param("projectKey", e.to_string()).into_response())?;
    R::check(&caller, &key).map_err(IntoResponse::into_response)?;
    Ok((caller, path, key))
}

impl<R: Right> FromRequestParts<AppState> for OnProject<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let (caller, _, project) = extract::<ProjectPath, R>(parts, st, |p| &p.project).await?;
        Ok(OnProject {
            caller,
            project,
            right: PhantomData,
        })
    }
}

impl<R: Right> FromRequestParts<AppState> for OnNotification<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Response> {
        let (caller, p, project) =
            extract::<NotificationPath, R>(parts, st, |p| &p.project).await?;
        Ok(OnNotification {
            caller,
            project,
            name: p.name,
            right: PhantomData,
        })
    }
}

/// Who made a change, as the Notification event it emits records it.
pub fn actor(p: &Principal) -> Actor {
    Actor {
        user_id: p.token_id.clone(),
        username: p.name.clone(),
    }
}
