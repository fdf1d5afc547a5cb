//! Command line of `ferrite-qemu-harness`: `up` (nodes with BMCs, like VirtualBMC) and
//! `chassis` (ipmi_sim's chassis_control program).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::spec::{Accel, DiskFormat};
use crate::vm::{create_disk, free_tcp_port, Node, VmBuilder, AGENT_PORT};

#[derive(Debug, Parser)]
#[command(
    name = "ferrite-qemu-harness",
    about = "QEMU bare-metal nodes with IPMI BMCs"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start N powered-off nodes, each behind its own ipmi_sim BMC; print their BMC
    /// addresses and credentials; stop everything on Ctrl-C.
    Up {
        #[arg(long, default_value_t = 1)]
        nodes: u32,
        #[arg(long, default_value_t = 256)]
        memory_mib: u32,
        #[arg(long, default_value_t = 2)]
        disk_gib: u64,
        /// DHCP boot file for PXE, e.g. http://10.0.2.2:8080/boot.ipxe.
        #[arg(long)]
        pxe_bootfile: Option<String>,
        /// Where disks, consoles and BMC state go.
        #[arg(long, default_value = "target/harness")]
        dir: PathBuf,
        #[arg(long, default_value = "tcg")]
        accel: String,
    },
    /// ipmi_sim's chassis_control program: `chassis --state DIR get power boot`, `… set power 1`.
    Chassis {
        #[arg(long)]
        state: PathBuf,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The MAC of node `i` (fixed, so ports can be enrolled before the node boots).
pub fn node_mac(i: u32) -> String {
    format!("52:54:00:fe:{:02x}:{:02x}", (i >> 8) & 0xff, (i & 0xff) + 1)
}

fn up(
    nodes: u32,
    memory_mib: u32,
    disk_gib: u64,
    pxe_bootfile: Option<String>,
    dir: PathBuf,
    accel: &str,
) -> anyhow::Result<()> {
    let accel = match accel {
        "tcg" => Accel::Tcg,
        "kvm" => Accel::Kvm,
        other => anyhow::bail!("--accel {other:?}: expected tcg or kvm"),
    };
    // SIGTERM/SIGHUP/SIGINT stop every ipmi_sim and QEMU below this process, even while
    // the nodes are still starting.
    crate::reaper::stop_descendants_on_signals()?;
    let mut running: Vec<Node> = vec![];
    println!("name\tbmc\tusername\tpassword\tmac\tagent\tconsole");
    for i in 0..nodes {
        let name = format!("node-{i}");
        let node_dir = dir.join(&name);
        std::fs::create_dir_all(&node_dir)?;
        let disk = node_dir.join("disk0.raw");
        if !disk.exists() {
            create_disk(&disk, disk_gib << 30)?;
        }
        let agent_port = free_tcp_port()?;
        let mut b = VmBuilder::new(&name)
            .memory_mib(memory_mib)
            .accel(accel)
            .dir(&node_dir)
            .disk(&disk, DiskFormat::Raw, &format!("FERRITE-DISK-{i}"))
            .smbios(
                "Ferrite",
                "QEMU bare-metal node",
                &format!("FERRITE-NODE-{i}"),
            )
            .nic(&node_mac(i))
            .hostfwd(agent_port, AGENT_PORT);
        if let Some(url) = &pxe_bootfile {
            b = b.pxe_bootfile(url);
        }
        let node = b.start_with_bmc()?;
        println!(
            "{name}\t{}\t{}\t{}\t{}\t127.0.0.1:{agent_port}\t{}",
            node.bmc_addr(),
            node.bmc_username(),
            node.bmc_password(),
            node_mac(i),
            node.console().path().display()
        );
        running.push(node);
    }
    println!("ferrite-qemu-harness: {nodes} node(s) up; Ctrl-C or SIGTERM stops them");
    // The reaper thread stops the nodes (QEMU, ipmi_sim) and exits the process.
    let _keep = running;
    loop {
        std::thread::park();
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up {
            nodes,
            memory_mib,
            disk_gib,
            pxe_bootfile,
            dir,
            accel,
        } => up(nodes, memory_mib, disk_gib, pxe_bootfile, dir, &accel),
        Command::Chassis { state, args } => match crate::chassis::run(&state, &args) {
            Ok(out) => {
                print!("{out}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrite-qemu-harness: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_fixed_and_distinct() {
        assert_eq!(node_mac(0), "52:54:00:fe:00:01");
        assert_eq!(node_mac(1), "52:54:00:fe:00:02");
        assert_ne!(node_mac(255), node_mac(511));
    }
}
