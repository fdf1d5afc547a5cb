//! The deploy ramdisk: kernel + initramfs (busybox, drivers, the static agent, init) and a
//! manifest with sizes and checksums, under `target/ramdisk/`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cpio::Archive;
use crate::deb::{self, sha256_hex, PinnedDeb};
use crate::initramfs;
use crate::kmod::ModuleTree;
use crate::Error;

/// Drivers the ramdisk loads (their dependencies come along): NICs, disk controllers, the
/// BMC's KCS interface, the filesystems of a config drive, and efivarfs (UEFI boot entries,
/// `image.install_bootloader`).
pub const DEFAULT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    "virtio_scsi",
    "e1000",
    "e1000e",
    "ahci",
    "sd_mod",
    "sr_mod",
    "nvme",
    "ipmi_msghandler",
    "ipmi_devintf",
    "ipmi_si",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "nls_utf8",
    "isofs",
    "efivarfs",
];

/// The budget for the compressed initramfs.
pub const DEFAULT_BUDGET: u64 = 12 * 1024 * 1024;

pub const KERNEL_FILE: &str = "ferrite.kernel";
pub const INITRAMFS_FILE: &str = "ferrite.initramfs";
pub const MANIFEST_FILE: &str = "ferrite.manifest.json";

const INIT: &str = include_str!("scripts/ramdisk-init.sh");
const UDHCPC_SCRIPT: &str = include_str!("scripts/udhcpc.sh");
const AGENT_SUPERVISOR: &str = include_str!("scripts/agent-supervisor.sh");

/// One output or input file: name, size and sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

impl Artifact {
    fn of(file: &str, bytes: &[u8]) -> Artifact {
        Artifact {
            file: file.into(),
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }
}

/// A pinned package as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub deb_sha256: String,
}

impl From<&PinnedDeb> for Package {
    fn from(p: &PinnedDeb) -> Package {
        Package {
            name: p.name.into(),
            version: p.version.into(),
            deb_sha256: p.sha256.into(),
        }
    }
}

/// `ferrite.manifest.json`: what went into the ramdisk and what came out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub kernel: Artifact,
    pub initramfs: Artifact,
    pub initramfs_uncompressed_bytes: u64,
    pub initramfs_budget_bytes: u64,
    pub kernel_release: String,
    pub kernel_package: Package,
    pub busybox_package: Package,
    pub agent: Artifact,
    /// Modules in load order.
    pub modules: Vec<String>,
    pub entries: usize,
}

/// Builds the deploy ramdisk.
#[derive(Debug, Clone)]
pub struct RamdiskBuilder {
    agent: PathBuf,
    out_dir: PathBuf,
    cache_dir: PathBuf,
    modules: Vec<String>,
    budget: u64,
}

impl RamdiskBuilder {
    /// `agent`: the static `ferrite-agent`; outputs go to `out_dir`, downloads are cached in
    /// `out_dir/../ramdisk-cache` unless [`RamdiskBuilder::cache_dir`] says otherwise.
    pub fn new(agent: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> RamdiskBuilder {
        let out_dir = out_dir.into();
        let cache_dir = out_dir
            .parent()
            .unwrap_or(Path::new("."))
            .join("ramdisk-cache");
        RamdiskBuilder {
            agent: agent.into(),
            out_dir,
            cache_dir,
            modules: DEFAULT_MODULES.iter().map(|s| s.to_string()).collect(),
            budget: DEFAULT_BUDGET,
        }
    }

    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> RamdiskBuilder {
        self.cache_dir = dir.into();
        self
    }

    pub fn modules(mut self, modules: &[&str]) -> RamdiskBuilder {
        self.modules = modules.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn budget(mut self, bytes: u64) -> RamdiskBuilder {
        self.budget = bytes;
        self
    }

    /// Builds, writes kernel, initramfs and manifest, and returns the manifest.
    pub fn build(&self) -> Result<Manifest, Error> {
        let agent = std::fs::read(&self.agent).map_err(|_| Error::MissingInput {
            path: self.agent.clone(),
            hint: "build the static agent first: `cargo xtask agent`".into(),
        })?;
        let kernel_dir = deb::KERNEL.unpack(&self.cache_dir)?;
        let busybox_dir = deb::BUSYBOX.unpack(&self.cache_dir)?;
        let kernel = read(&kernel_dir.join(format!("boot/vmlinuz-{}", deb::KERNEL_RELEASE)))?;
        let tree = ModuleTree::scan(&kernel_dir.join("lib/modules").join(deb::KERNEL_RELEASE))?;
        let wanted: Vec<&str> = self.modules.iter().map(String::as_str).collect();
        let modules = tree.closure(&wanted)?;

        let mut archive = Archive::new();
        initramfs::add_skeleton(&mut archive)?;
        initramfs::add_busybox(&mut archive, &busybox_dir.join("bin/busybox"))?;
        initramfs::add_modules(&mut archive, deb::KERNEL_RELEASE, &modules)?;
        archive.file("init", INIT.as_bytes().to_vec(), 0o755)?;
        archive.file(
            "etc/ferrite/udhcpc.script",
            UDHCPC_SCRIPT.as_bytes().to_vec(),
            0o755,
        )?;
        archive.file(
            "etc/ferrite/agent-supervisor.sh",
            AGENT_SUPERVISOR.as_bytes().to_vec(),
            0o755,
        )?;
        archive.file("bin/ferrite-agent", agent.clone(), 0o755)?;
        let cpio = archive.to_bytes(initramfs::MTIME);
        let initrd = initramfs::gzip(&cpio)?;
        if initrd.len() as u64 > self.budget {
            return Err(Error::OverBudget {
                size: initrd.len() as u64,
                budget: self.budget,
                hint: "trim the module list or the agent's dependencies".into(),
            });
        }

        let manifest = Manifest {
            kernel: Artifact::of(KERNEL_FILE, &kernel),
            initramfs: Artifact::of(INITRAMFS_FILE, &initrd),
            initramfs_uncompressed_bytes: cpio.len() as u64,
            initramfs_budget_bytes: self.budget,
            kernel_release: deb::KERNEL_RELEASE.into(),
            kernel_package: (&deb::KERNEL).into(),
            busybox_package: (&deb::BUSYBOX).into(),
            agent: Artifact::of("bin/ferrite-agent", &agent),
            modules: modules.iter().map(|m| m.name.clone()).collect(),
            entries: archive.len(),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        write_atomic(&self.out_dir, KERNEL_FILE, &kernel)?;
        write_atomic(&self.out_dir, INITRAMFS_FILE, &initrd)?;
        write_atomic(&self.out_dir, MANIFEST_FILE, &json)?;
        Ok(manifest)
    }
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Io(format!("reading {}", path.display()), e))
}

/// Writes `dir/name` through a temporary file and a rename, so readers never see half a file.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::Io(format!("writing {}", path.display()), e))?;
    Ok(path)
}
