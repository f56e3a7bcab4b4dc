//! `peers`: the other side of `bench/peers.sh`. It sends the events
//! `cds-events simulate` sends (the same generator, the same seeds: every
//! connection renders its events before the clock starts) to the brokers a
//! user could pick instead — NATS JetStream, Redis Streams — and to bare
//! SQLite, replays a log from its start (JetStream ordered consumer, and our
//! SSE and websocket streams), and times publish → subscriber (NATS core and
//! our SSE stream). Each command prints one JSON line.

mod ceiling;
mod http;
mod latency;
mod nats;
mod redis_streams;
mod replay;

use cds_events_traffic::{IdKind, TEMPLATES_PER_CONNECTION, Templates, Traffic};
use clap::{Args, Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Parser)]
#[command(name = "peers", about = "The peers of bench/peers.sh")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Publish the generated events to a peer as fast as it takes them.
    Ingest(IngestArgs),
    /// Read a log from its first event to its N-th, timed.
    Replay(ReplayArgs),
    /// Publish at a fixed rate and time each event publish → subscriber.
    Latency(LatencyArgs),
    /// Delete what this tag created on NATS and Redis.
    Cleanup(Brokers),
}

/// Where the brokers are, and the run's tag that names everything created.
#[derive(Debug, Clone, Args)]
struct Brokers {
    /// Names the JetStream stream (`<tag>`, subjects `<tag>.>`) and the Redis
    /// stream (`<tag>:events`).
    #[arg(long)]
    tag: String,
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
}

/// The traffic, with `simulate`'s flags and defaults for what the two share.
#[derive(Debug, Clone, Args)]
struct Load {
    /// Events in all.
    #[arg(long)]
    events: u64,
    /// Events per request (1: one request, and one acknowledgement awaited,
    /// per event).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    #[arg(long, default_value_t = 100)]
    projects: usize,
    #[arg(long, default_value_t = 600)]
    event_bytes: usize,
    #[arg(long, value_enum, default_value = "v7")]
    ids: IdKind,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Load {
    /// Connection `w`'s pre-rendered events: `simulate`'s seed for it.
    fn templates(&self, w: usize) -> Templates {
        let mut traffic = Traffic::new(
            self.projects,
            self.event_bytes,
            self.seed.wrapping_mul(1000).wrapping_add(w as u64),
        );
        Templates::new(&mut traffic, TEMPLATES_PER_CONNECTION, self.ids)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IngestTarget {
    /// JetStream, file storage: async publish with bounded acks in flight,
    /// or one awaited ack per event with `--batch 1`.
    Nats,
    /// Redis Streams: `XADD`s pipelined `--batch` at a time.
    Redis,
    /// Bare SQLite: the same rows into a table without index, group commits
    /// of `--batch` rows, the log's own connection and checkpoint settings.
    Sqlite,
}

#[derive(Debug, Args)]
struct IngestArgs {
    #[arg(long, value_enum)]
    to: IngestTarget,
    #[command(flatten)]
    load: Load,
    #[command(flatten)]
    brokers: Brokers,
    /// JetStream async publish: acknowledgements awaited at most, in all
    /// (shared evenly by the connections).
    #[arg(long, default_value_t = 4096)]
    in_flight: usize,
    /// SQLite: the database file (created; must not exist).
    #[arg(long)]
    db: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReplayFrom {
    /// A JetStream ordered (pull) consumer on the tag's stream.
    Nats,
    /// `GET /v2/events/stream?since=0`.
    Sse,
    /// `GET /v2/ws?since=0`, filter `{"type":"events"}`.
    Ws,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    #[arg(long, value_enum)]
    from: ReplayFrom,
    /// Events to read (the log's head).
    #[arg(long)]
    events: u64,
    #[command(flatten)]
    server: http::Server,
    #[command(flatten)]
    brokers: Brokers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LatencyTarget {
    /// NATS core publish and subscribe (no JetStream).
    Nats,
    /// Our `POST /v2/events` and an SSE subscriber to every event.
    Cds,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    #[arg(long, value_enum)]
    to: LatencyTarget,
    /// Events per second in all.
    #[arg(long)]
    rate: u64,
    #[command(flatten)]
    load: Load,
    #[command(flatten)]
    server: http::Server,
    #[command(flatten)]
    brokers: Brokers,
}

/// A budget of events shared by the connections (as `simulate`'s): a fast
/// connection sends more.
#[derive(Debug)]
struct Budget(AtomicU64);

impl Budget {
    fn new(n: u64) -> Budget {
        Budget(AtomicU64::new(n))
    }

    /// Takes up to `n` events; 0 once all are taken.
    fn take(&self, n: u64) -> u64 {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let t = cur.min(n);
            if t == 0 {
                return 0;
            }
            match self
                .0
                .compare_exchange(cur, cur - t, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return t,
                Err(c) => cur = c,
            }
        }
    }
}

/// A sending worker: the events it sent and its per-request latencies.
type Worker = tokio::task::JoinHandle<anyhow::Result<(u64, Histogram<u64>)>>;

/// Waits for every sending worker: the events they sent and, merged, their
/// per-request latencies.
async fn gather(workers: Vec<Worker>) -> anyhow::Result<(u64, Histogram<u64>)> {
    let mut hist = new_hist();
    let mut sent = 0;
    for w in workers {
        let (n, h) = w.await??;
        sent += n;
        hist.add(&h).ok();
    }
    Ok((sent, hist))
}

/// Waits for every sending worker: the events they sent.
async fn gather_counts(
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<u64>>>,
) -> anyhow::Result<u64> {
    let mut sent = 0;
    for w in workers {
        sent += w.await??;
    }
    Ok(sent)
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Prints the one JSON line of a command: events, seconds, events/s and,
/// when timed, a histogram's p50/p99/max in ms.
fn report(what: &str, events: u64, secs: f64, latency: Option<&Histogram<u64>>) {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let mut out = serde_json::json!({
        "what": what, "events": events, "seconds": secs, "per_second": events as f64 / secs,
    });
    if let Some(h) = latency.filter(|h| !h.is_empty()) {
        out["p50_ms"] = ms(h, 0.5).into();
        out["p99_ms"] = ms(h, 0.99).into();
        out["max_ms"] = (h.max() as f64 / 1000.0).into();
        out["samples"] = h.len().into();
    }
    println!("{out}");
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Ingest(a) => match a.to {
            IngestTarget::Nats => rt.block_on(nats::ingest(&a.load, &a.brokers, a.in_flight)),
            IngestTarget::Redis => rt.block_on(redis_streams::ingest(&a.load, &a.brokers)),
            IngestTarget::Sqlite => {
                let db =
                    a.db.ok_or_else(|| anyhow::anyhow!("--to sqlite needs --db FILE"))?;
                rt.block_on(ceiling::ingest(&a.load, &db))
            }
        },
        Cmd::Replay(a) => rt.block_on(replay::run(&a)),
        Cmd::Latency(a) => rt.block_on(latency::run(&a)),
        Cmd::Cleanup(b) => rt.block_on(async {
            nats::cleanup(&b).await?;
            redis_streams::cleanup(&b).await
        }),
    }
}
