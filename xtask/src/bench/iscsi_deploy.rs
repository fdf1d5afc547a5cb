//! The deploy half of `cargo xtask bench iscsi`: conductor deploy time through the
//! `iscsi` deploy interface vs the `direct` one, same image, same run (alternating), from
//! conductor/examples/deploy_timing.rs (in-process conductor + agent library on loopback,
//! sparse files as disks).

use std::process::Command;

use anyhow::{bail, Context};
use serde_json::Value;

use super::{Record, Size};
use crate::util;

const IMAGE_MIB: &str = "1024";
const ROUNDS: &str = "3";

pub fn records(size: Size) -> anyhow::Result<Vec<Record>> {
    // The smoke size: a 16 MiB image, one round each.
    let (image_mib, rounds) = size.pick((IMAGE_MIB, ROUNDS), ("16", "1"));
    // The deployed build, as `bench conductor` uses (the bench-conductor profile it once
    // shared is gone from Cargo.toml).
    let profile = std::env::var("FERRITE_BENCH_PROFILE")
        .unwrap_or_else(|_| size.pick("release", "dev").into());
    util::cargo(&[
        "build",
        "--profile",
        &profile,
        "-p",
        "ferrite-conductor",
        "--example",
        "deploy_timing",
    ])?;
    let dir = if profile == "dev" { "debug" } else { &profile };
    let root = util::project_root();
    let bin = root.join("target").join(dir).join("examples/deploy_timing");
    let work = root.join("target/bench/iscsi-deploy");
    let out = Command::new(&bin)
        .arg(&work)
        .args([image_mib, rounds])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    if !out.status.success() {
        bail!(
            "deploy_timing failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("deploy_timing output")?;
    let secs = |k: &str| -> Vec<f64> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (iscsi, direct) = (secs("iscsi"), secs("direct"));
    if iscsi.is_empty() || direct.is_empty() {
        bail!("deploy_timing printed no timings: {v}");
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Ok(vec![Record::new(
        &format!("conductor deploy, {image_mib} MiB raw image"),
        "s",
        mean(&iscsi),
        "lower",
    )
    .baseline(
        "deploy_interface=direct (agent streams the image), same image, same run",
        mean(&direct),
    )
    .notes(format!(
        "deploy_interface=iscsi: the agent exports its disk, the conductor writes through \
         our initiator and the shared pipeline; PUT active → active, in-process conductor \
         (SQLite, fake-hardware) + agent library on loopback, sparse-file disks; \
         mean of {rounds} alternating rounds; iscsi {iscsi:.2?}, direct {direct:.2?}; \
         cargo profile {profile}"
    ))
    .verified(
        "deploy_timing reads every deployed disk back and compares it with the image",
    )])
}
