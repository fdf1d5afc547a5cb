//! `cargo xtask fuzz`: runs every cargo-fuzz target of the workspace (each `<crate>/fuzz`)
//! for a fixed time on the nightly toolchain, one after the other. Corpora grow in
//! `<crate>/fuzz/corpus/<target>` (not committed), seeded from `<crate>/fuzz/seeds/<target>`
//! when present. A crash fails the run and names the input: fix the bug and keep the input
//! in `<crate>/fuzz/regressions/<target>/`, which the crate's stable tests replay.
//! Every run is appended to `target/fuzz/runs.tsv`, so the time each target has been
//! fuzzed adds up across runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::deps::FUZZ_TOOLCHAIN;
use crate::util;

/// One `[[bin]]` of a fuzz crate.
#[derive(Debug, Clone)]
pub struct Target {
    /// The crate that holds `fuzz/` (cargo fuzz runs from there).
    pub crate_dir: PathBuf,
    pub name: String,
}

/// The targets of every `*/fuzz/Cargo.toml` under `root`, in path order.
pub fn targets(root: &Path) -> anyhow::Result<Vec<Target>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("fuzz/Cargo.toml").is_file())
        .collect();
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let manifest = dir.join("fuzz/Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        for name in bin_names(&text) {
            out.push(Target {
                crate_dir: dir.clone(),
                name,
            });
        }
    }
    Ok(out)
}

/// The `name`s of the `[[bin]]` sections of a Cargo manifest.
fn bin_names(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
            continue;
        }
        if !in_bin {
            continue;
        }
        if let Some(v) = line.strip_prefix("name").map(str::trim_start) {
            if let Some(v) = v.strip_prefix('=') {
                out.push(v.trim().trim_matches('"').to_string());
            }
        }
    }
    out
}

/// What one libFuzzer run reported.
#[derive(Debug, Default, Clone, PartialEq)]
struct Outcome {
    runs: u64,
    seconds: u64,
    /// The input libFuzzer wrote for a crash, timeout or leak.
    artifact: Option<String>,
}

fn parse_output(log: &str) -> Outcome {
    let mut o = Outcome::default();
    for line in log.lines() {
        // "Done 13203 runs in 21 second(s)"
        if let Some(rest) = line.strip_prefix("Done ") {
            let w: Vec<&str> = rest.split_whitespace().collect();
            if let [runs, "runs", "in", secs, ..] = w.as_slice() {
                o.runs = runs.parse().unwrap_or(0);
                o.seconds = secs.parse().unwrap_or(0);
            }
        }
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            o.runs = o.runs.max(n.trim().parse().unwrap_or(0));
        }
        // "Test unit written to fuzz/artifacts/pdu/crash-…"
        if let Some(p) = line.split("Test unit written to ").nth(1) {
            o.artifact = Some(p.trim().to_string());
        }
    }
    o
}

/// `cargo +nightly …` with the stable toolchain's overrides removed (we may run under
/// `cargo xtask`, i.e. under stable cargo).
fn nightly_cargo(dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(format!("+{FUZZ_TOOLCHAIN}"))
        .current_dir(dir)
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    cmd
}

fn check_tools() -> anyhow::Result<()> {
    let ok = Command::new("cargo")
        .arg(format!("+{FUZZ_TOOLCHAIN}"))
        .args(["fuzz", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        bail!(
            "cargo-fuzz on the {FUZZ_TOOLCHAIN} toolchain is needed: run `cargo xtask deps` \
             (`cargo xtask deps --check` lists what is missing)"
        );
    }
    Ok(())
}

/// Starts building every fuzz crate at the lowest CPU priority (`nice -n 19`), so the build
/// overlaps other work (`cargo xtask test` runs the bench smokes meanwhile) without taking
/// the CPU from it; [`run`] afterwards finds the targets built. Output goes to
/// `target/fuzz/logs/build.log`.
pub fn build_in_background() -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::spawn(|| {
        check_tools()?;
        let root = util::project_root();
        let fuzz_target_dir = root.join("target/fuzz");
        let log_dir = fuzz_target_dir.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        let log_path = log_dir.join("build.log");
        let log = std::fs::File::create(&log_path)?;
        let mut dirs: Vec<std::path::PathBuf> =
            targets(&root)?.into_iter().map(|t| t.crate_dir).collect();
        dirs.dedup();
        for dir in dirs {
            let cargo = nightly_cargo(&dir);
            let mut cmd = Command::new("nice");
            cmd.args(["-n", "19", "cargo"])
                .args(cargo.get_args())
                .args(["fuzz", "build", "--target-dir"])
                .arg(&fuzz_target_dir)
                .current_dir(&dir)
                .stdout(log.try_clone()?)
                .stderr(log.try_clone()?);
            for (k, v) in cargo.get_envs() {
                match v {
                    Some(v) => cmd.env(k, v),
                    None => cmd.env_remove(k),
                };
            }
            let status = cmd
                .status()
                .with_context(|| format!("starting cargo fuzz build in {}", dir.display()))?;
            if !status.success() {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                bail!(
                    "cargo fuzz build in {} failed ({status}); the end of {}:\n{}",
                    dir.display(),
                    log_path.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        Ok(())
    })
}

/// Builds and runs every target (or those whose name contains `only`) for `seconds` each.
pub fn run(seconds: u64, only: Option<&str>) -> anyhow::Result<()> {
    check_tools()?;
    let root = util::project_root();
    let fuzz_target_dir = root.join("target/fuzz");
    let log_dir = fuzz_target_dir.join("logs");
    std::fs::create_dir_all(&log_dir)?;
    let all = targets(&root)?;
    let chosen: Vec<&Target> = all
        .iter()
        .filter(|t| only.is_none_or(|o| t.name.contains(o)))
        .collect();
    if chosen.is_empty() {
        bail!(
            "no fuzz target matches {:?}; there are: {}",
            only.unwrap_or(""),
            all.iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let target_dir = fuzz_target_dir.to_string_lossy().to_string();
    let mut built: Vec<&Path> = Vec::new();
    for t in &chosen {
        if built.contains(&t.crate_dir.as_path()) {
            continue;
        }
        util::step(&format!("cargo fuzz build ({})", t.crate_dir.display()));
        util::run(nightly_cargo(&t.crate_dir).args([
            "fuzz",
            "build",
            "--target-dir",
            &target_dir,
        ]))?;
        built.push(&t.crate_dir);
    }
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    for t in &chosen {
        util::step(&format!("fuzz {} for {seconds} s", t.name));
        let corpus = t.crate_dir.join("fuzz/corpus").join(&t.name);
        std::fs::create_dir_all(&corpus)?;
        let log_path = log_dir.join(format!("{}.log", t.name));
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = nightly_cargo(&t.crate_dir);
        cmd.args(["fuzz", "run", "--target-dir", &target_dir, &t.name])
            .arg(&corpus);
        let seeds = t.crate_dir.join("fuzz/seeds").join(&t.name);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-timeout=30",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ])
        .stdout(log.try_clone()?)
        .stderr(log);
        let status = cmd
            .status()
            .with_context(|| format!("starting cargo fuzz run {}", t.name))?;
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let o = parse_output(&text);
        let result = if status.success() {
            "ok".to_string()
        } else {
            let what = match &o.artifact {
                Some(a) => format!(
                    "crashed on {}/{a}: fix it, then keep the input in {}/fuzz/regressions/{}/",
                    t.crate_dir.display(),
                    t.crate_dir.display(),
                    t.name
                ),
                None => format!("failed ({status}); see {}", log_path.display()),
            };
            failed.push(format!("{}: {what}", t.name));
            "FAILED".to_string()
        };
        record(&fuzz_target_dir, &t.name, &o, &result)?;
        rows.push((t.name.clone(), o, result));
    }
    let totals = totals(&fuzz_target_dir)?;
    println!(
        "\n{:<14} {:>8} {:>12} {:>8}  {:>14}  result",
        "target", "seconds", "runs", "exec/s", "total fuzzed"
    );
    for (name, o, result) in &rows {
        let total = totals.iter().find(|(n, _)| n == name).map_or(0, |t| t.1);
        println!(
            "{:<14} {:>8} {:>12} {:>8}  {:>12} s  {result}",
            name,
            o.seconds,
            o.runs,
            o.runs / o.seconds.max(1),
            total
        );
    }
    if !failed.is_empty() {
        bail!("fuzzing found problems:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

/// Appends one run to `runs.tsv`: time, target, seconds, runs, result.
fn record(dir: &Path, name: &str, o: &Outcome, result: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("runs.tsv"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    writeln!(f, "{now}\t{name}\t{}\t{}\t{result}", o.seconds, o.runs)?;
    Ok(())
}

/// Seconds each target has been fuzzed, summed over `runs.tsv`.
fn totals(dir: &Path) -> anyhow::Result<Vec<(String, u64)>> {
    let text = std::fs::read_to_string(dir.join("runs.tsv")).unwrap_or_default();
    let mut out: Vec<(String, u64)> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if let [_, name, secs, ..] = f.as_slice() {
            let secs: u64 = secs.parse().unwrap_or(0);
            match out.iter_mut().find(|(n, _)| n == name) {
                Some(t) => t.1 += secs,
                None => out.push((name.to_string(), secs)),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_target_of_the_workspace() {
        let t = targets(&util::project_root()).unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        for want in [
            "pdu",
            "login",
            "initiator",
            "decode",
            "packet",
            "iso9660",
            "partition_tables",
            "checksum_file",
            "nvme",
            "disk_probe",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }

    #[test]
    fn reads_libfuzzer_figures_and_artifacts() {
        let o = parse_output(
            "#1024 pulse cov: 10\nDone 13203 runs in 21 second(s)\n\
             stat::number_of_executed_units: 13203\n",
        );
        assert_eq!((o.runs, o.seconds, o.artifact), (13203, 21, None));
        let o = parse_output(
            "==1== ERROR: libFuzzer: deadly signal\n\
             artifact_prefix='fuzz/artifacts/pdu/'; Test unit written to fuzz/artifacts/pdu/crash-ab12\n",
        );
        assert_eq!(o.artifact.as_deref(), Some("fuzz/artifacts/pdu/crash-ab12"));
    }

    #[test]
    fn bin_names_come_from_bin_sections_only() {
        let m = "[package]\nname = \"x-fuzz\"\n\n[[bin]]\nname = \"a\"\npath = \"a.rs\"\n\n\
                 [dependencies]\nname = \"no\"\n[[bin]]\nname = \"b\"\n";
        assert_eq!(bin_names(m), ["a", "b"]);
    }
}
