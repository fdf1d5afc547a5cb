//! The `ferrite` command line: `ferrite conductor` runs the server; `ferrite node …` and
//! `ferrite port …` talk to the API at `FERRITE_URL`.

mod client;
pub(crate) mod logs;
mod nodes;
mod output;
pub(crate) mod timeline;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::server::ConductorConfig;

#[derive(Debug, Parser)]
#[command(name = "ferrite", version, about = "Ferrite bare-metal provisioning")]
pub struct Cli {
    /// Conductor API URL.
    #[arg(
        long,
        global = true,
        env = "FERRITE_URL",
        default_value = "http://127.0.0.1:6385"
    )]
    pub url: String,
    /// Output format.
    #[arg(short = 'f', long = "format", global = true, value_parser = ["table", "json"], default_value = "table")]
    pub format: String,
    /// HTTP basic user (with FERRITE_PASSWORD) when the conductor uses --htpasswd.
    #[arg(long, global = true, env = "FERRITE_USER")]
    pub user: Option<String>,
    /// PEM CA certificate(s) to trust for an https:// conductor URL, besides the system's.
    #[arg(long, global = true, env = "FERRITE_CACERT", value_name = "FILE")]
    pub cacert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the conductor's settings costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the conductor (API server and worker).
    Conductor(ConductorConfig),
    /// Manage nodes.
    #[command(subcommand)]
    Node(nodes::NodeCmd),
    /// Manage ports.
    #[command(subcommand)]
    Port(nodes::PortCmd),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrite: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json_out = cli.format == "json";
    let auth = cli
        .user
        .clone()
        .map(|u| (u, std::env::var("FERRITE_PASSWORD").unwrap_or_default()));
    let client = match &cli.cacert {
        None => client::Client::new(&cli.url, auth),
        Some(ca) => match client::Client::with_cacert(&cli.url, auth, ca) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("ferrite: error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Conductor(cfg) => run_conductor(cfg).await,
            Command::Node(cmd) => nodes::node(&client, cmd, json_out).await,
            Command::Port(cmd) => nodes::port(&client, cmd, json_out).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrite: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_conductor(cfg: ConductorConfig) -> anyhow::Result<()> {
    use anyhow::Context;
    let cfg = cfg.resolve()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format.unwrap_or_default() {
        // One JSON object a line; the request's and the work's span fields (request_id,
        // node) are flattened into each line by `with_span_list`.
        crate::server::LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .init(),
        // Colour codes only on a terminal: a log file or pipe gets plain text.
        crate::server::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let addr = cfg.listen_addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}: is another conductor running?"))?;
    crate::server::run(listener, cfg, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing in-flight work");
}
