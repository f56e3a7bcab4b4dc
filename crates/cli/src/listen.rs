//! `listen`: follow events live, reconnecting without gaps.

use crate::ServerArgs;
use cds_events_api::FilterText;
use cds_events_client::{ClientError, Stored};
use clap::Args;
use futures_util::TryStreamExt;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The query API's filters, as flags.
    #[command(flatten)]
    filters: FilterText,
    /// The job queue (as `cdsctl events listen --queue`): job state changes.
    #[arg(long)]
    queue: bool,
    /// Start after this sequence number, or at this RFC 3339 time; without it, from now.
    #[arg(long)]
    since: Option<String>,
    /// Print each event as JSON (`{"seq":…,"event":…}`) instead of a line.
    #[arg(long)]
    json: bool,
    /// Stop after this many events.
    #[arg(long)]
    count: Option<u64>,
}

const QUEUE: &str = "RunJobEnqueued,RunJobBlocked,RunJobCancelled,RunJobSkipped,RunJobStopped,RunJobScheduled,RunJobBuilding,RunJobEnded";

pub async fn run(a: ListenArgs) -> anyhow::Result<()> {
    let client = a.server.client(1)?;
    let mut params = a.filters.to_pairs();
    if a.queue && a.filters.types.is_none() {
        params.push(("type".into(), QUEUE.to_owned()));
    }
    // A number is a sequence to resume after; anything else a time filter
    // replayed from the start of the log.
    let last: Option<u64> = match a.since.as_deref().map(str::trim) {
        None => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                params.push(("since".into(), s.to_owned()));
                Some(0)
            }
        },
    };
    let mut printed = 0u64;
    let live = client.live_reporting(&params, last, |r| {
        let after = r.after.unwrap_or(0);
        eprintln!(
            "{}; resuming after {after} in {:.1}s",
            r.reason,
            r.wait.as_secs_f64()
        );
    });
    let mut live = std::pin::pin!(live);
    while let Some(Stored { seq, event }) = live.try_next().await.map_err(|e| match e {
        ClientError::Api { body, .. } => anyhow::anyhow!("{} ({})", body.message, body.code),
        e => e.into(),
    })? {
        if a.json {
            println!("{{\"seq\":{seq},\"event\":{}}}", event.get());
        } else {
            let v: Value = serde_json::from_str(event.get())?;
            let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            println!(
                "{seq:>10}  {}  {:<24}  {:<10}  {:<12}  {}",
                s("timestamp"),
                s("type"),
                s("project_key"),
                s("status"),
                s("id")
            );
        }
        printed += 1;
        if a.count.is_some_and(|c| printed >= c) {
            break;
        }
    }
    Ok(())
}
