//! Live latency at a fixed rate: `--connections` publishers each send
//! `--batch` events per tick (ours: one `POST /v2/events`; NATS core: one
//! publish per event, then a flush), one subscriber receives every event.
//! An event's latency is the subscriber's clock at receipt minus the
//! `timestamp` the generator wrote as it rendered the request, read back
//! from the event as received (the same parse on both sides).

use crate::{LatencyArgs, LatencyTarget, Load, new_hist, report};
use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the subscriber waits in silence, once publishing is over,
/// before it concludes that nothing more is coming.
const QUIET: Duration = Duration::from_secs(3);

/// What the subscriber has seen so far.
#[derive(Debug)]
struct Seen {
    hist: Histogram<u64>,
    received: u64,
    unparsed: u64,
}

impl Seen {
    fn new() -> Self {
        Seen {
            hist: new_hist(),
            received: 0,
            unparsed: 0,
        }
    }

    /// One event as received: its latency from the `timestamp` it carries.
    fn record(&mut self, event: &[u8]) {
        self.received += 1;
        const KEY: &[u8] = br#""timestamp":""#;
        let sent = memchr::memmem::rfind(event, KEY)
            .and_then(|at| {
                let rest = &event[at + KEY.len()..];
                let end = memchr::memchr(b'"', rest)?;
                std::str::from_utf8(&rest[..end]).ok()
            })
            .and_then(|t| cds_events_model::Timestamp::parse(t).ok());
        match sent {
            Some(t) => {
                let us = (wall_nanos() - t.unix_nanos()) / 1000;
                let _ = self.hist.record(us.max(1) as u64);
            }
            None => self.unparsed += 1,
        }
    }
}

fn wall_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

pub async fn run(a: &LatencyArgs) -> anyhow::Result<()> {
    let seen = Arc::new(Mutex::new(Seen::new()));
    let done = Arc::new(AtomicBool::new(false));
    let expected = a.load.events;
    // The subscriber first, subscribed before anything is published.
    let subscriber = match a.to {
        LatencyTarget::Cds => {
            let mut conn = a.server.connect().await?;
            let body = conn.open("/v2/events/stream").await?;
            let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
            tokio::spawn(async move {
                let _conn = conn;
                let mut lines = crate::http::SseLines::new(body);
                while lock(&seen).received < expected {
                    let next = lines.next_chunk(|_, data| lock(&seen).record(data));
                    match tokio::time::timeout(QUIET, next).await {
                        Ok(Ok(true)) => {}
                        Ok(Ok(false)) => break,
                        Ok(Err(e)) => return Err(e),
                        Err(_) if done.load(Ordering::Relaxed) => break,
                        Err(_) => {}
                    }
                }
                anyhow::Ok(())
            })
        }
        LatencyTarget::Nats => {
            let client = async_nats::connect(&a.brokers.nats).await?;
            let mut sub = client
                .subscribe(format!("{}.live.>", a.brokers.tag))
                .await?;
            client.flush().await?;
            let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
            tokio::spawn(async move {
                let _client = client;
                while lock(&seen).received < expected {
                    match tokio::time::timeout(QUIET, futures_util::StreamExt::next(&mut sub)).await
                    {
                        Ok(Some(m)) => lock(&seen).record(&m.payload),
                        Ok(None) => break,
                        Err(_) if done.load(Ordering::Relaxed) => break,
                        Err(_) => {}
                    }
                }
                anyhow::Ok(())
            })
        }
    };
    let started = Instant::now();
    let sent = match a.to {
        LatencyTarget::Cds => publish_cds(a).await?,
        LatencyTarget::Nats => publish_nats(a).await?,
    };
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    subscriber.await.context("the subscriber")??;
    let seen = lock(&seen);
    if seen.received != sent || seen.unparsed > 0 {
        eprintln!(
            "latency: {} sent, {} received, {} without a readable timestamp",
            sent, seen.received, seen.unparsed
        );
    }
    let what = match a.to {
        LatencyTarget::Cds => "cds-sse-live",
        LatencyTarget::Nats => "nats-core-live",
    };
    report(what, seen.received, secs, Some(&seen.hist));
    Ok(())
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every connection's tick: `batch` events, so that all of them together
/// send `rate` events per second.
fn ticker(load: &Load, rate: u64) -> tokio::time::Interval {
    let period =
        Duration::from_secs_f64(load.batch as f64 * load.connections as f64 / rate.max(1) as f64);
    let mut t = tokio::time::interval(period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

async fn publish_cds(a: &LatencyArgs) -> anyhow::Result<u64> {
    let budget = Arc::new(crate::Budget::new(a.load.events));
    let mut workers = Vec::new();
    for w in 0..a.load.connections {
        let mut conn = a.server.connect().await?;
        let mut templates = a.load.templates(w);
        let (budget, batch, mut tick) =
            (Arc::clone(&budget), a.load.batch, ticker(&a.load, a.rate));
        workers.push(tokio::spawn(async move {
            let mut sent = 0;
            loop {
                let n = budget.take(batch as u64);
                if n == 0 {
                    break;
                }
                tick.tick().await;
                let mut body = String::with_capacity(n as usize * 700 + 2);
                body.push('[');
                for i in 0..n {
                    if i > 0 {
                        body.push(',');
                    }
                    templates.write(&mut body);
                }
                body.push(']');
                conn.publish(body).await?;
                sent += n;
            }
            anyhow::Ok(sent)
        }));
    }
    crate::gather_counts(workers).await
}

async fn publish_nats(a: &LatencyArgs) -> anyhow::Result<u64> {
    let budget = Arc::new(crate::Budget::new(a.load.events));
    let subjects = crate::nats::subjects(&a.brokers.tag, a.load.projects, "live");
    let mut workers = Vec::new();
    for w in 0..a.load.connections {
        let client = async_nats::connect(&a.brokers.nats).await?;
        let mut templates = a.load.templates(w);
        let (budget, subjects, batch, mut tick) = (
            Arc::clone(&budget),
            Arc::clone(&subjects),
            a.load.batch,
            ticker(&a.load, a.rate),
        );
        workers.push(tokio::spawn(async move {
            let mut sent = 0;
            loop {
                let n = budget.take(batch as u64);
                if n == 0 {
                    break;
                }
                tick.tick().await;
                for _ in 0..n {
                    let mut body = String::with_capacity(700);
                    let project = templates.write(&mut body);
                    client
                        .publish(subjects[project as usize].clone(), Bytes::from(body))
                        .await?;
                }
                client.flush().await?;
                sent += n;
            }
            anyhow::Ok(sent)
        }));
    }
    crate::gather_counts(workers).await
}
