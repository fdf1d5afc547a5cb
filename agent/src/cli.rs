//! Command line of `ferrite-agent`: one config struct, one library call per subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ferrite-agent",
    version,
    about = "Ferrite bare-metal deploy agent",
    long_about = "Ferrite bare-metal deploy agent. With no subcommand it is the ramdisk agent: \
                  reads the kernel command line, serves the agent API, looks itself up at the \
                  conductor and heartbeats.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: crate::run::RunConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the drivers of the devices this machine has (the ramdisk's /init runs this):
    /// matches /sys/bus/*/devices/*/modalias against the ramdisk's cold-plug table.
    Coldplug(crate::coldplug::ColdplugArgs),
    /// Print the hardware inventory (CONTRACT.md §4) as JSON.
    Inventory {
        /// Root of the sysfs/procfs/dev tree to read (a fixture in tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Serve a file or block device as an iSCSI target (LUN 0) until SIGINT/SIGTERM.
    IscsiTarget(crate::iscsi_target::IscsiTargetArgs),
    /// Write a whole-disk image from URLs to a disk named explicitly (a file or loop
    /// device outside the ramdisk), verifying its checksum; prints the outcome as JSON.
    WriteImage(crate::image::standalone::WriteImageArgs),
    /// Erase a disk named explicitly (a file or loop device outside the ramdisk): NVMe
    /// format/sanitize where supported, else zeroes; prints the outcome as JSON.
    EraseDisk(crate::steps::erase::EraseDiskArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Inventory { root }) => match crate::inventory::collect(&root) {
            Ok(inv) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&inv).expect("inventory serialises")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ferrite-agent: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Coldplug(args)) => crate::coldplug::run(args),
        Some(Command::IscsiTarget(args)) => match crate::iscsi_target::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ferrite-agent: {e:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::WriteImage(args)) => crate::image::standalone::run(args),
        Some(Command::EraseDisk(args)) => crate::steps::erase::run(args),
        None => run_agent(cli.run),
    }
}

fn run_agent(config: crate::run::RunConfig) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrite-agent: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::run::run(config, terminated())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrite-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
