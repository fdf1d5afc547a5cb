//! Installs the Debian packages that builds and tests need: only the missing ones, once.

use std::process::Command;

use anyhow::{bail, Context};

use crate::util;

/// Every Debian package a build, test, benchmark or the demo uses, with why.
pub const PACKAGES: &[(&str, &str)] = &[
    ("musl-tools", "C parts of crates for the static musl agent"),
    ("lshw", "inventory benchmark baseline"),
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
    ("tgt", "iSCSI interop tests and benchmark baseline (tgtd, tgtadm)"),
    ("libiscsi-bin", "iSCSI conformance tests and benchmark client (iscsi-test-cu, iscsi-inq, iscsi-ls, iscsi-perf)"),
    (
        "postgresql",
        "conductor tests and bench on a throwaway PostgreSQL server",
    ),
    (
        "python3-venv",
        "conductor bench baseline: a venv for OpenStack Ironic from PyPI (target/ironic-venv)",
    ),
];

/// Installing qemu-system-x86 (7.2) removes the machine image's backported qemu-utils 10, so
/// qemu-utils is installed afterwards, pinned to the installed qemu-system-x86's version.
const QEMU_UTILS: &str = "qemu-utils";

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

pub fn install() -> anyhow::Result<()> {
    let missing = missing();
    if missing.is_empty() {
        println!("deps: all {} Debian packages present", PACKAGES.len());
        return Ok(());
    }
    if !util::is_root() {
        bail!(
            "these Debian packages are missing: {}; run `sudo cargo xtask deps` or \
             `sudo apt-get install {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    println!("deps: installing {}", missing.join(" "));
    util::run(Command::new("apt-get").args(["update", "-q"])).context("apt-get update")?;
    let first: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|p| *p != QEMU_UTILS)
        .collect();
    if !first.is_empty() {
        apt_install(&first)?;
    }
    if !installed(QEMU_UTILS) {
        let pinned = match version_of("qemu-system-x86") {
            Some(v) => format!("{QEMU_UTILS}={v}"),
            None => QEMU_UTILS.to_string(),
        };
        apt_install(&[&pinned])?;
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
