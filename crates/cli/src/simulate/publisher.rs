//! How a `simulate` worker sends its requests: a bare HTTP/1 connection of
//! its own over plain HTTP, the client crate otherwise.

use anyhow::Context;

/// How a worker sends its requests. Over plain HTTP, one bare hyper
/// connection per worker: a general-purpose client costs ~20 us of CPU per
/// request, which on a two-core machine is taken from the server under test.
pub(super) enum Publisher {
    Raw {
        addr: String,
        host: String,
        auth: Option<String>,
        conn: Option<hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>>,
    },
    Client(cds_events_client::Client),
}

impl Publisher {
    pub(super) fn new(
        server: &crate::ServerArgs,
        client: cds_events_client::Client,
    ) -> anyhow::Result<Publisher> {
        let url = url::Url::parse(&server.server)?;
        if url.scheme() != "http" {
            return Ok(Publisher::Client(client));
        }
        let host = url
            .host_str()
            .context("server URL without a host")?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let auth = server.token().map(|t| format!("Bearer {t}"));
        Ok(Publisher::Raw {
            addr: format!("{host}:{port}"),
            host: format!("{host}:{port}"),
            auth,
            conn: None,
        })
    }

    /// Publishes; answers the sequence numbers when `want_seqs`.
    pub(super) async fn publish(
        &mut self,
        body: String,
        want_seqs: bool,
    ) -> anyhow::Result<Vec<u64>> {
        match self {
            Publisher::Client(c) => {
                let out = c.publish_raw(body, false).await?;
                Ok(if want_seqs {
                    out.into_iter().map(|a| a.seq).collect()
                } else {
                    Vec::new()
                })
            }
            Publisher::Raw {
                addr,
                host,
                auth,
                conn,
            } => {
                use http_body_util::BodyExt;
                if conn.as_ref().is_none_or(|c| c.is_closed()) {
                    let stream = tokio::net::TcpStream::connect(addr.as_str()).await?;
                    stream.set_nodelay(true)?;
                    let (sender, connection) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await?;
                    tokio::spawn(connection);
                    *conn = Some(sender);
                }
                let sender = conn.as_mut().context("connected")?;
                let mut req = hyper::Request::post("/v2/events")
                    .header(hyper::header::HOST, host.as_str())
                    .header(hyper::header::CONTENT_TYPE, "application/json");
                if let Some(a) = auth {
                    req = req.header(hyper::header::AUTHORIZATION, a.as_str());
                }
                let resp = sender
                    .send_request(req.body(http_body_util::Full::new(bytes::Bytes::from(body)))?)
                    .await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                if !status.is_success() {
                    anyhow::bail!(
                        "server answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                if !want_seqs {
                    return Ok(Vec::new());
                }
                #[derive(serde::Deserialize)]
                struct Out {
                    events: Vec<cds_events_client::Appended>,
                }
                let out: Out = serde_json::from_slice(&body)?;
                Ok(out.events.into_iter().map(|a| a.seq).collect())
            }
        }
    }
}
