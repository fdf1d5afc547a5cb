//! Boots "bare-metal" QEMU nodes for Ferrite's tests and demo: a builder for the VM (RAM,
//! virtio disks with serials, NICs with fixed MACs on user-mode networking, SMBIOS, PXE via
//! iPXE), an ipmi_sim BMC whose chassis program (this crate's binary) powers QEMU on and off
//! and keeps its boot device, and the serial console in a file with `wait_for`; Redfish
//! nodes as libvirt domains with sushy-emulator as their BMC ([`libvirt`], [`sushy`]).

pub mod chassis;
pub mod cli;
pub mod conducted;
pub mod console;
pub mod http;
pub mod libvirt;
pub mod netboot;
pub mod process;
pub mod reaper;
pub mod skip;
pub mod spec;
pub mod sushy;
pub mod vm;
pub mod walk;

use std::path::PathBuf;
use std::time::Duration;

pub use console::Console;
pub use skip::skip_vm_test;
pub use spec::{Accel, BootDevice, DiskFormat, VmSpec};
pub use vm::{create_disk, free_tcp_port, Node, Vm, VmBuilder, AGENT_PORT};

/// What went wrong; each message names the phase and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Io(String, #[source] std::io::Error),
    #[error("{tool}: {why}")]
    Tool { tool: String, why: String },
    #[error("missing {path}: {hint}")]
    MissingInput { path: PathBuf, hint: String },
    #[error("QEMU exited at start ({status}); its output:\n{log}")]
    QemuFailed { status: String, log: String },
    #[error(
        "waited {waited:?} for {pattern:?} on the console ({console}); last console lines:\n\
         {console_tail}"
    )]
    ConsoleTimeout {
        pattern: String,
        waited: Duration,
        console: PathBuf,
        console_tail: String,
    },
    #[error("the VM stopped while waiting for {waiting_for:?} ({why}); last console lines:\n{console_tail}")]
    VmExited {
        waiting_for: String,
        why: String,
        console_tail: String,
    },
    #[error("bad node state in {path}: {why}")]
    BadState { path: PathBuf, why: String },
    #[error("bad chassis_control call `{args}`: {why}")]
    BadChassisCall { args: String, why: String },
    #[error("{phase} failed: {why}\nlast console lines:\n{console_tail}")]
    Walk {
        phase: String,
        why: String,
        console_tail: String,
    },
    #[error("starting the simulated BMC")]
    Bmc(#[source] ferrite_ipmi::sim::SimError),
}
