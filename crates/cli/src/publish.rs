//! `publish`: one event from flags, or JSON / NDJSON from a file or stdin.

use crate::ServerArgs;
use anyhow::{Context, bail};
use cds_events_client::{Client, ClientError};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};
use std::io::{BufRead, Read};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Event type (with flags): `ProjectCreated`, `RunJobEnded`, …
    #[arg(long = "type", conflicts_with = "file")]
    event_type: Option<String>,
    /// Project key (with flags).
    #[arg(long, conflicts_with = "file")]
    project: Option<String>,
    /// A context field, `name=value` (repeatable): `--field workflow=build`.
    #[arg(long = "field", value_name = "NAME=VALUE", conflicts_with = "file")]
    fields: Vec<String>,
    /// The payload, as JSON text.
    #[arg(long, conflicts_with = "file")]
    payload: Option<String>,
    /// Event id (default: assigned by the server).
    #[arg(long, conflicts_with = "file")]
    id: Option<String>,
    /// A file of events (`-` for stdin): one JSON object or array, or NDJSON.
    #[arg(long, short, value_parser = crate::existing_file)]
    file: Option<PathBuf>,
    /// Read the file as NDJSON (implied by a `.ndjson`/`.jsonl` name, and for stdin).
    #[arg(long)]
    ndjson: bool,
    /// Events per request when streaming NDJSON.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Print one `seq id` line per stored event.
    #[arg(long, short)]
    verbose: bool,
}

pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let client = args.server.client(4)?;
    match &args.file {
        None => publish_flags(&client, &args).await,
        Some(path) => {
            let is_stdin = path.as_os_str() == "-";
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if args.ndjson || is_stdin || matches!(ext, "ndjson" | "jsonl") {
                publish_stream(&client, &args, path, is_stdin).await
            } else {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let out = client
                    .publish_raw(text, false)
                    .await
                    .map_err(|e| explain(e, 0))?;
                report(&out, args.verbose);
                Ok(())
            }
        }
    }
}

async fn publish_flags(client: &Client, args: &PublishArgs) -> anyhow::Result<()> {
    let Some(t) = &args.event_type else {
        bail!("give --type (and its fields), or --file")
    };
    let mut obj = Map::new();
    if let Some(id) = &args.id {
        obj.insert("id".into(), Value::String(id.clone()));
    }
    obj.insert("type".into(), Value::String(t.clone()));
    if let Some(p) = &args.project {
        obj.insert("project_key".into(), Value::String(p.clone()));
    }
    for f in &args.fields {
        let Some((k, v)) = f.split_once('=') else {
            bail!("--field {f:?}: expected NAME=VALUE")
        };
        let value = match k {
            "run_number" | "run_attempt" => Value::from(
                v.parse::<i64>()
                    .with_context(|| format!("--field {k}: not an integer"))?,
            ),
            _ => Value::String(v.to_owned()),
        };
        obj.insert(k.to_owned(), value);
    }
    if let Some(p) = &args.payload {
        let v: Value = serde_json::from_str(p).context("--payload is not valid JSON")?;
        obj.insert("payload".into(), v);
    }
    let out = client
        .publish_raw(Value::Object(obj).to_string(), false)
        .await
        .map_err(|e| explain(e, 0))?;
    for a in &out {
        println!("{} {}", a.seq, a.id);
    }
    Ok(())
}

async fn publish_stream(
    client: &Client,
    args: &PublishArgs,
    path: &PathBuf,
    is_stdin: bool,
) -> anyhow::Result<()> {
    let (reader, size): (Box<dyn Read>, Option<u64>) = if is_stdin {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = f.metadata().ok().map(|m| m.len());
        (Box::new(f), size)
    };
    // A bar for large inputs only; small ones finish before it would help.
    let bar = match size {
        Some(n) if n > 1024 * 1024 => {
            let b = ProgressBar::new(n);
            b.set_style(
                ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        }
        Some(_) => ProgressBar::hidden(),
        None => ProgressBar::new_spinner(),
    };
    let started = std::time::Instant::now();
    let mut lines = std::io::BufReader::new(reader).lines();
    let mut line_no = 0usize;
    let (mut stored, mut dups) = (0usize, 0usize);
    loop {
        let mut body = String::new();
        let mut first_line = 0usize;
        let mut n = 0usize;
        for line in lines.by_ref() {
            let line = line.context("reading input")?;
            line_no += 1;
            bar.inc(line.len() as u64 + 1);
            if line.trim().is_empty() {
                continue;
            }
            if n == 0 {
                first_line = line_no;
            }
            body.push_str(&line);
            body.push('\n');
            n += 1;
            if n >= args.batch.max(1) {
                break;
            }
        }
        if n == 0 {
            break;
        }
        let out = client
            .publish_raw(body, true)
            .await
            .map_err(|e| explain(e, first_line))?;
        dups += out.iter().filter(|a| a.duplicate).count();
        stored += out.len();
        bar.set_message(format!("{stored} events"));
        if args.verbose {
            report(&out, true);
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "published {stored} events ({dups} already stored) in {secs:.2}s, {:.0} events/s",
        stored as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn report(out: &[cds_events_client::Appended], verbose: bool) {
    if verbose || out.len() == 1 {
        for a in out {
            println!(
                "{} {}{}",
                a.seq,
                a.id,
                if a.duplicate { " (already stored)" } else { "" }
            );
        }
    } else {
        let dups = out.iter().filter(|a| a.duplicate).count();
        println!("published {} events ({dups} already stored)", out.len());
    }
}

/// Turns a refused batch into a readable error; NDJSON lines are numbered
/// from the start of the input (`first_line` is the batch's first line).
fn explain(e: ClientError, first_line: usize) -> anyhow::Error {
    if let ClientError::Api { body, .. } = &e {
        let mut msg = body.message.clone();
        for d in &body.details {
            let what = d
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("invalid");
            match (
                d.get("line").and_then(Value::as_u64),
                d.get("index").and_then(Value::as_u64),
            ) {
                (Some(l), _) if first_line > 0 => {
                    msg.push_str(&format!("\n  line {}: {what}", first_line + l as usize - 1))
                }
                (_, Some(i)) => msg.push_str(&format!("\n  event {i}: {what}")),
                _ => {}
            }
        }
        return anyhow::anyhow!(msg);
    }
    e.into()
}
