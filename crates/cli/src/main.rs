//! `cds-events`: the one binary. `serve` runs the service; the other
//! subcommands are clients of a running server.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod publish;
mod query;
mod serve;
mod simulate;

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
    /// Publish events: one from flags, or a file / stdin of JSON or NDJSON.
    Publish(Box<publish::PublishArgs>),
    /// Query the history.
    Query(Box<query::QueryArgs>),
    /// List the event catalogue.
    Types(query::TypesArgs),
    /// Generate realistic CDS traffic, for demos and load tests.
    Simulate(Box<simulate::SimulateArgs>),
}

/// Where the server is.
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
}

impl ServerArgs {
    pub fn client(&self, pool: usize) -> anyhow::Result<cds_events_client::Client> {
        Ok(cds_events_client::Client::builder(
            &self.server,
            None,
            pool,
        )?)
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("CDS_EVENTS_LOG_FORMAT").is_ok_and(|v| v == "json");
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> std::process::ExitCode {
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
            Command::Publish(a) => publish::run(*a).await,
            Command::Query(a) => query::run(*a).await,
            Command::Types(a) => query::types(a).await,
            Command::Simulate(a) => simulate::run(*a).await,
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

/// A path flag shared by several commands.
pub fn existing_file(p: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(p);
    if p == "-" || path.is_file() {
        Ok(path)
    } else {
        Err(format!("{p} is not a file"))
    }
}
