//! Our side over plain HTTP: one bare HTTP/1.1 connection per publisher (as
//! `simulate` sends), an SSE reader that splits the body into lines without
//! decoding any event, and the websocket.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;

/// Where our server is.
#[derive(Debug, Clone, Args)]
pub struct Server {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Bearer token (never printed).
    #[arg(long, env = "CDS_EVENTS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Server {
    fn host_port(&self) -> anyhow::Result<String> {
        let u = url::Url::parse(&self.server)?;
        if u.scheme() != "http" {
            bail!("--server must be a plain http:// URL");
        }
        let host = u.host_str().context("--server without a host")?;
        Ok(format!(
            "{host}:{}",
            u.port_or_known_default().unwrap_or(80)
        ))
    }

    /// One HTTP/1.1 connection.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let addr = self.host_port()?;
        let stream = tokio::net::TcpStream::connect(&addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Conn {
            sender,
            host: addr,
            auth: self.token.as_ref().map(|t| format!("Bearer {t}")),
        })
    }

    /// The websocket URL with `?since=`.
    pub fn ws_url(&self, since: Option<u64>) -> anyhow::Result<String> {
        let mut u = url::Url::parse(&self.server)?;
        u.set_scheme("ws")
            .map_err(|_| anyhow::anyhow!("cannot make a websocket URL"))?;
        u.set_path("/v2/ws");
        u.set_query(since.map(|s| format!("since={s}")).as_deref());
        Ok(u.to_string())
    }
}

/// One connection to our server.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    auth: Option<String>,
}

impl Conn {
    fn request(&self, method: &str, path: &str) -> hyper::http::request::Builder {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host);
        if let Some(a) = &self.auth {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        req
    }

    /// `POST /v2/events` with a JSON body; fails unless 2xx.
    pub async fn publish(&mut self, body: String) -> anyhow::Result<()> {
        let req = self
            .request("POST", "/v2/events")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "server answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// A GET whose body is read as it comes (a stream).
    pub async fn open(&mut self, path: &str) -> anyhow::Result<hyper::body::Incoming> {
        let req = self.request("GET", path).body(Full::new(Bytes::new()))?;
        let resp = self.sender.send_request(req).await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            bail!(
                "server answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(resp.into_body())
    }
}

/// Splits an SSE body into lines and hands each event's `id:` and `data:`
/// to the caller; nothing is decoded.
pub struct SseLines {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
    id: u64,
}

impl std::fmt::Debug for SseLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseLines").field("id", &self.id).finish()
    }
}

impl SseLines {
    pub fn new(body: hyper::body::Incoming) -> SseLines {
        SseLines {
            body,
            buf: Vec::with_capacity(1 << 20),
            id: 0,
        }
    }

    /// Reads the next chunk and calls `each(seq, data)` for every complete
    /// event in it; answers false when the stream ended.
    pub async fn next_chunk(&mut self, mut each: impl FnMut(u64, &[u8])) -> anyhow::Result<bool> {
        let Some(frame) = self.body.frame().await else {
            return Ok(false);
        };
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            return Ok(true);
        };
        self.buf.extend_from_slice(data);
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &self.buf) {
            let line = &self.buf[start..nl];
            start = nl + 1;
            if let Some(id) = line.strip_prefix(b"id: ") {
                self.id = std::str::from_utf8(id)?.parse()?;
            } else if let Some(data) = line.strip_prefix(b"data: ") {
                if line.starts_with(b"data: {\"resume_from\"") {
                    bail!("the stream ended: {}", String::from_utf8_lossy(line));
                }
                each(self.id, data);
            }
        }
        self.buf.drain(..start);
        Ok(true)
    }
}
