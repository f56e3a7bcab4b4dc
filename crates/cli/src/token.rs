//! `token create|list|revoke|audit`.

use crate::{ServerArgs, wire_time};
use cds_events_api::TokenIn;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create(CreateArgs),
    /// List the active tokens (never their secrets).
    List(ListArgs),
    /// Revoke a token; effective for the next request.
    Revoke(RevokeArgs),
    /// Show the audit trail of token changes.
    Audit(ListArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// A name saying what the token is for.
    #[arg(long)]
    name: String,
    /// A grant (repeatable): admin, publish, publish:PROJ, read:PROJ, read:*, read-global, manage-notifications:PROJ.
    #[arg(long = "grant", required = true)]
    grants: Vec<String>,
    /// RFC 3339 expiry.
    #[arg(long)]
    expires_at: Option<DateTime<Utc>>,
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
pub struct RevokeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The token id (from `token list`).
    id: String,
}

pub async fn run(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create(a) => {
            let input = TokenIn {
                name: a.name,
                grants: a.grants,
                expires_at: a.expires_at,
            };
            let out = a.server.client(1)?.create_token(&input).await?;
            eprintln!(
                "created token {:?} ({:?}); the secret below is shown this once:",
                out.info.id, out.info.name
            );
            println!("{}", out.token);
        }
        TokenCommand::List(a) => {
            let out = a.server.client(1)?.tokens().await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{:<18}  {:<30}  {:<25}  GRANTS", "ID", "NAME", "EXPIRES");
                for t in &out {
                    let expires = t.expires_at.map(|e| wire_time(&e));
                    println!(
                        "{:<18}  {:<30}  {:<25}  {}",
                        t.id,
                        t.name,
                        expires.as_deref().unwrap_or("never"),
                        t.grants.join(" ")
                    );
                }
            }
        }
        TokenCommand::Revoke(a) => {
            a.server.client(1)?.revoke_token(&a.id).await?;
            eprintln!("revoked {}", a.id);
        }
        TokenCommand::Audit(a) => {
            let out = a.server.client(1)?.audit(None).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for e in &out {
                    println!(
                        "{}  {:<12}  {:<14}  {}",
                        wire_time(&e.at),
                        e.actor,
                        e.action,
                        e.target
                    );
                }
            }
        }
    }
    Ok(())
}
