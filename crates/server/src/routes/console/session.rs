//! `/v2/auth/session`: the console's sign-in, who is signed in, sign-out.
//!
//! Signing in exchanges a token, once, for a session cookie (HttpOnly: no
//! script reads it; SameSite=Strict: no other site's page sends it;
//! expiring; sealed by the token, so revoking the token ends it, see
//! `cds_events_auth::Session`) and a CSRF value the page keeps in memory
//! and sends back in `X-CSRF-Token` (checked in `crate::auth`).
//! The token itself is never put in the cookie, never logged.

use crate::auth::{SESSION_COOKIE, session_cookie, unauthorized};
use crate::error::{ApiError, ErrorBody, NoToken};
use crate::state::AppState;
use axum::Json;
use axum::extract::{State, rejection::JsonRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cds_events_api::{SessionIn, SessionOut};
use cds_events_auth::Session;

fn out(s: &Session) -> SessionOut {
    SessionOut {
        token_id: s.principal.token_id.clone(),
        name: s.principal.name.clone(),
        grants: s.principal.grants.iter().map(ToString::to_string).collect(),
        expires_at: s.expires_at,
        csrf: s.csrf.clone(),
    }
}

/// The `Set-Cookie` value: `value` for `max_age` seconds (0: remove it).
fn cookie(st: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if st.config.tls.cert.is_some() {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("a session value is cookie-safe")
}

/// A sign-in sent by a page of another origin is refused: no one can sign
/// a visitor in under a token of theirs. Browsers send `Origin` on every
/// POST; a client without one (curl) is not a page.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    origin_host.is_some() && origin_host == host
}

/// Sign in: exchange a token for a session cookie.
#[utoipa::path(post, path = "/v2/auth/session", tag = "auth", request_body = SessionIn,
    security(()),
    responses(
        (status = 200, description = "signed in; the cookie is set, `csrf` goes in `X-CSRF-Token`", body = SessionOut),
        (status = 400, description = "no token in the body", body = ErrorBody),
        (status = 401, description = "an unknown, expired or revoked token", body = ErrorBody),
        (status = 403, description = "sent by a page of another origin", body = ErrorBody),
    ))]
pub async fn sign_in(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<SessionIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    if !same_origin(&headers) {
        return Err(crate::auth::forbidden(
            "a sign-in from a page of another origin",
        ));
    }
    let Json(input) = body?;
    let Some(session) = st
        .auth
        .open_session(input.token.trim(), st.config.auth.session_ttl)
        .await?
    else {
        return Ok(unauthorized());
    };
    tracing::info!(token_id = %session.principal.token_id, "console session opened");
    let max_age = (session.expires_at - chrono::Utc::now())
        .num_seconds()
        .max(0);
    let mut resp = Json(out(&session)).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::SET_COOKIE, cookie(&st, &session.value, max_age));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Who is signed in, with the session's CSRF value (a page that reloads
/// gets it again here); 204 when no valid session cookie came (public, so
/// that a page asking whether to show its sign-in form is not an error).
#[utoipa::path(get, path = "/v2/auth/session", tag = "auth",
    security(()),
    responses(
        (status = 200, description = "the session", body = SessionOut),
        (status = 204, description = "not signed in (no cookie, or one that expired or whose token was revoked)"),
    ))]
pub async fn current(State(st): State<AppState>, headers: HeaderMap) -> Response {
    match session_cookie(&headers).and_then(|v| st.auth.session(v)) {
        Some(s) => ([(header::CACHE_CONTROL, "no-store")], Json(out(&s))).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Sign out: the browser forgets the cookie. With the cookie, the CSRF
/// header is checked by `crate::auth` before this runs. (A session is sealed, not
/// stored: a copy kept elsewhere lasts until its expiry or its token's
/// revocation.)
#[utoipa::path(delete, path = "/v2/auth/session", tag = "auth",
    params(("X-CSRF-Token" = Option<String>, Header,
        description = "the session's CSRF value: required when signed in by the cookie, not with a bearer token")),
    responses(
        (status = 204, description = "signed out"),
        NoToken,
        (status = 403, description = "no or a wrong CSRF value", body = ErrorBody),
    ))]
pub async fn sign_out(State(st): State<AppState>) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie(&st, "", 0));
    resp
}
