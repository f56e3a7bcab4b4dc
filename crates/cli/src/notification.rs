//! `notification add|list|show|update|rm|health|deliveries|delivery|redeliver|test|
//! secret|enable|disable|rotate-key`: project notifications (webhooks).

use crate::{ServerArgs, wire_time};
use anyhow::{Context, bail};
use cds_events_api::{
    ContentMode, DeliveriesQuery, DeliveryStatus, EventFormat, NotificationAuth,
    NotificationFilter, NotificationIn, NotificationOut, OrderedBy, OutcomeKind, SignatureScheme,
};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;

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
    /// Print a notification's last 24 hours (attempts, success rate, p95
    /// latency) and its deliveries pending and failed, as JSON.
    Health(NameArgs),
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
    /// Print the public key of a notification signed with ed25519 (PEM with `--pem`).
    PublicKey(PublicKeyArgs),
    /// Say which notifications an example event (a JSON file, `-` for stdin) would reach.
    Preview(PreviewArgs),
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

#[derive(Debug, Args)]
pub struct PublicKeyArgs {
    #[command(flatten)]
    name: NameArgs,
    /// Print the key as PEM (SubjectPublicKeyInfo) instead of `whpk_…`.
    #[arg(long)]
    pem: bool,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long)]
    project: String,
    /// The example event: a JSON file, or `-` for standard input.
    event: std::path::PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
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
    /// Deliver in sequence order, one at a time (`false` also ends
    /// `--ordered-by`).
    #[arg(long)]
    ordered: Option<bool>,
    /// Order per key: one at a time in sequence order among the events of
    /// one value of this field (`workflow_run_id`, `workflow` or
    /// `repository`), in parallel across values. Not with `--ordered true`.
    #[arg(long)]
    ordered_by: Option<OrderedBy>,
    /// The body sent: `cds` (the full event, the default), `cloudevents`
    /// (CloudEvents 1.0) or `cdevents` (CDEvents 0.5.1; events without a
    /// CDEvents counterpart are not sent).
    #[arg(long)]
    format: Option<EventFormat>,
    /// With `--format cloudevents|cdevents`: `structured` (the default) or
    /// `binary` (`ce-*` headers, the event's data as the body).
    #[arg(long)]
    content_mode: Option<ContentMode>,
    /// How requests are signed: `symmetric` (a shared `whsec_` secret, the
    /// default) or `ed25519` (receivers verify with the public key).
    #[arg(long)]
    signature: Option<SignatureScheme>,
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
    #[arg(long, value_parser = delivery_status)]
    status: Option<DeliveryStatus>,
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
    failed_since: Option<DateTime<Utc>>,
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

fn delivery_status(s: &str) -> Result<DeliveryStatus, String> {
    DeliveryStatus::parse(s)
        .ok_or_else(|| "one of pending, succeeded, failed, cancelled".to_owned())
}

/// `NAME=REGEX` flags into CDS's `{"NAME":{"event":[…]}}`. No splitting on
/// commas: a regular expression may hold one (`a{1,3}`).
fn parse_filters(filters: &[String]) -> anyhow::Result<BTreeMap<String, NotificationFilter>> {
    let mut out: BTreeMap<String, NotificationFilter> = BTreeMap::new();
    for f in filters {
        let (name, expr) = f
            .split_once('=')
            .with_context(|| format!("--filter {f:?}: expected NAME=REGEX"))?;
        out.entry(name.trim().to_owned())
            .or_default()
            .event
            .push(expr.to_owned());
    }
    Ok(out)
}

/// `Name: value` headers.
fn parse_headers(headers: &[String]) -> anyhow::Result<NotificationAuth> {
    let mut out = NotificationAuth::default();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .context("--header: expected `Name: value`, got a line without ':'")?;
        out.headers
            .insert(name.trim().to_owned(), value.trim().to_owned());
    }
    Ok(out)
}

fn print_table(list: &[NotificationOut]) {
    println!(
        "{:<24}  {:<8}  {:<15}  {:<11}  {:<40}  FILTERS",
        "NAME", "ENABLED", "ORDERED", "FORMAT", "URL"
    );
    for n in list {
        let filters: Vec<String> = n
            .filters
            .iter()
            .map(|(k, v)| format!("{k}={}", v.event.join(",")))
            .collect();
        println!(
            "{:<24}  {:<8}  {:<15}  {:<11}  {:<40}  {}",
            n.name,
            n.enabled,
            // `true`, `false`, or the field it is ordered by.
            n.ordered_by
                .map_or_else(|| n.ordered.to_string(), |o| o.to_string()),
            n.format.as_str(),
            n.webhook_url,
            if filters.is_empty() {
                "(every event)".to_owned()
            } else {
                filters.join(" ")
            }
        );
    }
}

fn pretty(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run(cmd: NotificationCommand) -> anyhow::Result<()> {
    match cmd {
        NotificationCommand::Add(a) => {
            let headers = parse_headers(&a.fields.headers)?;
            let input = NotificationIn {
                name: a.name,
                webhook_url: a.fields.url.context("--url is required")?,
                filters: parse_filters(&a.fields.filters)?,
                auth: (!headers.headers.is_empty()).then_some(headers),
                enabled: None,
                ordered: a.fields.ordered,
                ordered_by: a.fields.ordered_by,
                format: a.fields.format,
                content_mode: a.fields.content_mode,
                signature: a.fields.signature,
            };
            let out = a
                .server
                .client(1)?
                .create_notification(&a.project, &input)
                .await?;
            if out.notification.signature == SignatureScheme::Ed25519 {
                eprintln!(
                    "created notification {} in {}; the public key its signatures verify with:",
                    input.name, a.project
                );
            } else {
                eprintln!(
                    "created notification {} in {}; its signing secret, shown this once:",
                    input.name, a.project
                );
            }
            println!("{}", out.secret);
        }
        NotificationCommand::List(a) => {
            let out = a.server.client(1)?.notifications(&a.project).await?;
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
                .notification(&a.project, &a.name)
                .await?;
            pretty(&out)?;
        }
        NotificationCommand::Update(a) => {
            let client = a.server.client(1)?;
            // Start from what is stored: header values come back masked, and
            // a masked value sent back keeps the stored one.
            let current = client.notification(&a.project, &a.name).await?;
            let filters = if a.no_filters {
                BTreeMap::new()
            } else if !a.fields.filters.is_empty() {
                parse_filters(&a.fields.filters)?
            } else {
                current.filters
            };
            let auth = if a.no_headers {
                NotificationAuth::default()
            } else if !a.fields.headers.is_empty() {
                parse_headers(&a.fields.headers)?
            } else {
                current.auth
            };
            let input = NotificationIn {
                name: a.rename.unwrap_or_else(|| a.name.clone()),
                webhook_url: a.fields.url.unwrap_or(current.webhook_url),
                filters,
                auth: Some(auth),
                enabled: None,
                // `--ordered-by` sets the per-key order, `--ordered` alone
                // the other modes; neither keeps the current one.
                ordered: Some(
                    a.fields
                        .ordered
                        .unwrap_or(current.ordered && a.fields.ordered_by.is_none()),
                ),
                ordered_by: match (a.fields.ordered_by, a.fields.ordered) {
                    (Some(by), _) => Some(by),
                    (None, Some(_)) => None,
                    (None, None) => current.ordered_by,
                },
                // Absent: the server keeps the current ones.
                format: a.fields.format,
                content_mode: a.fields.content_mode,
                signature: a.fields.signature,
            };
            let out = client
                .update_notification(&a.project, &a.name, &input)
                .await?;
            pretty(&out)?;
        }
        NotificationCommand::Rm(a) => {
            a.server
                .client(1)?
                .delete_notification(&a.project, &a.name)
                .await?;
            eprintln!("deleted notification {} of {}", a.name, a.project);
        }
        NotificationCommand::Health(a) => {
            let out = a
                .server
                .client(1)?
                .notification_health(&a.project, &a.name)
                .await?;
            pretty(&out)?;
        }
        NotificationCommand::Deliveries(a) => {
            let out = a
                .server
                .client(1)?
                .deliveries(
                    &a.project,
                    &a.name,
                    &DeliveriesQuery {
                        status: a.status.map(|s| s.as_str().to_owned()),
                        cursor: None,
                        limit: Some(a.limit),
                    },
                )
                .await?;
            if a.json {
                pretty(&out)?;
            } else {
                println!(
                    "{:<26}  {:<10}  {:>8}  {:>10}  {:<25}  EVENT",
                    "ID", "STATUS", "ATTEMPTS", "SEQ", "NEXT ATTEMPT"
                );
                for d in &out.deliveries {
                    let next = d.next_attempt_at.as_ref().map(wire_time);
                    println!(
                        "{:<26}  {:<10}  {:>8}  {:>10}  {:<25}  {}",
                        d.id,
                        d.status,
                        d.attempts,
                        d.event_seq,
                        next.as_deref().unwrap_or("-"),
                        d.event_id
                    );
                }
            }
        }
        NotificationCommand::Delivery(a) => {
            let out = a
                .server
                .client(1)?
                .delivery(&a.project, &a.name, &a.id)
                .await?;
            pretty(&out)?;
        }
        NotificationCommand::Redeliver(a) => {
            let client = a.server.client(1)?;
            match (a.id, a.failed_since) {
                (Some(id), None) => {
                    client.redeliver(&a.project, &a.name, &id).await?;
                    eprintln!("delivery {id} queued again");
                }
                (None, Some(since)) => {
                    let out = client
                        .redeliver_failed_since(&a.project, &a.name, since)
                        .await?;
                    eprintln!("{} failed deliveries queued again", out.redelivered);
                }
                _ => bail!("give a delivery id or --failed-since"),
            }
        }
        NotificationCommand::Test(a) => {
            let out = a
                .server
                .client(1)?
                .test_notification(&a.project, &a.name)
                .await?;
            pretty(&out)?;
            if out.outcome != OutcomeKind::Success {
                bail!("the endpoint did not accept the ping");
            }
        }
        NotificationCommand::Secret(a) => {
            let client = a.server.client(1)?;
            let out = if a.rotate {
                client
                    .rotate_notification_secret(&a.project, &a.name)
                    .await?
            } else {
                client.notification_secret(&a.project, &a.name).await?
            };
            println!("{}", out.secret);
            if let Some(prev) = out.previous {
                eprintln!(
                    "the previous secret stays valid until {}:",
                    wire_time(&prev.valid_until)
                );
                println!("{}", prev.secret);
            }
        }
        NotificationCommand::PublicKey(a) => {
            let n = &a.name;
            let out = n
                .server
                .client(1)?
                .notification_public_key(&n.project, &n.name)
                .await?;
            let show = |k: &cds_events_api::PublicKey| {
                if a.pem {
                    k.pem.trim_end().to_owned()
                } else {
                    k.public_key.clone()
                }
            };
            println!("{}", show(&out.current));
            if let Some(prev) = &out.previous {
                eprintln!(
                    "the previous key stays valid until {}:",
                    wire_time(&prev.valid_until)
                );
                println!("{}", show(&prev.key));
            }
        }
        NotificationCommand::Preview(a) => {
            let text = if a.event.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&a.event)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", a.event.display()))?
            };
            let out = a
                .server
                .client(1)?
                .preview_notifications(&a.project, &text)
                .await?;
            if a.json {
                pretty(&out)?;
            } else {
                for m in &out.notifications {
                    let why = match (&m.reason, m.matches) {
                        (_, true) if m.filters.is_empty() => "every event".to_owned(),
                        (_, true) => format!("filters {}", m.filters.join(", ")),
                        (Some(r), false) => r.clone(),
                        (None, false) => String::new(),
                    };
                    let verdict = if m.matches { "matches" } else { "no" };
                    println!("{:<24} {verdict:<8} {why}", m.name);
                }
            }
        }
        NotificationCommand::Enable(a) => set_enabled(a, true, "enabled").await?,
        NotificationCommand::Disable(a) => set_enabled(a, false, "disabled").await?,
        NotificationCommand::RotateKey(a) => {
            a.server.client(1)?.rotate_webhooks_key().await?;
            eprintln!("every stored header and secret is now encrypted under a new master key");
        }
    }
    Ok(())
}

/// `POST …/{name}/enable` or `…/disable`.
async fn set_enabled(a: NameArgs, enabled: bool, done: &str) -> anyhow::Result<()> {
    a.server
        .client(1)?
        .set_notification_enabled(&a.project, &a.name, enabled)
        .await?;
    eprintln!("notification {} of {} {done}", a.name, a.project);
    Ok(())
}
