//! `cargo xtask bench <name>`: each benchmark measures Ferrite and its baseline in the same
//! run and writes target/bench/<name>.json as an array of [`Record`]s.
//! `cargo xtask bench --smoke` runs every benchmark with tiny sizes and checks what they
//! write (`cargo xtask test` runs it), so that no bench rots between measurements.

mod agent;
mod conductor;
mod conductor_ironic;
mod e2e;
pub mod fleet;
mod image_write;
mod ipmi;
mod iscsi;
mod iscsi_deploy;
mod lab_walk;
mod load;
mod ramdisk_boot;
mod redfish;
mod redfish_vmedia;
mod smoke;

use std::path::PathBuf;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::util;

pub use smoke::smoke;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub metric: String,
    pub unit: String,
    pub ferrite: f64,
    pub baseline_name: Option<String>,
    pub baseline: Option<f64>,
    /// ferrite / baseline; null when the baseline has no figure or a zero one
    pub ratio: Option<f64>,
    /// "higher" or "lower"
    pub better: String,
    /// How the runs were made; ends with the machine's load average before and after.
    pub notes: String,
    /// How the outputs behind the figure were checked (sha256 of what was written, the
    /// answer of every call...), on both sides.
    pub verified: String,
}

impl Record {
    pub fn new(metric: &str, unit: &str, ferrite: f64, better: &'static str) -> Record {
        Record {
            metric: metric.into(),
            unit: unit.into(),
            ferrite,
            baseline_name: None,
            baseline: None,
            ratio: None,
            better: better.into(),
            notes: String::new(),
            verified: String::new(),
        }
    }

    /// The baseline's figure; a baseline that produced none this run (NaN: no answer was
    /// accepted) keeps its name with a null figure, and a zero figure has no ratio.
    pub fn baseline(mut self, name: &str, value: f64) -> Record {
        self.baseline_name = Some(name.into());
        self.baseline = (value.is_finite() && value >= 0.0).then_some(value);
        self.ratio = self.baseline.filter(|b| *b > 0.0).map(|b| self.ferrite / b);
        self
    }

    pub fn notes(mut self, notes: impl Into<String>) -> Record {
        self.notes = notes.into();
        self
    }

    pub fn verified(mut self, how: impl Into<String>) -> Record {
        self.verified = how.into();
        self
    }
}

/// How much a run measures: the real sizes, or tiny ones that only prove the bench works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Full,
    Smoke,
}

impl Size {
    /// `full` for a measurement, `smoke` for a smoke run.
    pub fn pick<T>(self, full: T, smoke: T) -> T {
        match self {
            Size::Full => full,
            Size::Smoke => smoke,
        }
    }
}

/// Builds the programs a bench runs and returns the directory they are in.
///
/// A full run builds `targets` (cargo `-p`/`--bin`/`--example` arguments) with the release
/// profile. A smoke run takes the dev build `cargo test --workspace` makes, which holds
/// every binary and example of the workspace: building only `targets` would resolve other
/// features for the shared dependencies and recompile tokio, hyper, rustls and the rest
/// (2-3 minutes on a fresh machine), while this is a no-op after the test build.
pub fn build(size: Size, targets: &[&str]) -> anyhow::Result<std::path::PathBuf> {
    let out = crate::util::project_root().join("target");
    match size {
        Size::Full => {
            let mut args = vec!["build", "--profile", "release", "--locked"];
            args.extend_from_slice(targets);
            crate::util::cargo(&args)?;
            Ok(out.join("release"))
        }
        Size::Smoke => {
            crate::util::cargo(&["test", "--workspace", "--locked", "--no-run", "--quiet"])?;
            Ok(out.join("debug"))
        }
    }
}

/// Benchmark names with the function that runs each.
type Bench = fn(Size) -> anyhow::Result<Vec<Record>>;
pub const BENCHES: &[(&str, Bench)] = &[
    ("ipmi", ipmi::run),
    ("agent", agent::run),
    ("e2e", e2e::run),
    ("iscsi", iscsi::run),
    ("image-write", image_write::run),
    ("conductor", conductor::run),
    ("redfish", redfish::run),
    ("fleet", fleet::run),
];

pub fn names() -> Vec<&'static str> {
    BENCHES.iter().map(|(n, _)| *n).collect()
}

pub fn run(name: &str) -> anyhow::Result<()> {
    let records = measure(name, Size::Full)?;
    write(&bench_dir().join(format!("{name}.json")), &records)
}

/// Runs one bench and appends the load average around it to every record's notes.
fn measure(name: &str, size: Size) -> anyhow::Result<Vec<Record>> {
    let Some((_, bench)) = BENCHES.iter().find(|(n, _)| *n == name) else {
        bail!("unknown benchmark {name:?}; known: {}", names().join(", "));
    };
    let before = load::now()?;
    let mut records = bench(size)?;
    let after = load::now()?;
    for r in &mut records {
        load::annotate(r, before, after);
    }
    Ok(records)
}

fn bench_dir() -> PathBuf {
    util::project_root().join("target/bench")
}

pub fn write(path: &std::path::Path, records: &[Record]) -> anyhow::Result<()> {
    println!(
        "{:<44} {:>12} {:>12} {:>8}  unit",
        "metric", "ferrite", "baseline", "ratio"
    );
    for r in records {
        println!(
            "{:<44} {:>12.3} {:>12} {:>8}  {} (better {}) {}",
            r.metric,
            r.ferrite,
            r.baseline
                .map(|b| format!("{b:.3}"))
                .unwrap_or_else(|| "-".into()),
            r.ratio
                .map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "-".into()),
            r.unit,
            r.better,
            r.notes
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(records)?)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The Python of the baseline venv target/`dir` (made by `cargo xtask deps`), which has
/// `package` installed.
pub fn venv_python(dir: &str, package: &str) -> anyhow::Result<PathBuf> {
    let python = util::project_root()
        .join("target")
        .join(dir)
        .join("bin/python");
    if !python.exists() {
        bail!(
            "{} is missing: run `cargo xtask deps` (it makes target/{dir} with {package} \
             from PyPI)",
            python.display()
        );
    }
    Ok(python)
}
