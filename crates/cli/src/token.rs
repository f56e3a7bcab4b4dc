//! `token create|list|revoke|audit`.

use crate::ServerArgs;
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

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
    expires_at: Option<String>,
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
            let client = a.server.client(1)?;
            let mut body = json!({"name": a.name, "grants": a.grants});
            if let Some(e) = a.expires_at {
                body["expires_at"] = Value::String(e);
            }
            let out = client
                .send_json(reqwest::Method::POST, "/v2/auth/tokens", Some(&body))
                .await?;
            let token = out["token"].as_str().context("no token in the answer")?;
            eprintln!(
                "created token {} ({}); the secret below is shown this once:",
                out["id"], out["name"]
            );
            println!("{token}");
        }
        TokenCommand::List(a) => {
            let out = a.server.client(1)?.get_json("/v2/auth/tokens").await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{:<18}  {:<30}  {:<25}  GRANTS", "ID", "NAME", "EXPIRES");
                for t in out.as_array().into_iter().flatten() {
                    let grants: Vec<&str> = t["grants"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!(
                        "{:<18}  {:<30}  {:<25}  {}",
                        t["id"].as_str().unwrap_or(""),
                        t["name"].as_str().unwrap_or(""),
                        t["expires_at"].as_str().unwrap_or("never"),
                        grants.join(" ")
                    );
                }
            }
        }
        TokenCommand::Revoke(a) => {
            a.server
                .client(1)?
                .send_json(
                    reqwest::Method::DELETE,
                    &format!("/v2/auth/tokens/{}", a.id),
                    None,
                )
                .await?;
            eprintln!("revoked {}", a.id);
        }
        TokenCommand::Audit(a) => {
            let out = a.server.client(1)?.get_json("/v2/auth/audit").await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for e in out.as_array().into_iter().flatten() {
                    println!(
                        "{}  {:<12}  {:<14}  {}",
                        e["at"].as_str().unwrap_or(""),
                        e["actor"].as_str().unwrap_or(""),
                        e["action"].as_str().unwrap_or(""),
                        e["target"].as_str().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(())
}
