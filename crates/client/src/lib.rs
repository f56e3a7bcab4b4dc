//! A typed Rust client for the cds-events HTTP API.
//!
//! Bodies other than events (notifications, deliveries, tokens) are the
//! types of `cds_events_api`, the same the server writes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cds_events_client::ClientError> {
//! use cds_events_client::Client;
//! use cds_events_model::{EventType, ProjectEvent};
//! let client = Client::new("http://127.0.0.1:8090")?;
//! let ev = ProjectEvent { project_key: "PROJ".into(), ..Default::default() }
//!     .into_event(EventType::ProjectCreated)
//!     .expect("a project type");
//! let out = client.publish(&[ev]).await?;
//! println!("stored at {}", out[0].seq);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod follow;
mod notifications;
mod publisher;
mod retry;
mod sinks;
mod stats;
mod tokens;
pub mod verify;

pub use follow::{Reconnect, Stored};
pub use publisher::{Publisher, PublisherOptions};
pub use retry::Retry;

use cds_events_model::FullEvent;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;

/// What the server answered for one published event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The event's id.
    pub id: String,
    /// Its place in the log.
    pub seq: u64,
    /// The id was stored before (a retry, a resend): this is where.
    #[serde(default)]
    pub duplicate: bool,
}

#[derive(Debug, Deserialize)]
struct IngestOut {
    events: Vec<Appended>,
}

/// One event of a query page, with its sequence number.
#[derive(Debug, Deserialize)]
pub struct PageItem {
    /// Its place in the log.
    pub seq: u64,
    /// The event as stored, byte for byte.
    pub event: Box<RawValue>,
}

/// A query page.
#[derive(Debug, Deserialize)]
pub struct Page {
    /// The page's events, in the order asked.
    pub events: Vec<PageItem>,
    /// The `cursor` of the next page; `None` on the last one.
    pub next_cursor: Option<u64>,
}

/// The server's structured error.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ApiErrorBody {
    /// A stable machine-readable code (`invalid_field`, `not_found`, …).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Per-field or per-line details (`field`, `index`, `line`, …).
    #[serde(default)]
    pub details: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ApiErrorBody,
}

/// Everything a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address is not an `http://` or `https://` URL.
    #[error("invalid server address {0:?}")]
    BadUrl(String),
    /// [`ClientOptions::ca_cert_pem`] holds no PEM certificate.
    #[error("the CA certificate is not valid PEM")]
    BadCertificate,
    /// [`ClientOptions::identity_pem`] is not a PEM certificate chain and
    /// private key.
    #[error("the client identity is not a PEM certificate chain and private key: {0}")]
    BadIdentity(String),
    /// The request did not get an answer (connection refused or cut,
    /// timeout, TLS) or its body could not be read.
    #[error("cannot reach the server: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error and its structured body.
    #[error("server answered {status}: {} ({})", .body.message, .body.code)]
    Api {
        /// The HTTP status.
        status: u16,
        /// The server's `error` object.
        body: ApiErrorBody,
    },
    /// The server answered something that is not the API's JSON (a proxy's
    /// error page, say).
    #[error("server answered {status} with an unexpected body: {text}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// The body as text.
        text: String,
    },
    /// The batch this event was sent in failed as a whole (a [`Publisher`]
    /// hands the same error to every event of the batch).
    #[error("the batch failed: {0}")]
    Batch(std::sync::Arc<ClientError>),
    /// The [`Publisher`]'s task is gone (its runtime shut down).
    #[error("the publisher is closed")]
    Closed,
}

/// An error's message followed by its sources' (reqwest's own says
/// little: "builder error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl ClientError {
    /// Whether the server refused the request as bad input (400, 413, 422):
    /// sending it again as it is cannot succeed.
    pub fn is_bad_input(&self) -> bool {
        match self {
            ClientError::Api { status, .. } | ClientError::Unexpected { status, .. } => {
                matches!(status, 400 | 413 | 422)
            }
            ClientError::Batch(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

/// How to build a [`Client`].
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Bearer token sent with every request.
    pub token: Option<String>,
    /// Most idle connections kept open.
    pub pool: usize,
    /// The CA certificates (PEM) to trust instead of the system's, for a
    /// server with a private CA.
    pub ca_cert_pem: Option<Vec<u8>>,
    /// A client certificate for mutual TLS, for a server (`tls.client_ca`)
    /// or a reverse proxy that requires one: PEM, the certificate chain
    /// (the client's certificate first) and its private key (PKCS#8,
    /// PKCS#1 or SEC1) in one buffer, as the two files concatenated.
    /// Never printed by `Debug`.
    pub identity_pem: Option<Vec<u8>>,
    /// How publishing and paging retry a transient failure (default: five
    /// retries over about 8 s; [`Retry::NEVER`] to fail at once).
    pub retry: Retry,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("pool", &self.pool)
            .field("ca_cert_pem", &self.ca_cert_pem.as_ref().map(Vec::len))
            .field("identity_pem", &self.identity_pem.as_ref().map(|_| "***"))
            .field("retry", &self.retry)
            .finish()
    }
}

/// A client of one cds-events server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    token: Option<String>,
    retry: Retry,
}

impl Client {
    /// A client for the server at `base` (`http://127.0.0.1:8090`).
    pub fn new(base: &str) -> Result<Client, ClientError> {
        Self::builder(base, None, 64)
    }

    /// A client with a bearer token and at most `pool` idle connections.
    pub fn builder(base: &str, token: Option<String>, pool: usize) -> Result<Client, ClientError> {
        Self::with_options(
            base,
            ClientOptions {
                token,
                pool,
                ..ClientOptions::default()
            },
        )
    }

    /// A client with every option.
    pub fn with_options(base: &str, opts: ClientOptions) -> Result<Client, ClientError> {
        install_crypto_provider();
        let base = url::Url::parse(base).map_err(|_| ClientError::BadUrl(base.to_owned()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ClientError::BadUrl(base.to_string()));
        }
        let mut b = reqwest::Client::builder()
            .pool_max_idle_per_host(opts.pool)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10));
        if let Some(pem) = &opts.ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|_| ClientError::BadCertificate)?;
            // Only these roots: a private CA is the point of giving one.
            b = b.tls_certs_only(certs);
        }
        if let Some(pem) = &opts.identity_pem {
            let identity = reqwest::Identity::from_pem(pem)
                .map_err(|e| ClientError::BadIdentity(error_chain(&e)))?;
            b = b.identity(identity);
        }
        Ok(Client {
            http: b.build()?,
            base,
            token: opts.token,
            retry: opts.retry,
        })
    }

    fn url(&self, path: &str) -> url::Url {
        let mut u = self.base.clone();
        let prefix = u.path().trim_end_matches('/').to_owned();
        u.set_path(&format!("{prefix}{path}"));
        u
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await?;
        match serde_json::from_str::<ErrorEnvelope>(&text) {
            Ok(env) => Err(ClientError::Api {
                status: status.as_u16(),
                body: env.error,
            }),
            Err(_) => Err(ClientError::Unexpected {
                status: status.as_u16(),
                text,
            }),
        }
    }

    /// Publishes events as one all-or-nothing batch, trying again after a
    /// transient failure (see [`ClientOptions::retry`]). An event with an
    /// empty id is sent with a new UUID v7, the same on every try: the
    /// server stores each id once, so a retry never stores an event twice
    /// (its answer then says `duplicate`).
    pub async fn publish(&self, events: &[FullEvent]) -> Result<Vec<Appended>, ClientError> {
        let mut body = String::from("[");
        for (i, e) in events.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            if e.id.is_empty() {
                let mut e = e.clone();
                e.id = uuid::Uuid::now_v7().to_string();
                body.push_str(&e.to_json());
            } else {
                body.push_str(&e.to_json());
            }
        }
        body.push(']');
        self.retry
            .run(|| self.publish_raw(body.clone(), false))
            .await
    }

    /// Publishes a pre-encoded body (a JSON event or array, or NDJSON) once,
    /// without retrying.
    pub async fn publish_raw(
        &self,
        body: String,
        ndjson: bool,
    ) -> Result<Vec<Appended>, ClientError> {
        let ct = if ndjson {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        let resp = self
            .req(reqwest::Method::POST, "/v2/events")
            .header(CONTENT_TYPE, HeaderValue::from_static(ct))
            .body(body)
            .send()
            .await?;
        let out: IngestOut = Self::check(resp).await?.json().await?;
        Ok(out.events)
    }

    /// One page of `GET /v2/events` with these query parameters.
    pub async fn query(&self, params: &[(String, String)]) -> Result<Page, ClientError> {
        let resp = self
            .req(reqwest::Method::GET, "/v2/events")
            .query(params)
            .send()
            .await?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// A request to the path made of `segments`, each percent-encoded (a
    /// project key, a name or an id may hold any character).
    fn req_at(
        &self,
        method: reqwest::Method,
        segments: &[&str],
    ) -> Result<reqwest::RequestBuilder, ClientError> {
        let mut u = self.url("/");
        u.path_segments_mut()
            .map_err(|_| ClientError::BadUrl(self.base.to_string()))?
            .pop_if_empty()
            .extend(segments);
        let r = self.http.request(method, u);
        Ok(match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        })
    }

    /// Sends `r`, checks the status and reads the JSON answer as `T`.
    async fn read<T: DeserializeOwned>(r: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let resp = Self::check(r.send().await?).await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        serde_json::from_str(&text).map_err(|_| ClientError::Unexpected { status, text })
    }

    /// Sends `r` and checks the status; the answer has no body.
    async fn done(r: reqwest::RequestBuilder) -> Result<(), ClientError> {
        Self::check(r.send().await?).await?;
        Ok(())
    }

    /// The event with this id and its sequence number.
    pub async fn get(&self, id: &str) -> Result<Option<(u64, Box<RawValue>)>, ClientError> {
        let r = self.req_at(reqwest::Method::GET, &["v2", "events", id])?;
        let resp = r.send().await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = Self::check(resp).await?;
        let seq = resp
            .headers()
            .get("cds-events-seq")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let text = resp.text().await?;
        let raw = RawValue::from_string(text.clone())
            .map_err(|_| ClientError::Unexpected { status: 200, text })?;
        Ok(Some((seq, raw)))
    }

    /// A GET of any JSON endpoint (`/v2/events/types`, `/mon/status`).
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let resp = self.req(reqwest::Method::GET, path).send().await?;
        Ok(Self::check(resp).await?.json().await?)
    }
}

/// reqwest is built without a default TLS provider; this picks ring, once per
/// process. Clients built here call it; call it yourself before building
/// another reqwest client in the same process.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// One message of a live stream.
#[derive(Debug)]
pub enum StreamItem {
    /// An event and its sequence number.
    Event {
        /// Its place in the log (the SSE `id`).
        seq: u64,
        /// The event as stored.
        event: Box<RawValue>,
    },
    /// A control message (`lagged`, `shutdown`) with its JSON data: the
    /// stream ends after it.
    Control {
        /// The SSE `event` name.
        name: String,
        /// Its data (`resume_from`, …).
        data: serde_json::Value,
    },
}

/// An open Server-Sent Events stream (`GET /v2/events/stream`).
#[derive(Debug)]
pub struct EventStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Client {
    /// Opens the live stream with query-API filters, resuming after `after`
    /// (a sequence number) when given.
    pub async fn stream(
        &self,
        params: &[(String, String)],
        after: Option<u64>,
    ) -> Result<EventStream, ClientError> {
        let mut r = self
            .req(reqwest::Method::GET, "/v2/events/stream")
            .query(params);
        if let Some(a) = after {
            r = r.header("Last-Event-ID", a.to_string());
        }
        let resp = Self::check(r.send().await?).await?;
        Ok(EventStream {
            resp,
            buf: Vec::new(),
        })
    }
}

impl EventStream {
    /// The next message, or `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<StreamItem>, ClientError> {
        loop {
            // A message ends with a blank line.
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&raw);
                let (mut id, mut name, mut data) = (None, None, String::new());
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.trim().parse::<u64>().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(v);
                    }
                }
                match (name, id) {
                    (Some(name), _) => {
                        let data =
                            serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data));
                        return Ok(Some(StreamItem::Control { name, data }));
                    }
                    (None, Some(seq)) => {
                        let event = RawValue::from_string(data.clone()).map_err(|_| {
                            ClientError::Unexpected {
                                status: 200,
                                text: data,
                            }
                        })?;
                        return Ok(Some(StreamItem::Event { seq, event }));
                    }
                    // Comments, heartbeats, retry advice.
                    _ => continue,
                }
            }
            match self.resp.chunk().await? {
                Some(chunk) => self.buf.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}
