//! The subscribers of `simulate --subscribers N`: SSE or websocket clients
//! that note when each event arrives, so that an ingest run can report
//! publish-acknowledged → received latency and any acknowledged event that
//! never arrived.

use crate::ServerArgs;
use anyhow::{Context, bail};
use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// `GET /v2/events/stream`.
    Sse,
    /// `GET /v2/ws` with an `events` filter.
    Ws,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// Every subscriber follows every event.
    All,
    /// Subscriber i follows project i mod --projects only.
    Project,
}

/// What one subscriber got: `(seq, microseconds since the run's origin)`.
pub struct Received {
    /// The project followed (index), or `None` for every event.
    pub project: Option<u16>,
    pub got: Vec<(u64, u32)>,
}

/// Running subscribers.
pub struct Subscribers {
    handles: Vec<JoinHandle<anyhow::Result<Received>>>,
    done: Arc<AtomicBool>,
}

/// How long a subscriber waits in silence, once publishing is over, before
/// it concludes that everything has arrived.
const QUIET: Duration = Duration::from_secs(2);

/// Handshakes in flight at once while connecting.
const CONNECTING: usize = 200;

/// Microseconds since `origin`, as recorded by subscribers and publishers.
pub fn micros_since(origin: Instant) -> u32 {
    origin.elapsed().as_micros().min(u32::MAX as u128) as u32
}

impl Subscribers {
    /// Connects `n` subscribers, each following events after `since` (so
    /// none is missed however long the connections take), and returns once
    /// every one is subscribed.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect(
        server: &ServerArgs,
        client: &cds_events_client::Client,
        protocol: Protocol,
        scope: Scope,
        n: usize,
        projects: usize,
        since: u64,
        origin: Instant,
    ) -> anyhow::Result<Subscribers> {
        let done = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(tokio::sync::Semaphore::new(CONNECTING));
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(n.max(1));
        let ws_url = {
            let mut u = url::Url::parse(&server.server)?;
            let scheme = if u.scheme() == "https" { "wss" } else { "ws" };
            u.set_scheme(scheme)
                .map_err(|_| anyhow::anyhow!("cannot make a websocket URL"))?;
            u.set_path("/v2/ws");
            u.set_query(Some(&format!("since={since}")));
            u.to_string()
        };
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let project = (scope == Scope::Project).then(|| (i % projects) as u16);
            let key = project.map(|p| super::project_key(p as usize));
            let done = Arc::clone(&done);
            let gate = Arc::clone(&gate);
            let ready = ready_tx.clone();
            let (client, token, ws_url) = (client.clone(), server.token(), ws_url.clone());
            handles.push(tokio::spawn(async move {
                let permit = gate.acquire_owned().await?;
                let got = match protocol {
                    Protocol::Sse => {
                        let params: Vec<(String, String)> = key
                            .map(|k| vec![("project_key".to_owned(), k)])
                            .unwrap_or_default();
                        let stream = client.stream(&params, Some(since)).await;
                        drop(permit);
                        let stream = match stream {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = ready.send(Err(e.into())).await;
                                bail!("SSE subscriber could not connect");
                            }
                        };
                        let _ = ready.send(Ok(())).await;
                        read_sse(stream, &done, origin).await
                    }
                    Protocol::Ws => {
                        let filter = match &key {
                            Some(k) => serde_json::json!({"type": "events", "project_key": k}),
                            None => serde_json::json!({"type": "events"}),
                        };
                        let ws = open_ws(&ws_url, token.as_deref(), &filter.to_string()).await;
                        drop(permit);
                        let ws = match ws {
                            Ok(ws) => ws,
                            Err(e) => {
                                let _ = ready.send(Err(e)).await;
                                bail!("websocket subscriber could not connect");
                            }
                        };
                        let _ = ready.send(Ok(())).await;
                        read_ws(ws, &done, origin).await
                    }
                };
                Ok(Received { project, got })
            }));
        }
        drop(ready_tx);
        for _ in 0..n {
            match ready_rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(e.context("a subscriber could not connect")),
                None => bail!("subscribers ended before connecting"),
            }
        }
        Ok(Subscribers { handles, done })
    }

    /// Tells the subscribers that publishing is over and collects what they
    /// received once each has been quiet for a moment.
    pub async fn finish(self) -> anyhow::Result<Vec<Received>> {
        self.done.store(true, Ordering::Relaxed);
        let mut out = Vec::with_capacity(self.handles.len());
        for h in self.handles {
            out.push(h.await.context("subscriber panicked")??);
        }
        Ok(out)
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(url: &str, token: Option<&str>, filter: &str) -> anyhow::Result<Ws> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request()?;
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse()?);
    }
    // Small buffers: ten thousand of these share the machine with the server.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true)
        .await
        .context("websocket handshake")?;
    ws.send(tokio_tungstenite::tungstenite::Message::text(filter))
        .await?;
    Ok(ws)
}

/// The sequence number of a `{"status":"OK",…,"seq":N}` message: at its end,
/// so found without parsing the event.
fn ws_seq(text: &str) -> Option<u64> {
    let at = text.rfind(r#""seq":"#)?;
    text[at + 6..].trim_end_matches('}').trim().parse().ok()
}

async fn read_ws(mut ws: Ws, done: &AtomicBool, origin: Instant) -> Vec<(u64, u32)> {
    use tokio_tungstenite::tungstenite::Message;
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(QUIET, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => match ws_seq(&t) {
                Some(seq) => got.push((seq, micros_since(origin))),
                None => {
                    eprintln!("websocket subscriber: {t}");
                    break;
                }
            },
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) if done.load(Ordering::Relaxed) => break,
            Err(_) => {}
        }
    }
    got
}

async fn read_sse(
    mut stream: cds_events_client::EventStream,
    done: &AtomicBool,
    origin: Instant,
) -> Vec<(u64, u32)> {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(QUIET, stream.next()).await {
            Ok(Ok(Some(cds_events_client::StreamItem::Event { seq, .. }))) => {
                got.push((seq, micros_since(origin)))
            }
            Ok(Ok(Some(_))) | Ok(Ok(None)) | Ok(Err(_)) => break,
            Err(_) if done.load(Ordering::Relaxed) => break,
            Err(_) => {}
        }
    }
    got
}

/// Resident memory of a process, bytes (Linux).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the memory of process {pid}"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS line")?;
    Ok(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ws_seq_reads_the_number_at_the_end() {
        let m = r#"{"status":"OK","error":"","event":{"id":"x","seq":"no"},"seq":12345}"#;
        assert_eq!(super::ws_seq(m), Some(12345));
        assert_eq!(super::ws_seq(r#"{"status":"KO","error":"lagged"}"#), None);
    }
}
