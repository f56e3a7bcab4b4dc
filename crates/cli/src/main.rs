//! `cds-events`: the one binary. `serve` runs the service; the other
//! subcommands are clients of a running server.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod listen;
mod notification;
mod publish;
mod query;
mod serve;
mod simulate;
mod sinks;
mod stats;
mod token;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "cds-events",
    version,
    about = "The CDS v2 event log: ingest, keep, query, stream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service.
    Serve(serve::ServeArgs),
    /// Print the effective configuration (file ← environment ← flags).
    Config(serve::ServeArgs),
    /// Create or upgrade the stores' tables of the configured backend, then
    /// exit (every instance also does it at start).
    Migrate(serve::ServeArgs),
    /// Publish events: one from flags, or a file / stdin of JSON or NDJSON.
    Publish(Box<publish::PublishArgs>),
    /// Query the history.
    Query(Box<query::QueryArgs>),
    /// Follow events live; reconnects and resumes without gaps.
    Listen(Box<listen::ListenArgs>),
    /// List the event catalogue.
    Types(query::TypesArgs),
    /// Events per minute (or `--step`) and family over the last hour (or
    /// `--since`/`--until`, at most 24 h), for what the token reads.
    Stats(stats::StatsArgs),
    /// Generate realistic CDS traffic, for demos and load tests.
    Simulate(Box<simulate::SimulateArgs>),
    /// Manage access tokens (admin).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Manage project notifications (webhooks) and their deliveries.
    #[command(subcommand)]
    Notification(notification::NotificationCommand),
    /// The broker sinks: status, pause, resume, replay (admin).
    #[command(subcommand)]
    Sinks(sinks::SinksCommand),
}

/// Where the server is and how to prove who we are.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Base URL of the cds-events server.
    #[arg(
        long,
        env = "CDS_EVENTS_SERVER",
        default_value = "http://127.0.0.1:8090",
        global = true
    )]
    pub server: String,
    /// Bearer token [default: $CDS_EVENTS_TOKEN, else the data directory's admin.token].
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// Data directory whose admin.token to use when no token is given.
    #[arg(
        long = "data-dir",
        env = "CDS_EVENTS_DATA_DIR",
        default_value = "./cds-events-data",
        global = true
    )]
    pub data_dir: std::path::PathBuf,
    /// A PEM file of CA certificates to trust (for a server with a private CA).
    #[arg(long, env = "CDS_EVENTS_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// A PEM client certificate (chain) for mutual TLS, with its key in
    /// the same file or in --client-key (a server with tls.client_ca, or a
    /// proxy that asks for one).
    #[arg(long, env = "CDS_EVENTS_CLIENT_CERT", global = true)]
    pub client_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --client-cert (it may also be in that file).
    #[arg(long, env = "CDS_EVENTS_CLIENT_KEY", global = true)]
    pub client_key: Option<std::path::PathBuf>,
}

impl ServerArgs {
    /// The token: `--token`, then `CDS_EVENTS_TOKEN`, then `<data-dir>/admin.token`.
    pub fn token(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| {
                std::env::var("CDS_EVENTS_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty())
            })
            .or_else(|| cds_events_auth::read_admin_token(&self.data_dir))
    }

    pub fn client(&self, pool: usize) -> anyhow::Result<cds_events_client::Client> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
        };
        let ca_cert_pem = self.ca_cert.as_deref().map(read).transpose()?;
        // The identity is the chain and the key in one PEM buffer.
        let identity_pem = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                Some(pem)
            }
            (Some(cert), None) => Some(read(cert)?),
            (None, Some(_)) => anyhow::bail!("--client-key needs --client-cert"),
            (None, None) => None,
        };
        let opts = cds_events_client::ClientOptions {
            token: self.token(),
            pool,
            ca_cert_pem,
            identity_pem,
            // A command reports a failure at once (simulate counts them);
            // `listen` reconnects on its own.
            retry: cds_events_client::Retry::NEVER,
        };
        Ok(cds_events_client::Client::with_options(&self.server, opts)?)
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("CDS_EVENTS_LOG_FORMAT").is_ok_and(|v| v == "json");
    // A line that cannot be written (the disk holding stderr full) is lost,
    // quietly: tracing-subscriber would otherwise report it with
    // `eprintln!`, which panics when stderr fails too — killing whichever
    // thread was logging, the event log's writer among them.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

/// A reader that went away (`cds-events types | head`) is not an error:
/// the standard library's print macros panic when stdout's pipe is closed;
/// end quietly instead, as other command-line tools do.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

fn main() -> std::process::ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(a) => serve::serve(a).await,
            Command::Config(a) => serve::print_config(a),
            Command::Migrate(a) => serve::migrate(a).await,
            Command::Publish(a) => publish::run(*a).await,
            Command::Query(a) => query::run(*a).await,
            Command::Listen(a) => listen::run(*a).await,
            Command::Types(a) => query::types(a).await,
            Command::Stats(a) => stats::run(a).await,
            Command::Simulate(a) => simulate::run(*a).await,
            Command::Token(c) => token::run(c).await,
            Command::Notification(c) => notification::run(c).await,
            Command::Sinks(c) => sinks::run(c).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A time as the server writes it in JSON (chrono's serde form), for the
/// tables that print one.
pub fn wire_time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A path flag shared by several commands.
pub fn existing_file(p: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(p);
    if p == "-" || path.is_file() {
        Ok(path)
    } else {
        Err(format!("{p} is not a file"))
    }
}
