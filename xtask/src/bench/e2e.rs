//! `cargo xtask bench e2e`: the deploy walk through QEMU (TCG) and the simulated BMC —
//! PXE boot of the ramdisk, first lookup, image + config drive write, boot of the deployed
//! disk — plus ramdisk and kernel sizes and VM RAM, next to IPA's published figures.
//!
//! The walk runs without a conductor (the agent is driven over its API, see
//! `ferrite_qemu_harness::walk`), so inspection and cleaning as conductor phases are not
//! measured here yet.

use super::Record;
use crate::util;

const MIB: f64 = 1024.0 * 1024.0;

pub fn run() -> anyhow::Result<Vec<Record>> {
    let agent = crate::build_agent()?;
    let target = util::project_root().join("target");
    // The BMC's chassis program.
    util::cargo(&[
        "build",
        "--package",
        "ferrite-qemu-harness",
        "--bin",
        "ferrite-qemu-harness",
    ])?;
    let work = tempfile::Builder::new()
        .prefix("ferrite-bench-e2e-")
        .tempdir()?;
    let mut cfg = ferrite_qemu_harness::walk::WalkConfig::new(
        agent,
        target.join("ramdisk-cache"),
        work.path().to_path_buf(),
    );
    cfg.hostname = "bench-node".into();
    cfg.clean_after = true;
    cfg.chassis_program = Some(target.join("debug/ferrite-qemu-harness"));
    let report = ferrite_qemu_harness::walk::run(&cfg)?;
    anyhow::ensure!(
        report.marker.is_some(),
        "the deploy failed: {}",
        report.deploy
    );
    let mut records = vec![];
    for (phase, took) in &report.phases {
        records.push(
            Record::new(&format!("{phase} (TCG)"), "s", took.as_secs_f64(), "lower")
                .notes("wall time; QEMU TCG on a shared 2-core machine"),
        );
    }
    records.push(
        Record::new(
            "kernel size",
            "MB",
            report.kernel_bytes as f64 / 1e6,
            "lower",
        )
        .baseline("TinyIPA kernel (published)", 5.65)
        .notes("Debian linux-image-6.1.0-50-amd64; IPA figure from its docs, not measured here"),
    );
    records.push(
        Record::new(
            "initramfs size",
            "MB",
            report.initramfs_bytes as f64 / 1e6,
            "lower",
        )
        .baseline("TinyIPA initramfs (published)", 91.9)
        .notes(format!(
            "gzip cpio with the static agent; {:.2} MiB; IPA figure from its docs",
            report.initramfs_bytes as f64 / MIB
        )),
    );
    records.push(
        Record::new(
            "VM RAM for the deploy",
            "MiB",
            cfg.memory_mib as f64,
            "lower",
        )
        .baseline("DIB IPA ramdisk minimum (published)", 1536.0)
        .notes("the whole walk ran in this much guest RAM"),
    );
    Ok(records)
}
