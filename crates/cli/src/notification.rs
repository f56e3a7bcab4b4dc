//! `notification add|list|show|update|rm|deliveries|delivery|redeliver|test|
//! secret|enable|disable|rotate-key`: project notifications (webhooks).

use crate::ServerArgs;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

#[derive(Debug, Subcommand)]
pub enum NotificationCommand {
    /// Create a notification; its signing secret is printed once.
    Add(AddArgs),
    /// List a project's notifications.
    List(ProjectArgs),
    /// Show one notification (header values masked).
    Show(NameArgs),
    /// Change a notification: only the flags given change.
    Update(UpdateArgs),
    /// Delete a notification and its pending deliveries.
    Rm(NameArgs),
    /// List a notification's deliveries, newest first.
    Deliveries(DeliveriesArgs),
    /// Show one delivery with every attempt.
    Delivery(DeliveryArgs),
    /// Send one delivery again, or every failed one since a time.
    Redeliver(RedeliverArgs),
    /// Send a signed ping now and print how the endpoint answered.
    Test(NameArgs),
    /// Print the signing secret(s) receivers should accept; `--rotate` makes a new one.
    Secret(SecretArgs),
    /// Turn a notification back on (pending deliveries resume).
    Enable(NameArgs),
    /// Turn a notification off (no new deliveries; pending ones wait).
    Disable(NameArgs),
    /// Re-encrypt stored headers and secrets under a new master key (admin).
    RotateKey(ServerOnly),
}

#[derive(Debug, Args)]
pub struct ServerOnly {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct ProjectArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The project key.
    #[arg(long)]
    project: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    project: String,
    /// The notification's name.
    name: String,
}

/// What a notification is made of, as flags.
#[derive(Debug, Args)]
pub struct Fields {
    /// Where to POST the events.
    #[arg(long)]
    url: Option<String>,
    /// A filter expression, `NAME=REGEX`, matched against the event type
    /// (unanchored); repeatable, and repeating a NAME adds to that filter.
    /// No filter: every event of the project.
    #[arg(long = "filter")]
    filters: Vec<String>,
    /// A header sent with every call, `Name: value` (stored encrypted); repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Deliver in sequence order, one at a time.
    #[arg(long)]
    ordered: Option<bool>,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    project: String,
    /// A name unique in the project.
    name: String,
    #[command(flatten)]
    fields: Fields,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    project: String,
    name: String,
    /// A new name.
    #[arg(long)]
    rename: Option<String>,
    /// Drop every filter (then every event of the project matches).
    #[arg(long, conflicts_with = "filters")]
    no_filters: bool,
    /// Drop every header.
    #[arg(long, conflicts_with = "headers")]
    no_headers: bool,
    #[command(flatten)]
    fields: Fields,
}

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    project: String,
    name: String,
    /// pending, succeeded, failed or cancelled.
    #[arg(long)]
    status: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct DeliveryArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    project: String,
    name: String,
    /// The delivery id (`msg_…`, the `webhook-id` header receivers saw).
    id: String,
}

#[derive(Debug, Args)]
pub struct RedeliverArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    project: String,
    name: String,
    /// The delivery to send again.
    #[arg(
        required_unless_present = "failed_since",
        conflicts_with = "failed_since"
    )]
    id: Option<String>,
    /// Send again every failed delivery created since this RFC 3339 time.
    #[arg(long)]
    failed_since: Option<String>,
}

#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    project: String,
    name: String,
    /// Make a new secret; the old one stays valid for the configured overlap.
    #[arg(long)]
    rotate: bool,
}

fn path(project: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("/v2/project/{project}/notification/{n}"),
        None => format!("/v2/project/{project}/notification"),
    }
}

/// `NAME=REGEX` flags into CDS's `{"NAME":{"event":[…]}}`. No splitting on
/// commas: a regular expression may hold one (`a{1,3}`).
fn parse_filters(filters: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut out: Map<String, Value> = Map::new();
    for f in filters {
        let (name, expr) = f
            .split_once('=')
            .with_context(|| format!("--filter {f:?}: expected NAME=REGEX"))?;
        let entry = out
            .entry(name.trim().to_owned())
            .or_insert_with(|| json!({"event": []}));
        if let Some(list) = entry["event"].as_array_mut() {
            list.push(Value::String(expr.to_owned()));
        }
    }
    Ok(out)
}

/// `Name: value` headers into a JSON object.
fn parse_headers(headers: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .context("--header: expected `Name: value`, got a line without ':'")?;
        out.insert(
            name.trim().to_owned(),
            Value::String(value.trim().to_owned()),
        );
    }
    Ok(out)
}

fn print_table(list: &Value) {
    println!(
        "{:<24}  {:<8}  {:<7}  {:<40}  FILTERS",
        "NAME", "ENABLED", "ORDERED", "URL"
    );
    for n in list.as_array().into_iter().flatten() {
        let filters: Vec<String> = n["filters"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let exprs: Vec<&str> = v["event"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                format!("{k}={}", exprs.join(","))
            })
            .collect();
        println!(
            "{:<24}  {:<8}  {:<7}  {:<40}  {}",
            n["name"].as_str().unwrap_or(""),
            n["enabled"],
            n["ordered"],
            n["webhook_url"].as_str().unwrap_or(""),
            if filters.is_empty() {
                "(every event)".to_owned()
            } else {
                filters.join(" ")
            }
        );
    }
}

fn pretty(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `POST …/{name}/enable` or `…/disable`.
async fn set_enabled(a: NameArgs, action: &str, done: &str) -> anyhow::Result<()> {
    let at = format!("{}/{action}", path(&a.project, Some(&a.name)));
    a.server
        .client(1)?
        .send_json(Method::POST, &at, None)
        .await?;
    eprintln!("notification {} of {} {done}", a.name, a.project);
    Ok(())
}

pub async fn run(cmd: NotificationCommand) -> anyhow::Result<()> {
    match cmd {
        NotificationCommand::Add(a) => {
            let url = a.fields.url.context("--url is required")?;
            let mut body = json!({"name": a.name, "webhook_url": url});
            let filters = parse_filters(&a.fields.filters)?;
            if !filters.is_empty() {
                body["filters"] = Value::Object(filters);
            }
            let headers = parse_headers(&a.fields.headers)?;
            if !headers.is_empty() {
                body["auth"] = json!({"headers": headers});
            }
            if let Some(o) = a.fields.ordered {
                body["ordered"] = Value::Bool(o);
            }
            let out = a
                .server
                .client(1)?
                .send_json(Method::POST, &path(&a.project, None), Some(&body))
                .await?;
            eprintln!(
                "created notification {} in {}; its signing secret, shown this once:",
                a.name, a.project
            );
            println!(
                "{}",
                out["secret"].as_str().context("no secret in the answer")?
            );
        }
        NotificationCommand::List(a) => {
            let out = a
                .server
                .client(1)?
                .get_json(&path(&a.project, None))
                .await?;
            if a.json {
                pretty(&out)?;
            } else {
                print_table(&out);
            }
        }
        NotificationCommand::Show(a) => {
            let out = a
                .server
                .client(1)?
                .get_json(&path(&a.project, Some(&a.name)))
                .await?;
            pretty(&out)?;
        }
        NotificationCommand::Update(a) => {
            let client = a.server.client(1)?;
            let at = path(&a.project, Some(&a.name));
            // Start from what is stored: header values come back masked, and
            // a masked value sent back keeps the stored one.
            let current = client.get_json(&at).await?;
            let mut body = json!({
                "name": a.rename.as_deref().unwrap_or(&a.name),
                "webhook_url": a.fields.url.as_deref().map_or(current["webhook_url"].clone(), |u| json!(u)),
                "filters": current["filters"],
                "auth": current["auth"],
                "ordered": a.fields.ordered.map_or(current["ordered"].clone(), Value::Bool),
            });
            if a.no_filters {
                body["filters"] = json!({});
            } else if !a.fields.filters.is_empty() {
                body["filters"] = Value::Object(parse_filters(&a.fields.filters)?);
            }
            if a.no_headers {
                body["auth"] = json!({"headers": {}});
            } else if !a.fields.headers.is_empty() {
                body["auth"] = json!({"headers": parse_headers(&a.fields.headers)?});
            }
            let out = client.send_json(Method::PUT, &at, Some(&body)).await?;
            pretty(&out)?;
        }
        NotificationCommand::Rm(a) => {
            a.server
                .client(1)?
                .send_json(Method::DELETE, &path(&a.project, Some(&a.name)), None)
                .await?;
            eprintln!("deleted notification {} of {}", a.name, a.project);
        }
        NotificationCommand::Deliveries(a) => {
            let mut q = format!(
                "{}/deliveries?limit={}",
                path(&a.project, Some(&a.name)),
                a.limit
            );
            if let Some(s) = &a.status {
                q.push_str(&format!("&status={s}"));
            }
            let out = a.server.client(1)?.get_json(&q).await?;
            if a.json {
                pretty(&out)?;
            } else {
                println!(
                    "{:<26}  {:<10}  {:>8}  {:>10}  {:<25}  EVENT",
                    "ID", "STATUS", "ATTEMPTS", "SEQ", "NEXT ATTEMPT"
                );
                for d in out["deliveries"].as_array().into_iter().flatten() {
                    println!(
                        "{:<26}  {:<10}  {:>8}  {:>10}  {:<25}  {}",
                        d["id"].as_str().unwrap_or(""),
                        d["status"].as_str().unwrap_or(""),
                        d["attempts"],
                        d["event_seq"],
                        d["next_attempt_at"].as_str().unwrap_or("-"),
                        d["event_id"].as_str().unwrap_or("")
                    );
                }
            }
        }
        NotificationCommand::Delivery(a) => {
            let out = a
                .server
                .client(1)?
                .get_json(&format!(
                    "{}/deliveries/{}",
                    path(&a.project, Some(&a.name)),
                    a.id
                ))
                .await?;
            pretty(&out)?;
        }
        NotificationCommand::Redeliver(a) => {
            let base = path(&a.project, Some(&a.name));
            let client = a.server.client(1)?;
            match (a.id, a.failed_since) {
                (Some(id), None) => {
                    client
                        .send_json(
                            Method::POST,
                            &format!("{base}/deliveries/{id}/redeliver"),
                            None,
                        )
                        .await?;
                    eprintln!("delivery {id} queued again");
                }
                (None, Some(since)) => {
                    let since_q: String =
                        url::form_urlencoded::byte_serialize(since.as_bytes()).collect();
                    let out = client
                        .send_json(
                            Method::POST,
                            &format!("{base}/redeliver?since={since_q}"),
                            None,
                        )
                        .await?;
                    eprintln!("{} failed deliveries queued again", out["redelivered"]);
                }
                _ => bail!("give a delivery id or --failed-since"),
            }
        }
        NotificationCommand::Test(a) => {
            let out = a
                .server
                .client(1)?
                .send_json(
                    Method::POST,
                    &format!("{}/test", path(&a.project, Some(&a.name))),
                    None,
                )
                .await?;
            pretty(&out)?;
            if out["outcome"] != "success" {
                bail!("the endpoint did not accept the ping");
            }
        }
        NotificationCommand::Secret(a) => {
            let base = path(&a.project, Some(&a.name));
            let client = a.server.client(1)?;
            let out = if a.rotate {
                client
                    .send_json(Method::POST, &format!("{base}/secret/rotate"), None)
                    .await?
            } else {
                client.get_json(&format!("{base}/secret")).await?
            };
            println!(
                "{}",
                out["secret"].as_str().context("no secret in the answer")?
            );
            if let Some(prev) = out.get("previous").filter(|p| !p.is_null()) {
                eprintln!(
                    "the previous secret stays valid until {}:",
                    prev["valid_until"].as_str().unwrap_or("?")
                );
                println!("{}", prev["secret"].as_str().unwrap_or(""));
            }
        }
        NotificationCommand::Enable(a) => set_enabled(a, "enable", "enabled").await?,
        NotificationCommand::Disable(a) => set_enabled(a, "disable", "disabled").await?,
        NotificationCommand::RotateKey(a) => {
            a.server
                .client(1)?
                .send_json(Method::POST, "/v2/admin/webhooks/rotate-key", None)
                .await?;
            eprintln!("every stored header and secret is now encrypted under a new master key");
        }
    }
    Ok(())
}
