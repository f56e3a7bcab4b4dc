//! `simulate`: realistic CDS traffic for demos and load tests.
//!
//! The ingest workload replays what a CDS installation emits: projects with
//! repositories, analyses and entities, and workflow runs that walk the whole
//! run and job life of spec §2. The read workload measures the query API on
//! whatever log the server holds.

mod publisher;
mod subscribers;
mod webhooks;

use cds_events_traffic::{IdKind, TEMPLATES_PER_CONNECTION, Templates, Traffic, project_key};
use publisher::Publisher;

use crate::ServerArgs;
use anyhow::{Context, bail};
use cds_events_model::Timestamp;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Publish generated events.
    Ingest,
    /// Filtered pages and get-by-id, half and half, against the existing log.
    Read,
    /// Only filtered pages (project + type prefix + since, limit 100, newest first).
    Pages,
    /// Only get-by-id of ids sampled from the log.
    Gets,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, value_enum, default_value = "ingest")]
    workload: Workload,
    /// Number of CDS projects.
    #[arg(long, default_value_t = 20)]
    projects: usize,
    /// Events per request (1 = one event per request).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Target events/s (ingest) or requests/s (read) in all; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Stop after this many events (ingest) or requests (read).
    #[arg(long)]
    events: Option<u64>,
    /// Stop after this long (`30s`, `5m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Approximate size of each event's JSON, bytes.
    #[arg(long, default_value_t = 600)]
    event_bytes: usize,
    /// Event ids: time-ordered UUID v7, or random UUID v4 as CDS's Go
    /// producers send them.
    #[arg(long, value_enum, default_value = "v7")]
    ids: IdKind,
    /// Random seed, for repeatable traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Ingest only: also follow the stream with this many subscribers and
    /// report publish-acknowledged → received latency and lost events.
    #[arg(long, default_value_t = 0)]
    subscribers: usize,
    /// How the subscribers connect.
    #[arg(long, value_enum, default_value = "sse")]
    subscriber_protocol: subscribers::Protocol,
    /// What each subscriber follows: every event, or one project.
    #[arg(long, value_enum, default_value = "all")]
    subscribe: subscribers::Scope,
    /// The subscribers connect to this server instead of --server: another
    /// instance on the same PostgreSQL, to time publish-on-A → receive-on-B.
    #[arg(long)]
    subscribe_to: Option<String>,
    /// The server's process id (same machine): report its resident memory
    /// before the subscribers connect and once they are connected and idle.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Ingest only: create this many project notifications (notification i
    /// on project i mod --projects, every event of it) pointing at a webhook
    /// receiver in this process, and report what it received. The server
    /// needs CDS_EVENTS_WEBHOOK_ALLOW_PRIVATE=1. Removed at the end.
    #[arg(long, default_value_t = 0)]
    notifications: usize,
}

pub async fn run(a: SimulateArgs) -> anyhow::Result<()> {
    if a.events.is_none() && a.duration.is_none() {
        bail!("give --events N or --duration D");
    }
    if a.connections == 0 || a.batch == 0 || a.projects == 0 {
        bail!("--connections, --batch and --projects must be positive");
    }
    match a.workload {
        Workload::Ingest => ingest(a).await,
        Workload::Read | Workload::Pages | Workload::Gets => read(a).await,
    }
}

/// Shared stop condition: a budget of units (events or requests) and a deadline.
struct Budget {
    left: AtomicU64,
    deadline: Option<Instant>,
}

impl Budget {
    /// The run's `--events` and `--duration`, the clock starting now.
    fn starting_now(a: &SimulateArgs) -> Budget {
        Budget {
            left: AtomicU64::new(a.events.unwrap_or(u64::MAX)),
            deadline: a.duration.map(|d| Instant::now() + d),
        }
    }

    /// Takes up to `n` units; 0 when the run is over.
    fn take(&self, n: u64) -> u64 {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return 0;
        }
        let mut cur = self.left.load(Ordering::Relaxed);
        loop {
            if cur == 0 {
                return 0;
            }
            let t = cur.min(n);
            match self
                .left
                .compare_exchange(cur, cur - t, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return t,
                Err(c) => cur = c,
            }
        }
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

struct WorkerResult {
    hist: Histogram<u64>,
    hist2: Histogram<u64>,
    units: u64,
    errors: u64,
    first_error: Option<String>,
}

impl WorkerResult {
    fn new() -> Self {
        WorkerResult {
            hist: new_hist(),
            hist2: new_hist(),
            units: 0,
            errors: 0,
            first_error: None,
        }
    }
}

async fn ingest(a: SimulateArgs) -> anyhow::Result<()> {
    let client = a.server.client(a.connections)?;
    let per_request_interval = (a.rate > 0)
        .then(|| Duration::from_secs_f64(a.batch as f64 * a.connections as f64 / a.rate as f64));
    // Subscribers first, each from the current head, so that they see every
    // event published.
    let origin = Instant::now();
    type Acks = Arc<std::sync::Mutex<std::collections::HashMap<u64, (u32, u16)>>>;
    let acks: Option<Acks> = (a.subscribers > 0).then(Acks::default);
    let subscribers = if a.subscribers > 0 {
        // From the newest event on (a log that already holds events is not
        // replayed to the subscribers).
        let since = client
            .query(&[
                ("limit".into(), "1".into()),
                ("order".into(), "desc".into()),
            ])
            .await?
            .events
            .first()
            .map_or(0, |e| e.seq);
        let before = a.server_pid.map(subscribers::rss_bytes).transpose()?;
        let t0 = Instant::now();
        let target = ServerArgs {
            server: a
                .subscribe_to
                .clone()
                .unwrap_or_else(|| a.server.server.clone()),
            ..a.server.clone()
        };
        let target_client = match a.subscribe_to {
            Some(_) => target.client(a.connections)?,
            None => client.clone(),
        };
        let subs = subscribers::Subscribers::connect(
            &target,
            &target_client,
            a.subscriber_protocol,
            a.subscribe,
            a.subscribers,
            a.projects,
            since,
            origin,
        )
        .await?;
        eprintln!(
            "{} subscribers connected in {:.1}s",
            a.subscribers,
            t0.elapsed().as_secs_f64()
        );
        if let (Some(pid), Some(before)) = (a.server_pid, before) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = subscribers::rss_bytes(pid)?;
            eprintln!(
                "server memory: {:.1} MiB before, {:.1} MiB with {} idle subscribers = {:.1} KiB per connection",
                before as f64 / 1048576.0,
                after as f64 / 1048576.0,
                a.subscribers,
                after.saturating_sub(before) as f64 / 1024.0 / a.subscribers as f64
            );
        }
        Some(subs)
    } else {
        None
    };
    let sink = if a.notifications > 0 {
        Some(webhooks::Sink::start(&client, a.notifications, a.projects).await?)
    } else {
        None
    };
    // The clock starts once the subscribers are in.
    let budget = Arc::new(Budget::starting_now(&a));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..a.connections {
        let client = client.clone();
        let budget = Arc::clone(&budget);
        let mut traffic = Traffic::new(
            a.projects,
            a.event_bytes,
            a.seed.wrapping_mul(1000).wrapping_add(w as u64),
        );
        let mut templates = Templates::new(&mut traffic, TEMPLATES_PER_CONNECTION, a.ids);
        let batch = a.batch;
        let mut sender = Publisher::new(&a.server, client)?;
        let acks = acks.clone();
        workers.push(tokio::spawn(async move {
            let mut r = WorkerResult::new();
            let mut projects: Vec<u16> = Vec::new();
            let mut ticker = per_request_interval.map(|i| {
                let mut t = tokio::time::interval(i);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                let n = budget.take(batch as u64);
                if n == 0 {
                    break;
                }
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let mut body = String::with_capacity(n as usize * 700);
                projects.clear();
                if n > 1 {
                    body.push('[');
                }
                for i in 0..n {
                    if i > 0 {
                        body.push(',');
                    }
                    let project = templates.write(&mut body);
                    if acks.is_some() {
                        projects.push(project);
                    }
                }
                if n > 1 {
                    body.push(']');
                }
                let t0 = Instant::now();
                match sender.publish(body, acks.is_some()).await {
                    Ok(seqs) => {
                        let _ = r.hist.record(t0.elapsed().as_micros().max(1) as u64);
                        r.units += n;
                        if let Some(acks) = &acks {
                            let now = subscribers::micros_since(origin);
                            let mut acks = acks.lock().unwrap_or_else(|p| p.into_inner());
                            acks.extend(
                                seqs.into_iter()
                                    .zip(projects.drain(..))
                                    .map(|(q, p)| (q, (now, p))),
                            );
                        }
                    }
                    Err(e) => {
                        r.errors += 1;
                        if r.first_error.is_none() {
                            r.first_error = Some(e.to_string());
                        }
                    }
                }
            }
            r
        }));
    }
    let (hist, _, units, errors, first_error) = collect(workers).await?;
    let secs = started.elapsed().as_secs_f64();
    let mut delivery = new_hist();
    if let (Some(acks), Some(subs)) = (&acks, subscribers) {
        let received = subs.finish().await?;
        let acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|p| p.into_inner()));
        let missing = lost_and_latency(&acks, &received, a.projects, &mut delivery);
        let deliveries: usize = received.iter().map(|r| r.got.len()).sum();
        eprintln!("{deliveries} deliveries to {} subscribers", received.len());
        if missing > 0 {
            eprintln!("{missing} acknowledged events never reached a subscriber that follows them");
        }
    }
    let mut hists: Vec<(&str, &Histogram<u64>)> = if acks.is_some() {
        vec![("request", &hist), ("delivery", &delivery)]
    } else {
        vec![("request", &hist)]
    };
    let webhook_report = match sink {
        Some(sink) => {
            // Every acknowledged event belongs to a project with a
            // notification when --notifications >= --projects.
            let expected = if a.notifications >= a.projects {
                units
            } else {
                0
            };
            let r = sink.finish(&client, expected).await?;
            eprintln!(
                "webhooks: {} deliveries ({} expected) to {} endpoints at {:.0}/s, {} duplicates",
                r.deliveries, expected, a.notifications, r.per_second, r.duplicates
            );
            Some(r)
        }
        None => None,
    };
    if let Some(r) = &webhook_report {
        hists.push(("webhook", &r.latency));
    }
    summary(
        &a,
        "ingest",
        secs,
        units,
        errors,
        first_error,
        &hists,
        units as f64 / secs,
    )
}

/// Counts the acknowledged events that a subscriber following them never
/// received, and records each delivery's acknowledged → received latency.
fn lost_and_latency(
    acks: &std::collections::HashMap<u64, (u32, u16)>,
    received: &[subscribers::Received],
    projects: usize,
    delivery: &mut Histogram<u64>,
) -> u64 {
    let mut all: Vec<u64> = acks.keys().copied().collect();
    all.sort_unstable();
    let mut by_project: Vec<Vec<u64>> = vec![Vec::new(); projects];
    for seq in &all {
        if let Some(list) = by_project.get_mut(acks[seq].1 as usize) {
            list.push(*seq);
        }
    }
    let mut missing = 0u64;
    for r in received {
        let expected = match r.project {
            Some(p) => by_project.get(p as usize).map_or(&[][..], Vec::as_slice),
            None => &all,
        };
        let mut got: Vec<u64> = r.got.iter().map(|(s, _)| *s).collect();
        got.sort_unstable();
        missing += expected
            .iter()
            .filter(|s| got.binary_search(s).is_err())
            .count() as u64;
        for (seq, at) in &r.got {
            if let Some((acked, _)) = acks.get(seq) {
                // Received before its publisher heard the answer: 0.
                let _ = delivery.record(at.saturating_sub(*acked).max(1) as u64);
            }
        }
    }
    missing
}

async fn collect(
    workers: Vec<tokio::task::JoinHandle<WorkerResult>>,
) -> anyhow::Result<(Histogram<u64>, Histogram<u64>, u64, u64, Option<String>)> {
    let (mut hist, mut hist2) = (new_hist(), new_hist());
    let (mut units, mut errors, mut first_error) = (0, 0, None);
    for w in workers {
        let r = w.await.context("worker failed")?;
        hist.add(&r.hist).ok();
        hist2.add(&r.hist2).ok();
        units += r.units;
        errors += r.errors;
        first_error = first_error.or(r.first_error);
    }
    Ok((hist, hist2, units, errors, first_error))
}

#[allow(clippy::too_many_arguments)]
fn summary(
    a: &SimulateArgs,
    workload: &str,
    secs: f64,
    units: u64,
    errors: u64,
    first_error: Option<String>,
    hists: &[(&str, &Histogram<u64>)],
    rate: f64,
) -> anyhow::Result<()> {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    if a.json {
        let mut lat = serde_json::Map::new();
        for (name, h) in hists {
            lat.insert(
                (*name).into(),
                serde_json::json!({"count": h.len(), "p50_ms": ms(h, 0.5), "p90_ms": ms(h, 0.9),
                    "p99_ms": ms(h, 0.99), "max_ms": h.max() as f64 / 1000.0}),
            );
        }
        println!(
            "{}",
            serde_json::json!({"workload": workload, "seconds": secs, "units": units, "per_second": rate,
                "errors": errors, "batch": a.batch, "connections": a.connections, "latency": lat})
        );
    } else {
        let unit = if workload == "ingest" {
            "events"
        } else {
            "requests"
        };
        println!(
            "{workload}: {units} {unit} in {secs:.2}s = {rate:.0} {unit}/s ({errors} failed requests)"
        );
        for (name, h) in hists {
            if h.is_empty() {
                continue;
            }
            println!(
                "  {name:<8} n={:<8} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
                h.len(),
                ms(h, 0.5),
                ms(h, 0.9),
                ms(h, 0.99),
                h.max() as f64 / 1000.0
            );
        }
    }
    if let Some(e) = first_error {
        eprintln!("first error: {e}");
    }
    if errors > 0 && units == 0 {
        bail!("every request failed");
    }
    Ok(())
}

async fn read(a: SimulateArgs) -> anyhow::Result<()> {
    let client = a.server.client(a.connections)?;
    // What the log holds: its time span and a sample of ids.
    let first = client.query(&[("limit".into(), "1".into())]).await?;
    let last = client
        .query(&[
            ("limit".into(), "1".into()),
            ("order".into(), "desc".into()),
        ])
        .await?;
    let (Some(first), Some(last)) = (first.events.first(), last.events.first()) else {
        bail!("the log is empty")
    };
    let ts = |raw: &serde_json::value::RawValue| -> anyhow::Result<i64> {
        let v: serde_json::Value = serde_json::from_str(raw.get())?;
        Ok(Timestamp::parse(v["timestamp"].as_str().unwrap_or(""))
            .context("timestamp")?
            .unix_nanos())
    };
    let (t0, t1) = (ts(&first.event)?, ts(&last.event)?);
    let (s0, s1) = (first.seq, last.seq);
    let mut rng = SmallRng::seed_from_u64(a.seed);
    let mut ids = Vec::new();
    for _ in 0..50 {
        let c = rng.random_range(s0.saturating_sub(1)..s1.max(s0));
        let page = client
            .query(&[
                ("limit".into(), "20".into()),
                ("cursor".into(), c.to_string()),
            ])
            .await?;
        for e in page.events {
            let v: serde_json::Value = serde_json::from_str(e.event.get())?;
            if let Some(id) = v["id"].as_str() {
                ids.push(id.to_owned());
            }
        }
    }
    let ids = Arc::new(ids);
    let budget = Arc::new(Budget::starting_now(&a));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..a.connections {
        let client = client.clone();
        let budget = Arc::clone(&budget);
        let ids = Arc::clone(&ids);
        let projects = a.projects;
        let workload = a.workload;
        let mut rng = SmallRng::seed_from_u64(a.seed.wrapping_add(w as u64 + 1));
        workers.push(tokio::spawn(async move {
            let mut r = WorkerResult::new();
            const PREFIXES: [&str; 4] = ["Run*", "RunJob*", "Analysis*", "Entity*"];
            while budget.take(1) == 1 {
                let page = match workload {
                    Workload::Pages => true,
                    Workload::Gets => false,
                    _ => rng.random_bool(0.5),
                };
                let t = Instant::now();
                let res = if page {
                    let since = Timestamp::from_unix_nanos(rng.random_range(t0..=t1.max(t0)));
                    let params = vec![
                        (
                            "project_key".to_owned(),
                            project_key(rng.random_range(0..projects)),
                        ),
                        (
                            "type".to_owned(),
                            PREFIXES[rng.random_range(0..PREFIXES.len())].to_owned(),
                        ),
                        ("since".to_owned(), since.to_go_string()),
                        ("limit".to_owned(), "100".to_owned()),
                        ("order".to_owned(), "desc".to_owned()),
                    ];
                    client.query(&params).await.map(|_| ())
                } else {
                    let id = &ids[rng.random_range(0..ids.len())];
                    client.get(id).await.map(|_| ())
                };
                let us = t.elapsed().as_micros().max(1) as u64;
                match res {
                    Ok(()) => {
                        let _ = if page {
                            r.hist.record(us)
                        } else {
                            r.hist2.record(us)
                        };
                        r.units += 1;
                    }
                    Err(e) => {
                        r.errors += 1;
                        r.first_error.get_or_insert(e.to_string());
                    }
                }
            }
            r
        }));
    }
    let (pages, gets, units, errors, first_error) = collect(workers).await?;
    let secs = started.elapsed().as_secs_f64();
    summary(
        &a,
        "read",
        secs,
        units,
        errors,
        first_error,
        &[("page", &pages), ("get", &gets)],
        units as f64 / secs,
    )
}
