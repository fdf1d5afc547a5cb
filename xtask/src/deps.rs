//! Everything a build, test, benchmark or the demo needs beyond the Rust toolchain that
//! rustup installed: Debian packages, rustup targets and toolchains, cargo tools and Python
//! venvs for baselines. `install` adds only what is missing (idempotent); `check` lists every
//! item and fails on anything missing, so a step that only worked on a hand-prepared machine
//! shows up (`.ci/run` runs both).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::util;

/// Every Debian package a build, test, benchmark or the demo uses, with why.
pub const PACKAGES: &[(&str, &str)] = &[
    ("musl-tools", "C parts of crates for the static musl agent"),
    ("lshw", "inventory benchmark baseline; IPA in the inventory parity test"),
    ("iproute2", "inventory benchmark baseline (ip -j addr)"),
    (
        "openipmi",
        "ipmi_sim: the simulated BMC of the IPMI tests and VM harness",
    ),
    (
        "ipmitool",
        "IPMI cross-checks and the ipmi benchmark baseline",
    ),
    (
        "mtools",
        "test OS image and config drives without root or loop devices",
    ),
    ("syslinux", "boot loader installer of the test OS image"),
    (
        "syslinux-common",
        "MBR boot code and syslinux modules of the test OS image",
    ),
    (
        "qemu-system-x86",
        "the VMs of the end-to-end tests and the demo",
    ),
    (
        "ipxe-qemu",
        "iPXE NIC boot ROMs for PXE-booting the QEMU nodes",
    ),
    (
        QEMU_UTILS,
        "qemu-img: the test OS image as qcow2; qcow2 oracle of the image tests; image-write bench baseline",
    ),
    (
        "fdisk",
        "sfdisk: writes test partition tables and reads them back as an oracle",
    ),
    ("curl", "image-write benchmark baseline (curl | dd); TFTP tests (tftp:// with blksize)"),
    ("tftp-hpa", "TFTP server tests: RFC 1350 client"),
    ("busybox-static", "TFTP server tests: busybox tftp with blksize"),
    ("dosfstools", "mkfs.vfat: config drives of the agent's image tests; fsck.fat checks the ESP of partition images"),
    ("e2fsprogs", "mkfs.ext4: the root filesystem image of the partition-image tests"),
    ("genisoimage", "ISO9660 config drives (as Ironic builds them) for the 4Kn config drive test"),
    ("ovmf", "UEFI firmware (OVMF pflash) of the UEFI QEMU nodes"),
    ("xorriso", "virtual-media boot ISOs (El Torito BIOS + EFI, hybrid)"),
    ("isolinux", "BIOS loader of the virtual-media boot ISOs"),
    (
        "grub-efi-amd64-bin",
        "grub-mkimage and its x86_64-efi modules: the EFI loader of boot ISOs and of the UEFI test OS images",
    ),
    (
        "grub-pc-bin",
        "grub-mkimage's i386-pc modules and boot.img: the BIOS GRUB of the partition test OS image",
    ),
    (
        "libvirt-daemon-system",
        "libvirtd (with its QEMU driver): the virtual-media e2e runs its Redfish node as a libvirt domain, as Ironic's CI does",
    ),
    ("libvirt-clients", "virsh: defines the e2e's domain and storage pool on the test's own libvirtd"),
    ("python3-libvirt", "libvirt bindings that sushy-emulator's libvirt driver imports (linked into the sushy venv's path)"),
    ("tgt", "iSCSI interop tests and benchmark baseline (tgtd, tgtadm)"),
    ("libiscsi-bin", "iSCSI conformance tests and benchmark client (iscsi-test-cu, iscsi-inq, iscsi-ls, iscsi-perf)"),
    (
        "postgresql",
        "conductor tests and bench on a throwaway PostgreSQL server",
    ),
    ("fio", "image-write bench: what the target takes (sequential O_DIRECT write)"),
    ("bmap-tools", "image-write bench: bmaptool copy, the sparse-write baseline"),
    ("openssl", "image-write bench: sha256 throughput of one core"),
    (
        "udev",
        "agent bench and inventory parity test: udevadm, which ironic-python-agent's \
         list_hardware_info runs",
    ),
    (
        "dmidecode",
        "agent bench: ironic-python-agent's list_hardware_info reads DMI with it",
    ),
    (
        QEMU_BLOCK_EXTRA,
        "image-write bench: qemu-img's curl driver (qemu-img convert reading over HTTP)",
    ),
    (
        "python3-venv",
        "conductor bench baseline: a venv for OpenStack Ironic from PyPI (target/ironic-venv)",
    ),
    ("chromium", "dashboard test: the headless browser that loads /ui/ (conductor/tests/ui.rs)"),
    ("chromium-driver", "dashboard test: chromedriver, driven over the WebDriver protocol"),
];

/// Installing qemu-system-x86 (7.2) removes the machine image's backported qemu-utils 10, so
/// qemu-utils is installed afterwards, pinned to the installed qemu-system-x86's version.
const QEMU_UTILS: &str = "qemu-utils";
/// qemu-img's extra block drivers (curl): only with qemu-utils of the same version, so
/// installed with it.
const QEMU_BLOCK_EXTRA: &str = "qemu-block-extra";

/// The rustup target of the static agent, added to the toolchain rust-toolchain.toml names.
pub const RUSTUP_TARGETS: &[(&str, &str)] = &[(
    crate::MUSL_TARGET,
    "the static ferrite-agent of the deploy ramdisk",
)];

/// The toolchain the fuzz targets build with (cargo-fuzz needs nightly's sanitizer flags).
pub const FUZZ_TOOLCHAIN: &str = "nightly";

/// Cargo subcommands installed with `cargo install --locked`: (crate, major.minor series,
/// binary, why). Any release of the series will do.
pub const CARGO_TOOLS: &[(&str, &str, &str, &str)] = &[(
    "cargo-fuzz",
    "0.13",
    "cargo-fuzz",
    "`cargo xtask fuzz` and the short fuzz runs of `cargo xtask test` (libFuzzer)",
)];

/// A Python virtual environment under `target/` for a baseline from PyPI.
pub struct Venv {
    /// Directory name under `target/`.
    pub dir: &'static str,
    /// pip requirement specifiers.
    pub requirements: &'static [&'static str],
    /// A file inside the venv that exists once the requirements are installed.
    pub probe: &'static str,
    pub why: &'static str,
}

/// Python venvs of the benchmark baselines and the client tests (made with Debian's
/// /usr/bin/python3).
pub const VENVS: &[Venv] = &[
    Venv {
        dir: "ironic-venv",
        requirements: &["ironic>=39,<40", "psycopg2-binary>=2.9,<3"],
        probe: "bin/ironic",
        why: "conductor bench baseline: OpenStack Ironic standalone on PostgreSQL",
    },
    Venv {
        dir: "clients-venv",
        requirements: &[
            "openstacksdk==4.22.0",
            "python-ironicclient==6.3.0",
            "metalsmith==2.5.0",
            "oslotest==6.1.1",
            "pytest==9.2.0",
        ],
        probe: "bin/pytest",
        why: "conductor/tests/openstack_clients.rs: openstacksdk's functional baremetal suite \
              (shipped in its wheel), the baremetal CLI and metalsmith against the conductor",
    },
    Venv {
        dir: "pyghmi-venv",
        requirements: &["pyghmi>=1.6,<2"],
        probe: "bin/python",
        why: "ipmi bench baseline: pyghmi in-process (library to library)",
    },
    Venv {
        dir: "sushy-venv",
        requirements: &["sushy-tools==2.2.0", "sushy==5.14.0"],
        probe: "bin/sushy-emulator",
        why: "redfish tests: sushy-emulator (fake systems driver) as the BMC; redfish bench \
              baseline: python sushy, the Redfish library Ironic uses",
    },
    Venv {
        dir: "ipa-venv",
        requirements: &["ironic-python-agent>=13,<14"],
        probe: "bin/python",
        why: "agent bench baseline: ironic-python-agent's list_hardware_info in-process; \
              the inventory parity test (tests/tests/inventory_ipa_parity.rs) runs it too",
    },
];

/// The Python the venvs are made with (Debian's, with python3-venv).
const PYTHON: &str = "/usr/bin/python3";

fn version_of(pkg: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", pkg])
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

fn apt_install(pkgs: &[&str]) -> anyhow::Result<()> {
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("apt-get install {}", pkgs.join(" ")))
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

pub fn missing() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(p))
        .collect()
}

/// The toolchain this workspace builds with: the one rustup chose for this process
/// (`RUSTUP_TOOLCHAIN`, set by rustup's cargo proxy from rust-toolchain.toml), else the
/// channel rust-toolchain.toml names.
fn project_toolchain() -> String {
    if let Ok(t) = std::env::var("RUSTUP_TOOLCHAIN") {
        if !t.is_empty() {
            return t;
        }
    }
    let file = util::project_root().join("rust-toolchain.toml");
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .filter_map(|l| l.trim().strip_prefix("channel"))
                .filter_map(|rest| rest.split('"').nth(1).map(str::to_string))
                .next()
        })
        .unwrap_or_else(|| "stable".into())
}

/// Output of a command run in the project root, or `None` if it could not run or failed.
fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.current_dir(util::project_root()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rustup_available() -> bool {
    output(Command::new("rustup").arg("--version")).is_some()
}

fn target_installed(toolchain: &str, target: &str) -> bool {
    output(Command::new("rustup").args(["target", "list", "--installed", "--toolchain", toolchain]))
        .is_some_and(|s| s.lines().any(|l| l.trim() == target))
}

fn toolchain_installed(toolchain: &str) -> bool {
    // `rustup run` fails when the toolchain is not installed (and never installs it).
    output(
        Command::new("rustup")
            .args(["run", toolchain, "rustc", "--version"])
            .env("RUSTUP_AUTO_INSTALL", "0"),
    )
    .is_some()
}

fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// Whether `binary --version` names a release of the `series` (e.g. "0.13" for 0.13.2).
fn tool_installed(binary: &str, series: &str) -> bool {
    let path = cargo_bin_dir().join(binary);
    let prefix = format!("{series}.");
    output(Command::new(&path).arg("--version"))
        .is_some_and(|v| v.split_whitespace().any(|w| w.starts_with(&prefix)))
}

fn venv_dir(v: &Venv) -> PathBuf {
    util::project_root().join("target").join(v.dir)
}

/// The stamp a finished venv install leaves: its requirements, one per line.
fn venv_stamp(v: &Venv) -> PathBuf {
    venv_dir(v).join(".ferrite-requirements")
}

fn venv_ready(v: &Venv) -> bool {
    venv_dir(v).join(v.probe).exists()
        && std::fs::read_to_string(venv_stamp(v)).is_ok_and(|s| s == v.requirements.join("\n"))
}

/// One line of `deps --check`: what, whether present, why it is needed.
struct Item {
    kind: &'static str,
    name: String,
    present: bool,
    why: &'static str,
    /// The command that installs it.
    fix: String,
}

fn items() -> Vec<Item> {
    let mut items = vec![];
    for (p, why) in PACKAGES {
        items.push(Item {
            kind: "debian",
            name: p.to_string(),
            present: installed(p),
            why,
            fix: format!("apt-get install --no-install-recommends {p}"),
        });
    }
    let rustup = rustup_available();
    let toolchain = project_toolchain();
    for (t, why) in RUSTUP_TARGETS {
        items.push(Item {
            kind: "rustup target",
            name: format!("{t} ({toolchain})"),
            present: rustup && target_installed(&toolchain, t),
            why,
            fix: format!("rustup target add --toolchain {toolchain} {t}"),
        });
    }
    items.push(Item {
        kind: "rustup toolchain",
        name: FUZZ_TOOLCHAIN.into(),
        present: rustup && toolchain_installed(FUZZ_TOOLCHAIN),
        why: "the fuzz targets (cargo-fuzz needs nightly)",
        fix: format!("rustup toolchain install --profile minimal {FUZZ_TOOLCHAIN}"),
    });
    for (krate, version, bin, why) in CARGO_TOOLS {
        items.push(Item {
            kind: "cargo tool",
            name: format!("{krate} {version}"),
            present: tool_installed(bin, version),
            why,
            fix: format!("cargo install --locked {krate} --version '~{version}'"),
        });
    }
    for v in VENVS {
        items.push(Item {
            kind: "python venv",
            name: format!("target/{} ({})", v.dir, v.requirements.join(" ")),
            present: venv_ready(v),
            why: v.why,
            fix: format!(
                "{PYTHON} -m venv target/{0} && target/{0}/bin/pip install {1}",
                v.dir,
                v.requirements
                    .iter()
                    .map(|r| format!("'{r}'"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        });
    }
    items
}

/// `cargo xtask deps --check`: every item, present or not; an error naming the missing ones.
pub fn check() -> anyhow::Result<()> {
    let items = items();
    let mut missing = vec![];
    for i in &items {
        println!(
            "{:<8} {:<17} {:<48} {}",
            if i.present { "ok" } else { "MISSING" },
            i.kind,
            i.name,
            i.why
        );
        if !i.present {
            missing.push(i);
        }
    }
    if missing.is_empty() {
        println!("deps: all {} items present", items.len());
        return Ok(());
    }
    let fixes: Vec<&str> = missing.iter().map(|i| i.fix.as_str()).collect();
    bail!(
        "{} of {} items are missing; `cargo xtask deps` installs them (as root for the Debian \
         packages), or run:\n  {}",
        missing.len(),
        items.len(),
        fixes.join("\n  ")
    )
}

/// `cargo xtask deps`: installs whatever is missing. The Debian packages need root; without
/// it, the exact commands are printed and nothing else is tried.
pub fn install() -> anyhow::Result<()> {
    install_packages()?;
    install_rust()?;
    install_venvs()?;
    Ok(())
}

fn install_packages() -> anyhow::Result<()> {
    let missing = missing();
    if missing.is_empty() {
        println!("deps: all {} Debian packages present", PACKAGES.len());
        return Ok(());
    }
    if !util::is_root() {
        bail!(
            "these Debian packages are missing: {}; run `sudo cargo xtask deps` or \
             `sudo apt-get update && sudo apt-get install --no-install-recommends {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    println!("deps: installing {}", missing.join(" "));
    util::run(Command::new("apt-get").args(["update", "-q"])).context("apt-get update")?;
    let first: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|p| *p != QEMU_UTILS && *p != QEMU_BLOCK_EXTRA)
        .collect();
    if !first.is_empty() {
        apt_install(&first)?;
    }
    if !installed(QEMU_UTILS) || !installed(QEMU_BLOCK_EXTRA) {
        let pinned: Vec<String> = [QEMU_UTILS, QEMU_BLOCK_EXTRA]
            .iter()
            .map(|p| match version_of("qemu-system-x86") {
                Some(v) => format!("{p}={v}"),
                None => p.to_string(),
            })
            .collect();
        let pinned: Vec<&str> = pinned.iter().map(String::as_str).collect();
        apt_install(&pinned)?;
    }
    let still = self::missing();
    if !still.is_empty() {
        bail!(
            "apt-get finished but these are still missing: {}",
            still.join(", ")
        );
    }
    Ok(())
}

/// The rustup target of the static agent, the fuzzing toolchain and cargo-fuzz. rustup and
/// cargo install into the user's own directories: no root needed.
fn install_rust() -> anyhow::Result<()> {
    if !rustup_available() {
        bail!(
            "rustup is not on PATH: Ferrite builds with a rustup-managed toolchain (see \
             https://rustup.rs), which also provides the {} target it needs",
            crate::MUSL_TARGET
        );
    }
    let toolchain = project_toolchain();
    for (t, _) in RUSTUP_TARGETS {
        if !target_installed(&toolchain, t) {
            println!("deps: rustup target add --toolchain {toolchain} {t}");
            util::run(
                Command::new("rustup")
                    .args(["target", "add", "--toolchain", &toolchain, t])
                    .current_dir(util::project_root()),
            )?;
        }
    }
    if !toolchain_installed(FUZZ_TOOLCHAIN) {
        println!("deps: rustup toolchain install --profile minimal {FUZZ_TOOLCHAIN}");
        util::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "--profile",
            "minimal",
            FUZZ_TOOLCHAIN,
        ]))?;
    }
    for (krate, version, bin, _) in CARGO_TOOLS {
        if !tool_installed(bin, version) {
            println!("deps: cargo install --locked {krate} --version ~{version}");
            // Built with the project's toolchain, outside the workspace (its own lock file).
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            util::run(
                Command::new(cargo)
                    .args([
                        "install",
                        "--locked",
                        krate,
                        "--version",
                        &format!("~{version}"),
                    ])
                    .current_dir(std::env::temp_dir()),
            )?;
        }
    }
    Ok(())
}

fn install_venvs() -> anyhow::Result<()> {
    for v in VENVS {
        if venv_ready(v) {
            continue;
        }
        let dir = venv_dir(v);
        println!(
            "deps: python venv target/{} with {}",
            v.dir,
            v.requirements.join(" ")
        );
        if !dir.join("bin/pip").exists() {
            util::run(Command::new(PYTHON).arg("-m").arg("venv").arg(&dir))?;
        }
        util::run(
            Command::new(dir.join("bin/pip"))
                .args(["install", "-q", "--disable-pip-version-check"])
                .args(v.requirements),
        )?;
        std::fs::write(venv_stamp(v), v.requirements.join("\n"))?;
    }
    Ok(())
}
