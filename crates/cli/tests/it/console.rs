//! The console as HTTP sees it: its page and files (policy, caching,
//! compression) and its session (cookie flags, CSRF, expiry, revocation).
//! What a browser does with them is in `console_browser.rs`.

use crate::{ADMIN, TestServer};
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// A client without a token: only what it sends by hand.
fn bare() -> Client {
    crate::client_with_token(None)
}

fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Signs in with `token`: the `Set-Cookie` line and the answer.
fn sign_in(s: &TestServer, token: &str) -> (String, Value) {
    let r = bare()
        .post(s.url("/v2/auth/session"))
        .json(&json!({"token": token}))
        .send()
        .expect("sign in");
    assert_eq!(r.status(), 200);
    let set = header(&r, "set-cookie");
    (set, r.json().expect("json"))
}

/// The `name=value` part of a `Set-Cookie` line, as a `Cookie` header.
fn cookie_of(set_cookie: &str) -> HeaderMap {
    let pair = set_cookie.split(';').next().expect("pair").to_owned();
    let mut h = HeaderMap::new();
    h.insert("cookie", HeaderValue::from_str(&pair).expect("value"));
    h
}

fn get_with(s: &TestServer, path: &str, h: &HeaderMap) -> u16 {
    bare()
        .get(s.url(path))
        .headers(h.clone())
        .send()
        .expect("get")
        .status()
        .as_u16()
}

#[test]
fn the_page_is_served_under_a_strict_policy_and_its_files_are_cached_by_version() {
    let s = TestServer::start();
    for path in ["/", "/console/tail", "/console/events/abc"] {
        let r = bare().get(s.url(path)).send().expect("page");
        assert_eq!(r.status(), 200, "{path}");
        assert!(header(&r, "content-type").starts_with("text/html"));
        let csp = header(&r, "content-security-policy");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(header(&r, "cache-control"), "no-cache");
        assert!(!header(&r, "etag").is_empty());
    }
    let page = bare()
        .get(s.url("/"))
        .send()
        .expect("page")
        .text()
        .expect("html");
    assert!(!page.contains("<script>"), "no inline script");
    let tag = "<script type=\"module\" src=\"";
    let start = page.find(tag).expect("the module") + tag.len();
    let app = &page[start..start + page[start..].find('"').expect("quote")];
    assert!(
        app.starts_with("/console/assets/") && app.ends_with("/app.js"),
        "{app}"
    );

    let r = bare()
        .get(s.url(app))
        .header("accept-encoding", "gzip, br")
        .send()
        .expect("app.js");
    assert_eq!(r.status(), 200);
    assert!(header(&r, "content-type").starts_with("text/javascript"));
    assert_eq!(header(&r, "content-encoding"), "gzip");
    assert!(header(&r, "cache-control").contains("immutable"));
    let etag = header(&r, "etag");
    let gz = r.bytes().expect("body");
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "a gzip stream");
    let plain = bare().get(s.url(app)).send().expect("plain");
    assert_eq!(header(&plain, "content-encoding"), "");
    assert!(plain.text().expect("js").contains("import"));

    let again = bare()
        .get(s.url(app))
        .header("if-none-match", &etag)
        .send()
        .expect("revalidate");
    assert_eq!(again.status(), 304);
    let other = app.replace("/console/assets/", "/console/assets/0");
    assert_eq!(bare().get(s.url(&other)).send().expect("old").status(), 404);
    let unknown = app.replace("app.js", "vendor.sh");
    assert_eq!(bare().get(s.url(&unknown)).send().expect("x").status(), 404);
}

#[test]
fn signing_in_sets_an_http_only_strict_expiring_cookie_that_stands_for_the_token() {
    let s = TestServer::start();
    let reader = s.token(&["read:P"]);
    let (set, body) = sign_in(&s, &reader);
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    assert!(attrs[0].starts_with("cds_events_session=cdss_"), "{set}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&flag), "{flag} in {set}");
    }
    let max_age: u64 = attrs
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .expect("seconds");
    assert!((8 * 3600 - 60..=8 * 3600).contains(&max_age), "{max_age}");
    assert!(!set.contains(&reader), "the token is not the cookie");
    assert_eq!(body["grants"], json!(["read:P"]));
    assert!(body["csrf"].as_str().is_some_and(|c| c.len() >= 32));

    let cookie = cookie_of(&set);
    assert_eq!(get_with(&s, "/v2/events?project_key=P", &cookie), 200);
    // Exactly the token's grants: another project is refused.
    assert_eq!(get_with(&s, "/v2/events?project_key=Q", &cookie), 403);
    let me: Value = bare()
        .get(s.url("/v2/auth/session"))
        .headers(cookie.clone())
        .send()
        .expect("session")
        .json()
        .expect("json");
    assert_eq!(me["csrf"], body["csrf"]);
    assert_eq!(get_with(&s, "/v2/auth/session", &HeaderMap::new()), 204);
}

#[test]
fn a_wrong_token_or_a_sign_in_from_another_origin_is_refused() {
    let s = TestServer::start();
    let r = bare()
        .post(s.url("/v2/auth/session"))
        .json(&json!({"token": "cdse_nope_nope"}))
        .send()
        .expect("post");
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = bare()
        .post(s.url("/v2/auth/session"))
        .header("origin", "https://evil.example")
        .json(&json!({"token": ADMIN}))
        .send()
        .expect("post");
    assert_eq!(r.status(), 403);
    let r = bare()
        .post(s.url("/v2/auth/session"))
        .json(&json!({"tokn": ADMIN}))
        .send()
        .expect("post");
    assert_eq!(r.status(), 400);
}

#[test]
fn a_state_changing_request_with_the_cookie_needs_the_csrf_header() {
    let s = TestServer::start();
    let (set, body) = sign_in(&s, ADMIN);
    let cookie = cookie_of(&set);
    let csrf = body["csrf"].as_str().expect("csrf");
    let post = |path: &str, csrf: Option<&str>, body: Value| {
        let mut r = bare().post(s.url(path)).headers(cookie.clone()).json(&body);
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        let r = r.send().expect("post");
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    let event = crate::job_event("P", 1);
    for wrong in [None, Some("x"), Some(&csrf[1..])] {
        let (status, err) = post("/v2/auth/ticket", wrong, Value::Null);
        assert_eq!(status, 403, "{wrong:?}");
        assert_eq!(err["error"]["code"], "csrf");
        assert_eq!(post("/v2/events", wrong, event.clone()).0, 403);
    }
    assert!(s.query_all("").is_empty(), "nothing was published");
    let (status, t) = post("/v2/auth/ticket", Some(csrf), Value::Null);
    assert_eq!(status, 200, "{t}");
    assert_eq!(post("/v2/events", Some(csrf), event).0, 200);
    // A bearer caller needs no CSRF value: no browser sends its header.
    assert_eq!(s.post_json(&crate::job_event("P", 2)).0, 200);

    let out = bare()
        .delete(s.url("/v2/auth/session"))
        .headers(cookie.clone())
        .send()
        .expect("sign out");
    assert_eq!(out.status(), 403, "signing out needs it too");
    let out = bare()
        .delete(s.url("/v2/auth/session"))
        .headers(cookie)
        .header("x-csrf-token", csrf)
        .send()
        .expect("sign out");
    assert_eq!(out.status(), 204);
    let set = header(&out, "set-cookie");
    assert!(
        set.starts_with("cds_events_session=;") && set.contains("Max-Age=0"),
        "{set}"
    );
}

/// A `read:P` token created by the admin: the answer, with its `id` and
/// its `token`.
fn reader_token(s: &TestServer) -> Value {
    s.http
        .post(s.url("/v2/auth/tokens"))
        .json(&json!({"name": "console", "grants": ["read:P"]}))
        .send()
        .expect("create")
        .json()
        .expect("json")
}

#[test]
fn revoking_the_token_ends_its_session() {
    let s = TestServer::start();
    let created = reader_token(&s);
    let (set, _) = sign_in(&s, created["token"].as_str().expect("token"));
    let cookie = cookie_of(&set);
    assert_eq!(get_with(&s, "/v2/events", &cookie), 200);
    let id = created["id"].as_str().expect("id");
    let r = s
        .http
        .delete(s.url(&format!("/v2/auth/tokens/{id}")))
        .send()
        .expect("revoke");
    assert_eq!(r.status(), 204);
    assert_eq!(get_with(&s, "/v2/events", &cookie), 401);
    assert_eq!(get_with(&s, "/v2/auth/session", &cookie), 204);
}

#[test]
fn a_session_ends_at_its_expiry() {
    let s = TestServer::builder()
        .env("CDS_EVENTS_AUTH__SESSION_TTL", "2s")
        .start();
    let (set, body) = sign_in(&s, ADMIN);
    assert!(
        set.contains("Max-Age=1") || set.contains("Max-Age=2"),
        "{set}"
    );
    assert!(body["expires_at"].is_string());
    let cookie = cookie_of(&set);
    assert_eq!(get_with(&s, "/v2/events", &cookie), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_with(&s, "/v2/events", &cookie) == 200 {
        assert!(Instant::now() < deadline, "the session outlived its expiry");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get_with(&s, "/v2/events", &cookie), 401);
}

/// The console's overview reads the metrics with an admin's session; a
/// reader's session is refused them, as its token would be.
#[test]
fn an_admin_session_reads_the_metrics_and_a_reader_session_does_not() {
    let s = TestServer::start();
    let created = reader_token(&s);
    let (admin, _) = sign_in(&s, ADMIN);
    let (reader, _) = sign_in(&s, created["token"].as_str().expect("token"));
    assert_eq!(get_with(&s, "/mon/metrics", &cookie_of(&admin)), 200);
    assert_eq!(get_with(&s, "/mon/metrics", &cookie_of(&reader)), 403);
    assert_eq!(get_with(&s, "/mon/metrics", &HeaderMap::new()), 401);
}
