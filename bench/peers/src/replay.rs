//! Catch-up from the first event: our SSE stream and websocket (`since=0`)
//! beside a JetStream ordered consumer. Each reader counts events and notes
//! their sequence numbers; none decodes an event.

use crate::{ReplayArgs, ReplayFrom, report};
use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use std::time::Instant;

pub async fn run(a: &ReplayArgs) -> anyhow::Result<()> {
    match a.from {
        ReplayFrom::Nats => crate::nats::replay(&a.brokers, a.events).await,
        ReplayFrom::Sse => sse(a).await,
        ReplayFrom::Ws => ws(a).await,
    }
}

async fn sse(a: &ReplayArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = a.server.connect().await?;
    let body = conn.open("/v2/events/stream?since=0").await?;
    let mut lines = crate::http::SseLines::new(body);
    let (mut got, mut last) = (0u64, 0u64);
    while last < a.events {
        let more = lines
            .next_chunk(|seq, _| {
                got += 1;
                last = seq;
            })
            .await?;
        if !more {
            bail!("the stream ended after {got} events");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    check(got, last, a.events)?;
    report("cds-sse-since-0", got, secs, None);
    Ok(())
}

async fn ws(a: &ReplayArgs) -> anyhow::Result<()> {
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let started = Instant::now();
    let mut req = a.server.ws_url(Some(0))?.into_client_request()?;
    if let Some(t) = &a.server.token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse()?);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .context("websocket handshake")?;
    ws.send(Message::text(r#"{"type":"events"}"#)).await?;
    let (mut got, mut last) = (0u64, 0u64);
    while last < a.events {
        match ws.next().await.context("the websocket closed")?? {
            Message::Text(t) => {
                last = seq_at_end(&t).with_context(|| format!("not an event: {t}"))?;
                got += 1;
            }
            Message::Close(c) => bail!("the websocket closed after {got} events: {c:?}"),
            _ => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    check(got, last, a.events)?;
    report("cds-ws-since-0", got, secs, None);
    Ok(())
}

/// Every event from 1 to `events` once: as many as the last sequence number.
fn check(got: u64, last: u64, events: u64) -> anyhow::Result<()> {
    if got != events || last != events {
        bail!("{got} events up to sequence {last}, expected {events}");
    }
    Ok(())
}

/// The `seq` of `{"status":"OK",…,"seq":N}`: at its end, found without
/// parsing the event.
pub fn seq_at_end(text: &str) -> Option<u64> {
    let at = text.rfind(r#""seq":"#)?;
    text[at + 6..].trim_end_matches('}').trim().parse().ok()
}
