//! `serve` and `config`.

use anyhow::Context;
use cds_events_log::sqlite::Durability;
use cds_events_server::config::Config;
use clap::Args;
use serde_json::{Map, Value};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "CDS_EVENTS_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8090].
    #[arg(long)]
    listen: Option<String>,
    /// Data directory of the embedded log [default: ./cds-events-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// What an acknowledged event survives [default: power-loss].
    #[arg(long, value_enum)]
    durability: Option<DurabilityArg>,
    /// Keep the log, notifications, deliveries and tokens in this PostgreSQL
    /// database (shared by every instance) instead of the data directory.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM file of CA certificates: require every client to present a
    /// certificate one of them signed (mutual TLS; with --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// CDS's Redis: take CDS's events from its `event:ui` channel
    /// (bridge.cds_redis_url; put a password in the configuration or the
    /// environment rather than on a command line).
    #[arg(long, value_name = "URL")]
    cds_redis: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DurabilityArg {
    PowerLoss,
    ProcessCrash,
}

impl ServeArgs {
    /// Flags given on the command line, as a partial configuration.
    fn load(&self) -> anyhow::Result<Config> {
        let mut flags = Map::new();
        if let Some(l) = &self.listen {
            flags.insert("listen".into(), Value::String(l.clone()));
        }
        if let Some(d) = &self.data_dir {
            flags.insert("data_dir".into(), Value::String(d.display().to_string()));
        }
        let mut storage = Map::new();
        if let Some(d) = self.durability {
            let d = match d {
                DurabilityArg::PowerLoss => Durability::PowerLoss,
                DurabilityArg::ProcessCrash => Durability::ProcessCrash,
            };
            storage.insert("durability".into(), serde_json::json!(d));
        }
        if let Some(url) = &self.postgres {
            storage.insert("postgres_url".into(), Value::String(url.clone()));
        }
        if !storage.is_empty() {
            flags.insert("storage".into(), Value::Object(storage));
        }
        if let (Some(c), Some(k)) = (&self.tls_cert, &self.tls_key) {
            let mut tls = serde_json::json!({ "cert": c.display().to_string(), "key": k.display().to_string() });
            if let Some(ca) = &self.tls_client_ca {
                tls["client_ca"] = Value::String(ca.display().to_string());
            }
            flags.insert("tls".into(), tls);
        }
        if let Some(url) = &self.cds_redis {
            flags.insert("bridge".into(), serde_json::json!({ "cds_redis_url": url }));
        }
        let flags = figment::providers::Serialized::defaults(Value::Object(flags));
        Ok(Config::load(self.config.as_deref(), flags)?)
    }
}

pub fn print_config(args: ServeArgs) -> anyhow::Result<()> {
    print!("{}", args.load()?.to_toml());
    Ok(())
}

pub async fn migrate(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    let backend = cds_events_server::stores::migrate(&config).await?;
    println!("the {backend} stores are at this build's schema versions");
    Ok(())
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    raise_open_files_limit();
    let data_dir = config.data_dir.clone();
    let durability = config.storage.durability;
    let server = cds_events_server::Server::bind(config).await?;
    let addr = server.local_addr().context("listener address")?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    match server.bootstrap() {
        cds_events_auth::Bootstrap::Generated { token, file } => {
            // The one time this secret is shown; it is never logged.
            println!(
                "admin token (shown once, also in {}): {token}",
                file.display()
            );
            tracing::info!(file = %file.display(), "generated the admin token");
        }
        cds_events_auth::Bootstrap::FromEnv => {
            tracing::info!("admin token taken from CDS_EVENTS_ADMIN_TOKEN")
        }
        cds_events_auth::Bootstrap::Existing => {}
    }
    tracing::info!(%addr, data_dir = %data_dir.display(), ?durability, tls = server.is_tls(), "cds-events listening");
    // A line on stdout that scripts and tests can wait for.
    println!("listening on {scheme}://{addr}");
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    server.run(shutdown).await?;
    Ok(())
}

/// Every client connection and stream holds a file descriptor: the soft
/// limit a service manager or shell leaves (often 1024) would refuse clients
/// long before memory runs short, so it is raised to the hard limit, the
/// most this process may have.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open files limit"),
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
}
