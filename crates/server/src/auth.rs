//! Authentication on the router's default path: every route that is not
//! explicitly public goes through [`require_principal`], which puts the
//! caller's [`Principal`] in the request; handlers then ask it what it may do.
//!
//! A caller is known by its bearer token, a single-use ticket (a browser's
//! GET) or a console session cookie. A request authenticated by the cookie
//! alone that may change something (any method but GET, HEAD and OPTIONS)
//! must also carry the session's CSRF value in [`CSRF_HEADER`]: a page of
//! another origin can make the browser send the cookie (SameSite=Strict
//! already stops that from other sites, not from a sibling subdomain or an
//! old browser) but cannot read the CSRF value nor set a custom header
//! without a CORS preflight, which this server never grants.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cds_events_auth::{Principal, Session};
use std::sync::Arc;

/// The cookie that carries a console session.
pub const SESSION_COOKIE: &str = "cds_events_session";
/// The header that carries a console session's CSRF value.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// 401, the same for a missing, malformed, unknown, expired or revoked token.
pub fn unauthorized() -> Response {
    let mut resp = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid bearer token is required",
    )
    .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

/// 403 for a valid token without the right. The message names what was
/// asked, never whether it exists.
pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A `ticket=` query parameter: how a browser (which cannot set headers on a
/// WebSocket or an EventSource) authenticates a GET.
fn ticket(req: &Request) -> Option<String> {
    if req.method() != axum::http::Method::GET {
        return None;
    }
    req.uri()
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("ticket=").map(str::to_owned))
}

/// The console session cookie's value, if the request has one.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == SESSION_COOKIE).then_some(v)
        })
}

/// A state-changing request made with the session cookie but without the
/// session's CSRF value.
struct CsrfRefused;

impl IntoResponse for CsrfRefused {
    fn into_response(self) -> Response {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            format!("a request signed in by the session cookie needs the {CSRF_HEADER} header given at sign-in"),
        )
        .into_response()
    }
}

/// The session of the request's cookie; a state-changing request without
/// the session's CSRF value is refused (403 `csrf`).
fn cookie_session(st: &AppState, req: &Request) -> Result<Option<Session>, CsrfRefused> {
    let Some(session) = session_cookie(req.headers()).and_then(|v| st.auth.session(v)) else {
        return Ok(None);
    };
    let safe = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !safe && !sent.is_some_and(|c| session.csrf_matches(c)) {
        return Err(CsrfRefused);
    }
    Ok(Some(session))
}

pub async fn require_principal(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let principal = match bearer(&req) {
        Some(token) => st.auth.authenticate_or_look_up(token).await,
        None => match ticket(&req) {
            Some(t) => st.auth.redeem_ticket(&t).await,
            None => match cookie_session(&st, &req) {
                Ok(Some(session)) => {
                    let p = Arc::clone(&session.principal);
                    req.extensions_mut().insert(session);
                    Ok(Some(p))
                }
                Ok(None) => Ok(None),
                Err(refused) => return refused.into_response(),
            },
        },
    };
    // The token store away (a look-up that could not be made) is a 503 with
    // `Retry-After`, never a 401: the token may well be valid.
    let principal = match principal {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    match principal {
        Some(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        None => unauthorized(),
    }
}

/// The caller, as established by [`require_principal`].
pub type Caller = axum::Extension<std::sync::Arc<Principal>>;

/// An admin caller: a handler that takes one is admin-only, and says so in
/// its signature; anyone else gets 403 before it runs.
#[derive(Debug)]
pub struct Admin(pub std::sync::Arc<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, Response> {
        let axum::Extension(caller) = Caller::from_request_parts(parts, st)
            .await
            .map_err(IntoResponse::into_response)?;
        if caller.is_admin() {
            Ok(Admin(caller))
        } else {
            Err(forbidden("this needs an admin token").into_response())
        }
    }
}
