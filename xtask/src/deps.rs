//! Installs the Debian packages that builds and tests need: only the missing ones, once.

use std::process::Command;

use anyhow::{bail, Context};

use crate::util;

/// Every Debian package a build, test, benchmark or the demo uses, with why.
pub const PACKAGES: &[(&str, &str)] = &[
    ("musl-tools", "C parts of crates for the static musl agent"),
    ("lshw", "inventory benchmark baseline"),
    (
        "openipmi",
        "ipmi_sim: the simulated BMC of the IPMI tests and VM harness",
    ),
    (
        "ipmitool",
        "IPMI cross-checks and the ipmi benchmark baseline",
    ),
];

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
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get install")?;
    let still = self::missing();
    if !still.is_empty() {
        bail!(
            "apt-get finished but these are still missing: {}",
            still.join(", ")
        );
    }
    Ok(())
}
