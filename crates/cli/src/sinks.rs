//! `sinks list|pause|resume|replay` (admin).

use crate::ServerArgs;
use cds_events_api::SinkOut;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum SinksCommand {
    /// Every sink: kind, state, position, lag, last error.
    List(ListArgs),
    /// Stop a sink sending (its position stays; events wait in the log).
    Pause(NameArgs),
    /// Send again from where the sink stands.
    Resume(NameArgs),
    /// Send every event again from a sequence number on.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The sink's name in `[[sinks]]`.
    name: String,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The sink's name in `[[sinks]]`.
    name: String,
    /// The first sequence number to send again.
    #[arg(long)]
    from: u64,
}

fn row(s: &SinkOut) -> String {
    format!(
        "{:<20}  {:<6}  {:<12}  {:>10}  {:>10}  {:>9.1}  {}",
        s.name,
        s.kind,
        serde_json::to_value(s.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        s.position,
        s.lag_events,
        s.lag_seconds,
        s.last_error.as_deref().unwrap_or("")
    )
}

pub async fn run(cmd: SinksCommand) -> anyhow::Result<()> {
    match cmd {
        SinksCommand::List(a) => {
            let out = a.server.client(1)?.sinks().await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{:<20}  {:<6}  {:<12}  {:>10}  {:>10}  {:>9}  LAST ERROR",
                    "NAME", "KIND", "STATE", "POSITION", "LAG", "LAG (s)"
                );
                for s in &out {
                    println!("{}", row(s));
                }
            }
        }
        SinksCommand::Pause(a) => {
            let s = a.server.client(1)?.pause_sink(&a.name).await?;
            eprintln!("paused {} at position {}", s.name, s.position);
        }
        SinksCommand::Resume(a) => {
            let s = a.server.client(1)?.resume_sink(&a.name).await?;
            eprintln!("resumed {} from position {}", s.name, s.position);
        }
        SinksCommand::Replay(a) => {
            let r = a.server.client(1)?.replay_sink(&a.name, a.from).await?;
            eprintln!("{} sends again from sequence {}", r.name, r.from);
        }
    }
    Ok(())
}
