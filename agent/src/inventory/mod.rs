//! Hardware inventory (CONTRACT.md §4) read from sysfs, procfs and DMI under a configurable root.
//!
//! `collect("/")` reads the running machine; `collect(fixture)` reads a captured tree with the
//! same layout (`sys/`, `proc/`, `dev/disk/by-path`, `run/udev/data`) plus the files a fixture
//! uses instead of live queries (`ferrite-fixture/addresses.json`, `ferrite-fixture/bmc.json`).
//! Nothing here shells out. A field that cannot be read becomes `null`; only a missing root is
//! an error.

mod bmc;
mod cpu;
mod disks;
pub mod lldp;
mod lldp_socket;
mod memory;
mod nics;
mod numa;
mod pci;
mod system;
mod udev;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ferrite_proto::inventory::{Disk, InspectionExtras, Inventory};

pub use bmc::BmcAddresses;
pub use disks::install_exclusion;
pub use lldp::DEFAULT_TIMEOUT as LLDP_DEFAULT_TIMEOUT;

/// Directory inside a fixture root holding the values a live machine answers through
/// syscalls (getifaddrs, IPMI) rather than files.
pub const FIXTURE_DIR: &str = "ferrite-fixture";

/// Reads the inventory of the machine whose sysfs/procfs tree is mounted at `root`, without
/// LLDP (`interfaces[].lldp` is `null`).
pub fn collect(root: &Path) -> anyhow::Result<Inventory> {
    collect_with(root, None)
}

/// [`collect`], and with `lldp` set (`ipa-collect-lldp`) the LLDP TLVs each NIC receives
/// within that time (`ipa-lldp-timeout`), listened for on a thread of its own while the rest
/// is read. LLDP needs the live machine: a fixture root reports `null` as without it.
pub fn collect_with(root: &Path, lldp: Option<Duration>) -> anyhow::Result<Inventory> {
    let root = Root::new(root)?;
    let mut interfaces = nics::collect(&root);
    let listener = lldp.filter(|_| root.is_live()).map(|timeout| {
        let names: Vec<String> = interfaces.iter().map(|i| i.name.clone()).collect();
        std::thread::spawn(move || lldp::collect(&names, timeout))
    });
    let system = system::collect(&root);
    let bmc = bmc::collect(&root);
    let cpu = cpu::collect(&root);
    let memory = memory::collect(&root);
    let disks = disks::collect(&root);
    if let Some(listener) = listener {
        // A panic on the listener thread loses LLDP, not the inventory.
        let mut heard = listener.join().unwrap_or_default();
        for i in &mut interfaces {
            i.lldp = Some(heard.remove(&i.name).unwrap_or_default());
        }
    }
    Ok(Inventory {
        cpu,
        memory,
        interfaces,
        disks,
        system_vendor: system.vendor,
        boot: system.boot,
        bmc_address: bmc.address,
        bmc_v6address: bmc.v6address,
        bmc_mac: bmc.mac,
        hostname: system.hostname,
    })
}

/// IPA's `root_disk`: the disk a deploy without root device hints would write, which
/// Ironic's root-device inspection hook turns into `local_gb`.
pub fn root_disk(root: &Path, inventory: &Inventory) -> Option<Disk> {
    crate::disk::hints::choose(&inventory.disks, None, |d| install_exclusion(root, d))
        .ok()
        .cloned()
}

/// What IPA's `pci-devices` and `numa-topology` inspection collectors add beside the
/// inventory, read from the tree at `root` (sysfs only).
pub fn inspection_extras(root: &Path) -> anyhow::Result<InspectionExtras> {
    let root = Root::new(root)?;
    Ok(InspectionExtras {
        pci_devices: pci::collect(&root),
        numa_topology: numa::collect(&root),
    })
}

/// The tree being inventoried: `/` on a live machine, a fixture directory in tests.
#[derive(Debug, Clone)]
pub(crate) struct Root {
    dir: PathBuf,
    live: bool,
}

impl Root {
    pub(crate) fn new(dir: &Path) -> anyhow::Result<Root> {
        let dir = fs::canonicalize(dir).with_context(|| {
            format!(
                "inventory root {} is not a readable directory; pass --root with the directory \
                 holding sys/ and proc/ (default /)",
                dir.display()
            )
        })?;
        if !dir.is_dir() {
            anyhow::bail!(
                "inventory root {} is not a directory; pass --root with the directory holding \
                 sys/ and proc/",
                dir.display()
            );
        }
        let live = dir == Path::new("/");
        Ok(Root { dir, live })
    }

    /// True when reading the running machine, where syscalls may answer what files cannot.
    pub(crate) fn is_live(&self) -> bool {
        self.live
    }

    /// `rel` (written like an absolute path, e.g. `/sys/block`) inside the root.
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel.trim_start_matches('/'))
    }

    /// Trimmed, non-empty contents of a text file under the root.
    pub(crate) fn read(&self, rel: &str) -> Option<String> {
        read_trimmed(&self.path(rel))
    }

    /// Sorted entry names of a directory under the root; empty when unreadable.
    pub(crate) fn list(&self, rel: &str) -> Vec<String> {
        list_dir(&self.path(rel))
    }
}

/// Trimmed, non-empty contents of a text file; `None` when missing, unreadable or blank.
pub(crate) fn read_trimmed(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!text.is_empty()).then(|| text.to_string())
}

/// Sorted entry names of a directory; empty when missing or unreadable.
pub(crate) fn list_dir(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = match fs::read_dir(path) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Last component of the target of a symlink, e.g. the driver name behind `device/driver`.
pub(crate) fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    target.file_name()?.to_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_root_is_a_clear_error() {
        let err = collect(Path::new("/nonexistent/ferrite-root")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("/nonexistent/ferrite-root"), "{msg}");
        assert!(msg.contains("--root"), "{msg}");
    }

    #[test]
    fn empty_root_gives_nulls_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        let inv = collect(dir.path()).unwrap();
        assert_eq!(inv.cpu.count, 0);
        assert_eq!(inv.memory.physical_mb, None);
        assert!(inv.interfaces.is_empty());
        assert!(inv.disks.is_empty());
        assert_eq!(inv.hostname, None);
        assert_eq!(inv.bmc_address, None);
        assert_eq!(inv.boot.current_boot_mode, "bios");
    }

    #[test]
    fn a_file_as_root_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "x").unwrap();
        let msg = format!("{:#}", collect(&file).unwrap_err());
        assert!(msg.contains("not a directory"), "{msg}");
    }

    /// Pseudo-random bytes (xorshift64, fixed seed): the parsers return errors or values for
    /// any input, never panic. A cheap stand-in for a fuzzer that runs in every CI build.
    #[test]
    fn parsers_survive_random_input() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2000 {
            let len = (next() % 300) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Bias half the rounds towards plausible SMBIOS headers.
            if round % 2 == 0 && bytes.len() > 2 {
                bytes[0] = 17;
                bytes[1] = (bytes[1] % 0x30).max(4);
            }
            let _ = memory::dimm_sizes_mb(&bytes);
            let _ = disks::decode_vpd_serial(&bytes);
            let text = String::from_utf8_lossy(&bytes);
            let _ = cpu::parse_cpuinfo(&text);
            let _ = cpu::parse_cpu_list(&text);
            let _ = memory::parse_meminfo_total(&text);
            let _ = udev::parse_udev_db(&text);
            let _ = nics::parse_addresses_json(&bytes);
            let _ = disks::wwn_from_wwid(&text, round % 2 == 0);
            let _ = disks::transport(&text, &text);
            let _ = system::cmdline_value(&text, "BOOTIF");
            let _ = lldp::parse_tlvs(&bytes);
            let _ = pci::after_0x(&text);
            let _ = numa::node_mem_total_kb(&text);
            let _ = nics::infiniband_ids(&text);
        }
    }

    #[test]
    fn read_trimmed_drops_blank_and_nul_padding() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, "  value\n\0").unwrap();
        assert_eq!(read_trimmed(&p).as_deref(), Some("value"));
        fs::write(&p, "\n").unwrap();
        assert_eq!(read_trimmed(&p), None);
        assert_eq!(read_trimmed(&dir.path().join("absent")), None);
    }
}
