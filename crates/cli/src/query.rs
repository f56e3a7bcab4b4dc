//! `query` and `types`.

use crate::ServerArgs;
use cds_events_api::FilterText;
use clap::{Args, ValueEnum};
use serde_json::Value;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    /// One `{"seq": …, "event": …}` object per line.
    Json,
    /// One event per line exactly as stored, ids and times included: what
    /// `publish -f` reads back (a copy of a log into another server keeps
    /// ids and order).
    Ndjson,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The query API's filters, as flags.
    #[command(flatten)]
    filters: FilterText,
    /// RFC 3339 lower bound on the event time.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339 upper bound on the event time.
    #[arg(long)]
    until: Option<String>,
    /// Continue after this sequence number (a previous `next_cursor`).
    #[arg(long)]
    cursor: Option<u64>,
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Newest first.
    #[arg(long)]
    desc: bool,
    /// Follow `next_cursor` until the end.
    #[arg(long)]
    all: bool,
    #[arg(long, short, value_enum, default_value = "table")]
    output: Output,
}

pub async fn run(a: QueryArgs) -> anyhow::Result<()> {
    let client = a.server.client(1)?;
    let mut params = a.filters.to_pairs();
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = v {
            params.push((k.to_owned(), v.clone()));
        }
    }
    params.push(("limit".into(), a.limit.to_string()));
    params.push(("order".into(), if a.desc { "desc" } else { "asc" }.into()));
    let mut cursor = a.cursor;
    if matches!(a.output, Output::Table) {
        println!(
            "{:>10}  {:<30}  {:<24}  {:<10}  {:<12}  ID",
            "SEQ", "TIMESTAMP", "TYPE", "PROJECT", "STATUS"
        );
    }
    loop {
        let mut p = params.clone();
        if let Some(c) = cursor {
            p.push(("cursor".into(), c.to_string()));
        }
        let page = client.query(&p).await?;
        for item in &page.events {
            match a.output {
                Output::Json => println!("{{\"seq\":{},\"event\":{}}}", item.seq, item.event.get()),
                Output::Ndjson => println!("{}", item.event.get()),
                Output::Table => {
                    let v: Value = serde_json::from_str(item.event.get())?;
                    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    println!(
                        "{:>10}  {:<30}  {:<24}  {:<10}  {:<12}  {}",
                        item.seq,
                        s("timestamp"),
                        s("type"),
                        s("project_key"),
                        s("status"),
                        s("id")
                    );
                }
            }
        }
        match page.next_cursor {
            Some(c) if a.all => cursor = Some(c),
            Some(c) => {
                if matches!(a.output, Output::Table) {
                    eprintln!("more: --cursor {c}");
                }
                break;
            }
            None => break,
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct TypesArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Print the catalogue built into this binary instead of asking a server.
    #[arg(long)]
    offline: bool,
    #[arg(long, short, value_enum, default_value = "table")]
    output: CatalogueOutput,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CatalogueOutput {
    Table,
    Json,
}

pub async fn types(a: TypesArgs) -> anyhow::Result<()> {
    let cat: Value = if a.offline {
        serde_json::to_value(cds_events_server::routes::types::catalogue(""))?
    } else {
        a.server.client(1)?.get_json("/v2/events/types").await?
    };
    match a.output {
        CatalogueOutput::Json => println!("{}", serde_json::to_string_pretty(&cat)?),
        CatalogueOutput::Table => {
            for f in cat["families"].as_array().into_iter().flatten() {
                let fields: Vec<String> = f["fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| {
                        let n = x["name"].as_str().unwrap_or("");
                        if x["optional"].as_bool() == Some(true) {
                            format!("{n}?")
                        } else {
                            n.to_owned()
                        }
                    })
                    .collect();
                let types: Vec<&str> = f["types"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{} ({})\n  types:  {}\n  fields: {}",
                    f["name"].as_str().unwrap_or(""),
                    f["scope"].as_str().unwrap_or(""),
                    types.join(", "),
                    fields.join(", ")
                );
            }
        }
    }
    Ok(())
}
