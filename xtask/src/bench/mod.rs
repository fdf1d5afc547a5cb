//! `cargo xtask bench <name>`: each benchmark measures Ferrite and its baseline in the same
//! run and writes target/bench/<name>.json as an array of [`Record`]s.

mod agent;
mod conductor;
mod conductor_ironic;
mod e2e;
mod fileserver;
mod image_write;

use std::path::PathBuf;

use anyhow::bail;
use serde::Serialize;

use crate::util;

mod ipmi;
mod iscsi;
mod iscsi_deploy;

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub metric: String,
    pub unit: String,
    pub ferrite: f64,
    pub baseline_name: Option<String>,
    pub baseline: Option<f64>,
    /// ferrite / baseline
    pub ratio: Option<f64>,
    /// "higher" or "lower"
    pub better: &'static str,
    pub notes: String,
}

// Used by the benchmarks as each lands.
#[allow(dead_code)]
impl Record {
    pub fn new(metric: &str, unit: &str, ferrite: f64, better: &'static str) -> Record {
        Record {
            metric: metric.into(),
            unit: unit.into(),
            ferrite,
            baseline_name: None,
            baseline: None,
            ratio: None,
            better,
            notes: String::new(),
        }
    }

    pub fn baseline(mut self, name: &str, value: f64) -> Record {
        self.baseline_name = Some(name.into());
        self.baseline = Some(value);
        self.ratio = (value != 0.0).then(|| self.ferrite / value);
        self
    }

    pub fn notes(mut self, notes: impl Into<String>) -> Record {
        self.notes = notes.into();
        self
    }
}

/// Benchmark names with the function that runs each.
type Bench = fn() -> anyhow::Result<Vec<Record>>;
pub const BENCHES: &[(&str, Bench)] = &[
    ("ipmi", ipmi::run),
    ("agent", agent::run),
    ("e2e", e2e::run),
    ("iscsi", iscsi::run),
    ("image-write", image_write::run),
    ("conductor", conductor::run),
];

pub fn run(name: &str) -> anyhow::Result<()> {
    let Some((_, bench)) = BENCHES.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
        bail!("unknown benchmark {name:?}; known: {}", known.join(", "));
    };
    let records = bench()?;
    write(name, &records)
}

pub fn write(name: &str, records: &[Record]) -> anyhow::Result<()> {
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
    let dir: PathBuf = util::project_root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(records)?)?;
    println!("wrote {}", path.display());
    Ok(())
}
