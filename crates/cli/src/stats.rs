//! `stats`: events per time bucket and family (`GET /v2/events/stats`).

use crate::ServerArgs;
use clap::Args;

#[derive(Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// RFC 3339, inclusive [default: one hour before `--until`].
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339, exclusive [default: now].
    #[arg(long)]
    until: Option<String>,
    /// Bucket width: `60s`, `5m`, `1h` [default: 60s].
    #[arg(long)]
    step: Option<String>,
    /// Print the server's JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(a: StatsArgs) -> anyhow::Result<()> {
    let client = a.server.client(1)?;
    let out = client
        .stats(a.since.as_deref(), a.until.as_deref(), a.step.as_deref())
        .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    // One column per family that occurs in the window, in catalogue order.
    let seen: Vec<&String> = out
        .families
        .iter()
        .filter(|f| out.buckets.iter().any(|b| b.by_family.contains_key(*f)))
        .collect();
    let mut header = format!("{:<24}  {:>8}", "START", "TOTAL");
    for f in &seen {
        header.push_str(&format!("  {f:>12}"));
    }
    println!("{header}");
    for b in &out.buckets {
        let mut line = format!("{:<24}  {:>8}", b.start, b.total);
        for f in &seen {
            line.push_str(&format!(
                "  {:>12}",
                b.by_family.get(*f).copied().unwrap_or(0)
            ));
        }
        println!("{line}");
    }
    println!("{} events from {} to {}", out.total, out.since, out.until);
    Ok(())
}
