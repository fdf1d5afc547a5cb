//! The deploy ramdisk: kernel + initramfs (busybox, drivers, the static agent, init) and a
//! manifest with sizes and checksums, under `target/ramdisk/`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::cpio::Archive;
use crate::deb::{self, sha256_hex, PinnedDeb};
use crate::kmod::{normalize, Module, ModuleTree};
use crate::profile::{Load, ModuleSpec, Profile};
use crate::{coldplug, firmware, initramfs, Error};

/// The budget for the compressed initramfs of the `virtual` profile.
pub const DEFAULT_BUDGET: u64 = 12 * 1024 * 1024;

/// The budget of the `server` profile (issue 18).
pub const SERVER_BUDGET: u64 = 48 * 1024 * 1024;

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
    pub profile: Profile,
    pub kernel: Artifact,
    pub initramfs: Artifact,
    pub initramfs_uncompressed_bytes: u64,
    pub initramfs_budget_bytes: u64,
    pub kernel_release: String,
    pub kernel_package: Package,
    pub busybox_package: Package,
    /// The firmware packages the files under `lib/firmware` come from (none when no module
    /// names firmware).
    pub firmware_packages: Vec<Package>,
    pub agent: Artifact,
    /// Modules in load order.
    pub modules: Vec<String>,
    /// Every module with why it is there, in load order.
    pub module_details: Vec<ModuleEntry>,
    /// Firmware files the modules name that no pinned package has.
    pub firmware_missing: Vec<firmware::Missing>,
    /// What each part of the initramfs weighs.
    pub sizes: Vec<CategorySize>,
    pub entries: usize,
}

/// One module of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleEntry {
    pub name: String,
    pub category: String,
    /// `match`, `always`, `with:<module>`, or `dependency` of a listed module.
    pub load: String,
    /// The profile's reason, or which listed module needs it.
    pub reason: String,
    pub bytes: u64,
    /// Firmware files shipped for it.
    pub firmware: Vec<String>,
}

/// The files of one category: modules of the profile's categories (`nic`, `storage`, …) with
/// the dependencies they pulled in and their firmware, `agent`, `busybox`, and `base` (init
/// scripts, the cold-plug table, `modules.dep`). `gzip_bytes` is the category's files
/// compressed on their own: an estimate of its share of the initramfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategorySize {
    pub category: String,
    pub files: usize,
    pub bytes: u64,
    pub gzip_bytes: u64,
}

/// Builds the deploy ramdisk.
#[derive(Debug, Clone)]
pub struct RamdiskBuilder {
    agent: PathBuf,
    out_dir: PathBuf,
    cache_dir: PathBuf,
    profile: Profile,
    /// Replaces the profile's module list (tests).
    modules: Option<Vec<ModuleSpec>>,
    budget: Option<u64>,
}

impl RamdiskBuilder {
    /// `agent`: the static `ferrite-agent`; outputs go to `out_dir`, downloads are cached in
    /// `out_dir/../ramdisk-cache` unless [`RamdiskBuilder::cache_dir`] says otherwise. The
    /// profile is `virtual` unless [`RamdiskBuilder::profile`] says otherwise.
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
            profile: Profile::Virtual,
            modules: None,
            budget: None,
        }
    }

    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> RamdiskBuilder {
        self.cache_dir = dir.into();
        self
    }

    pub fn profile(mut self, profile: Profile) -> RamdiskBuilder {
        self.profile = profile;
        self
    }

    /// Loads exactly these modules on every machine instead of the profile's list.
    pub fn modules(mut self, modules: &[&str]) -> RamdiskBuilder {
        self.modules = Some(
            modules
                .iter()
                .map(|m| ModuleSpec {
                    name: normalize(m),
                    load: Load::Always,
                    category: "custom".into(),
                    reason: "given to RamdiskBuilder::modules".into(),
                })
                .collect(),
        );
        self
    }

    /// The initramfs budget; the profile's by default.
    pub fn budget(mut self, bytes: u64) -> RamdiskBuilder {
        self.budget = Some(bytes);
        self
    }

    /// Builds, writes kernel, initramfs and manifest, and returns the manifest.
    pub fn build(&self) -> Result<Manifest, Error> {
        let agent = std::fs::read(&self.agent).map_err(|_| Error::MissingInput {
            path: self.agent.clone(),
            hint: "build the static agent first: `cargo xtask agent`".into(),
        })?;
        let specs = match &self.modules {
            Some(m) => m.clone(),
            None => self.profile.modules()?,
        };
        let budget = self.budget.unwrap_or(match self.profile {
            Profile::Virtual => DEFAULT_BUDGET,
            Profile::Server => SERVER_BUDGET,
        });
        let kernel_dir = deb::KERNEL.unpack(&self.cache_dir)?;
        let busybox_dir = deb::BUSYBOX.unpack(&self.cache_dir)?;
        let kernel = read(&kernel_dir.join(format!("boot/vmlinuz-{}", deb::KERNEL_RELEASE)))?;
        let tree = ModuleTree::scan(&kernel_dir.join("lib/modules").join(deb::KERNEL_RELEASE))?;
        let wanted: Vec<&str> = specs.iter().map(|m| m.name.as_str()).collect();
        let modules = tree.closure(&wanted)?;
        let needs_firmware = modules.iter().any(|m| !m.firmware.is_empty());
        let (firmware_dirs, firmware_packages) = if needs_firmware {
            let dirs = firmware::unpack_all(&self.cache_dir)?;
            (dirs, firmware::PACKAGES.iter().map(Package::from).collect())
        } else {
            (vec![], vec![])
        };
        let found = firmware::collect(&modules, &firmware_dirs)?;
        let details = module_details(&modules, &specs, &found);

        let mut sizes = Sizes::default();
        let mut archive = Archive::new();
        initramfs::add_skeleton(&mut archive)?;
        let busybox = busybox_dir.join("bin/busybox");
        initramfs::add_busybox(&mut archive, &busybox)?;
        sizes.add("busybox", &read(&busybox)?);
        initramfs::add_modules(&mut archive, deb::KERNEL_RELEASE, &modules)?;
        for (m, d) in modules.iter().zip(&details) {
            sizes.add(&d.category, &m.data);
        }
        for (file, bytes) in &found.files {
            archive.file(&format!("lib/firmware/{file}"), bytes.clone(), 0o644)?;
            let owner = &found.owner[file];
            let category = details
                .iter()
                .find(|d| &d.name == owner)
                .map_or("firmware", |d| d.category.as_str());
            sizes.add(category, bytes);
        }
        let table = coldplug::table(deb::KERNEL_RELEASE, &modules, &specs)?;
        sizes.add("base", table.as_bytes());
        archive.file(coldplug::TABLE, table.into_bytes(), 0o644)?;
        for (path, text) in [
            ("init", INIT),
            ("etc/ferrite/udhcpc.script", UDHCPC_SCRIPT),
            ("etc/ferrite/agent-supervisor.sh", AGENT_SUPERVISOR),
        ] {
            archive.file(path, text.as_bytes().to_vec(), 0o755)?;
            sizes.add("base", text.as_bytes());
        }
        archive.file("bin/ferrite-agent", agent.clone(), 0o755)?;
        sizes.add("agent", &agent);
        let cpio = archive.to_bytes(initramfs::MTIME);
        let initrd = initramfs::gzip(&cpio)?;
        if initrd.len() as u64 > budget {
            return Err(Error::OverBudget {
                size: initrd.len() as u64,
                budget,
                hint: format!(
                    "trim the module list (ramdisk-build/modules/{}.txt) or the agent's \
                     dependencies",
                    self.profile
                ),
            });
        }

        let manifest = Manifest {
            profile: self.profile,
            kernel: Artifact::of(KERNEL_FILE, &kernel),
            initramfs: Artifact::of(INITRAMFS_FILE, &initrd),
            initramfs_uncompressed_bytes: cpio.len() as u64,
            initramfs_budget_bytes: budget,
            kernel_release: deb::KERNEL_RELEASE.into(),
            kernel_package: (&deb::KERNEL).into(),
            busybox_package: (&deb::BUSYBOX).into(),
            firmware_packages,
            agent: Artifact::of("bin/ferrite-agent", &agent),
            modules: modules.iter().map(|m| m.name.clone()).collect(),
            module_details: details,
            firmware_missing: found.missing,
            sizes: sizes.finish()?,
            entries: archive.len(),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        write_atomic(&self.out_dir, KERNEL_FILE, &kernel)?;
        write_atomic(&self.out_dir, INITRAMFS_FILE, &initrd)?;
        write_atomic(&self.out_dir, MANIFEST_FILE, &json)?;
        Ok(manifest)
    }
}

/// Each module with its category and reason: a listed module's own; a dependency takes the
/// category of the first listed module (in list order) that needs it.
fn module_details(
    modules: &[Module],
    specs: &[ModuleSpec],
    found: &firmware::Found,
) -> Vec<ModuleEntry> {
    let by_name: BTreeMap<&str, &Module> = modules.iter().map(|m| (m.name.as_str(), m)).collect();
    // Who pulled each dependency in, walking the list in order.
    let mut pulled_by: BTreeMap<&str, &ModuleSpec> = BTreeMap::new();
    for spec in specs {
        let mut stack = vec![spec.name.as_str()];
        while let Some(name) = stack.pop() {
            let Some(m) = by_name.get(name) else { continue };
            for d in &m.depends {
                if !pulled_by.contains_key(d.as_str()) && !specs.iter().any(|s| &s.name == d) {
                    pulled_by.insert(d.as_str(), spec);
                    stack.push(d.as_str());
                }
            }
        }
    }
    modules
        .iter()
        .map(|m| {
            let (category, load, reason) = match specs.iter().find(|s| s.name == m.name) {
                Some(s) => (
                    s.category.clone(),
                    match &s.load {
                        Load::Match => "match".to_string(),
                        Load::Always => "always".to_string(),
                        Load::With(t) => format!("with:{t}"),
                    },
                    s.reason.clone(),
                ),
                None => {
                    let by = pulled_by.get(m.name.as_str());
                    (
                        by.map_or("base".to_string(), |s| s.category.clone()),
                        "dependency".to_string(),
                        by.map_or("a dependency".to_string(), |s| {
                            format!("needed by {}", s.name)
                        }),
                    )
                }
            };
            ModuleEntry {
                name: m.name.clone(),
                category,
                load,
                reason,
                bytes: m.data.len() as u64,
                firmware: m
                    .firmware
                    .iter()
                    .filter(|f| found.owner.get(*f) == Some(&m.name))
                    .cloned()
                    .collect(),
            }
        })
        .collect()
}

/// Accumulates the files of each category.
#[derive(Default)]
struct Sizes {
    parts: Vec<(String, usize, Vec<u8>)>,
}

impl Sizes {
    fn add(&mut self, category: &str, bytes: &[u8]) {
        match self.parts.iter_mut().find(|(c, _, _)| c == category) {
            Some((_, n, data)) => {
                *n += 1;
                data.extend_from_slice(bytes);
            }
            None => self.parts.push((category.to_string(), 1, bytes.to_vec())),
        }
    }

    fn finish(self) -> Result<Vec<CategorySize>, Error> {
        self.parts
            .into_iter()
            .map(|(category, files, data)| {
                Ok(CategorySize {
                    category,
                    files,
                    bytes: data.len() as u64,
                    gzip_bytes: initramfs::gzip(&data)?.len() as u64,
                })
            })
            .collect()
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
