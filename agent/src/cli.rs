//! Command line of `ferrite-agent`: one config struct, one library call per subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ferrite-agent",
    version,
    about = "Ferrite bare-metal deploy agent"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the hardware inventory (CONTRACT.md §4) as JSON.
    Inventory {
        /// Root of the sysfs/procfs/dev tree to read (a fixture in tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
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
        None => {
            eprintln!("ferrite-agent: the ramdisk agent is not built yet");
            ExitCode::FAILURE
        }
    }
}
