//! The console: a web page served from the binary itself, on the API's
//! origin. `GET /` and `/console/…` (deep links to its views) answer its
//! `index.html`; its files, embedded at compile time from
//! `crates/server/console/` (no bundler, no node: plain ES modules and the
//! vendored Preact and htm, see `console/vendor.sh`), are served under
//! `/console/assets/<version>/…`, where `<version>` is a hash of all of
//! them: a changed file is a new URL, so each may be cached for a year.
//! `index.html` itself is revalidated on each load (ETag).
//!
//! Every answer carries a Content-Security-Policy that allows scripts,
//! styles and connections to this origin only, and no inline script.
//! [`session`] is the sign-in. This module must never serve a file that is
//! not in [`FILES`], nor answer an asset URL of another version with
//! today's content.

pub mod session;

use crate::state::AppState;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::LazyLock;

/// The console's files: name under the assets URL, media type, content.
const FILES: &[(&str, &str, &[u8])] = &[
    ("app.js", JS, include_bytes!("../../../console/app.js")),
    ("api.js", JS, include_bytes!("../../../console/api.js")),
    ("tail.js", JS, include_bytes!("../../../console/tail.js")),
    (
        "detail.js",
        JS,
        include_bytes!("../../../console/detail.js"),
    ),
    (
        "filters.js",
        JS,
        include_bytes!("../../../console/filters.js"),
    ),
    (
        "stream.js",
        JS,
        include_bytes!("../../../console/stream.js"),
    ),
    ("table.js", JS, include_bytes!("../../../console/table.js")),
    (
        "explorer.js",
        JS,
        include_bytes!("../../../console/explorer.js"),
    ),
    (
        "timeline.js",
        JS,
        include_bytes!("../../../console/timeline.js"),
    ),
    (
        "notifications.js",
        JS,
        include_bytes!("../../../console/notifications.js"),
    ),
    (
        "deliveries.js",
        JS,
        include_bytes!("../../../console/deliveries.js"),
    ),
    (
        "notification_form.js",
        JS,
        include_bytes!("../../../console/notification_form.js"),
    ),
    (
        "overview.js",
        JS,
        include_bytes!("../../../console/overview.js"),
    ),
    (
        "tokens.js",
        JS,
        include_bytes!("../../../console/tokens.js"),
    ),
    (
        "style.css",
        CSS,
        include_bytes!("../../../console/style.css"),
    ),
    (
        "vendor/preact.js",
        JS,
        include_bytes!("../../../console/vendor/preact.js"),
    ),
    (
        "vendor/hooks.js",
        JS,
        include_bytes!("../../../console/vendor/hooks.js"),
    ),
    (
        "vendor/htm.js",
        JS,
        include_bytes!("../../../console/vendor/htm.js"),
    ),
];
const INDEX: &str = include_str!("../../../console/index.html");
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Only this origin: scripts (no inline, no eval), styles, fetches and
/// event streams; images only inline (`data:`, the empty favicon).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A file as served: its bytes, gzipped, and its ETag.
struct Served {
    media: &'static str,
    plain: Vec<u8>,
    gzip: Vec<u8>,
    etag: HeaderValue,
}

impl Served {
    fn new(media: &'static str, plain: Vec<u8>) -> Served {
        let hash = hex(&Sha256::digest(&plain)[..12]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&plain).expect("gzip into memory");
        Served {
            media,
            gzip: gz.finish().expect("gzip into memory"),
            plain,
            etag: HeaderValue::from_str(&format!("\"{hash}\"")).expect("hex is a header value"),
        }
    }
}

struct Console {
    version: String,
    index: Served,
    files: Vec<(&'static str, Served)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Built once, on the first request.
static CONSOLE: LazyLock<Console> = LazyLock::new(|| {
    let mut all = Sha256::new();
    for (name, _, bytes) in FILES {
        all.update(name.as_bytes());
        all.update(bytes);
    }
    let version = hex(&all.finalize()[..8]);
    let index = INDEX.replace("{{ASSETS}}", &format!("/console/assets/{version}"));
    Console {
        index: Served::new("text/html; charset=utf-8", index.into_bytes()),
        files: FILES
            .iter()
            .map(|(name, media, bytes)| (*name, Served::new(media, bytes.to_vec())))
            .collect(),
        version,
    }
});

/// The console's pages and files (public: signing in is a view of its own).
pub fn public_router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/console", get(index))
        .route("/console/{*view}", get(index))
        .route("/console/assets/{version}/{*file}", get(asset))
        .route(
            "/v2/auth/session",
            get(session::current).post(session::sign_in),
        )
}

/// Signing out (behind the default authentication, CSRF-checked).
pub fn router() -> Router<AppState> {
    Router::new().route("/v2/auth/session", axum::routing::delete(session::sign_out))
}

async fn index(headers: HeaderMap) -> Response {
    serve(&CONSOLE.index, &headers, "no-cache")
}

async fn asset(Path((version, file)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let c = &*CONSOLE;
    match c.files.iter().find(|(name, _)| *name == file) {
        Some((_, served)) if version == c.version => {
            serve(served, &headers, "public, max-age=31536000, immutable")
        }
        _ => crate::error::ApiError::not_found("no such console file").into_response(),
    }
}

fn serve(f: &Served, req: &HeaderMap, cache: &'static str) -> Response {
    let gzip = req
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.split(';').next().unwrap_or("").trim() == "gzip");
    let fresh = req
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == f.etag.to_str().unwrap_or_default() || t.trim() == "*");
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        let mut r = f.gzip.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        f.plain.clone().into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(f.media));
    h.insert(header::ETAG, f.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}
