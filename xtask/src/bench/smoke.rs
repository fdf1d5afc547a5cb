//! `cargo xtask bench --smoke`: every bench at tiny sizes, each JSON file read back and
//! checked, so that a bench that no longer builds, runs, verifies its outputs or writes
//! well-formed records fails `cargo xtask test` instead of the next measurement.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context};

use super::{load, Record, Size};
use crate::util;

/// Runs every bench (or only `only`) at its smoke size; `skip_vm` leaves out the one that
/// boots QEMU.
pub fn smoke(skip_vm: bool, only: Option<&str>) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = super::bench_dir().join("smoke");
    let names: Vec<&str> = match only {
        Some(name) if !super::names().contains(&name) => bail!(
            "unknown benchmark {name:?}; known: {}",
            super::names().join(", ")
        ),
        Some(name) => vec![name],
        None => super::names(),
    };
    let mut failed = vec![];
    for &name in &names {
        if skip_vm && name == "e2e" {
            eprintln!("bench --smoke: skipping e2e (it boots a QEMU VM; --quick)");
            continue;
        }
        util::step(&format!("bench --smoke {name}"));
        let t = Instant::now();
        let path = dir.join(format!("{name}.json"));
        let result = super::measure(name, Size::Smoke)
            .and_then(|records| super::write(&path, &records))
            .and_then(|()| check_file(&path));
        match result {
            Ok(n) => println!(
                "bench --smoke {name}: {n} records well formed, outputs verified ({:.1} s)",
                t.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("bench --smoke {name}: FAILED: {e:#}");
                failed.push(format!("{name}: {e:#}"));
            }
        }
    }
    println!(
        "bench --smoke: {} benches in {:.0} s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        bail!("bench --smoke failed:\n  {}", failed.join("\n  "));
    }
    Ok(())
}

/// Reads a bench's JSON file back and checks every record; the number of records.
fn check_file(path: &Path) -> anyhow::Result<usize> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let records: Vec<Record> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    ensure!(!records.is_empty(), "{} holds no records", path.display());
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        check(r).with_context(|| format!("record {:?} in {}", r.metric, path.display()))?;
        ensure!(
            seen.insert(&r.metric),
            "metric {:?} appears twice",
            r.metric
        );
    }
    Ok(records.len())
}

/// What every record must hold.
fn check(r: &Record) -> anyhow::Result<()> {
    ensure!(!r.metric.trim().is_empty(), "empty metric");
    ensure!(!r.unit.trim().is_empty(), "empty unit");
    ensure!(
        r.ferrite.is_finite() && r.ferrite >= 0.0,
        "ferrite's figure {} is not a finite non-negative number",
        r.ferrite
    );
    ensure!(
        r.better == "higher" || r.better == "lower",
        "better is {:?}, not \"higher\" or \"lower\"",
        r.better
    );
    match (&r.baseline_name, r.baseline, r.ratio) {
        (None, None, None) => {}
        (Some(name), b, ratio) => {
            ensure!(!name.trim().is_empty(), "empty baseline_name");
            match (b, ratio) {
                // Named, but no figure this run (e.g. no answer accepted).
                (None, None) => {}
                (Some(b), None) => ensure!(b == 0.0, "baseline {b} without a ratio"),
                (Some(b), Some(ratio)) => {
                    ensure!(
                        b.is_finite() && b > 0.0,
                        "baseline {b} is not a finite positive number"
                    );
                    let want = r.ferrite / b;
                    ensure!(
                        (ratio - want).abs() <= 1e-9 * want.abs().max(1.0),
                        "ratio {ratio} is not ferrite / baseline = {want}"
                    );
                }
                (None, Some(ratio)) => bail!("ratio {ratio} without a baseline figure"),
            }
        }
        (None, b, ratio) => bail!("baseline {b:?} and ratio {ratio:?} without a baseline_name"),
    }
    ensure!(
        r.notes.contains("load average (1 min)"),
        "the notes do not give the load average: {:?}",
        r.notes
    );
    let busy = r.notes.contains(load::BUSY_MARK);
    let (before, after) = loads(&r.notes).context("reading the load average from the notes")?;
    ensure!(
        busy == (before.max(after) > load::BUSY),
        "load {before}/{after} but busy mark {busy}"
    );
    ensure!(
        !r.verified.trim().is_empty(),
        "the record does not say how its outputs were verified"
    );
    Ok(())
}

/// The two figures of "load average (1 min) B before, A after".
fn loads(notes: &str) -> Option<(f64, f64)> {
    let rest = notes.rsplit_once("load average (1 min) ")?.1;
    let (before, rest) = rest.split_once(" before, ")?;
    let after = rest.split_once(" after")?.0;
    Some((before.parse().ok()?, after.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Record {
        let mut r = Record::new("throughput", "MiB/s", 900.0, "higher")
            .baseline("dd", 600.0)
            .notes("3 runs")
            .verified("sha256 of both targets");
        load::annotate(&mut r, 0.5, 0.7);
        r
    }

    #[test]
    fn a_well_formed_record_passes() {
        check(&good()).unwrap();
        let mut r = good().baseline("dd", f64::NAN);
        assert_eq!((r.baseline, r.ratio), (None, None));
        check(&r).unwrap();
        r = good().baseline("dd", 0.0);
        assert_eq!((r.baseline, r.ratio), (Some(0.0), None));
        check(&r).unwrap();
        let mut r = Record::new("size", "bytes", 10.0, "lower").verified("file read");
        load::annotate(&mut r, 2.0, 3.0);
        check(&r).unwrap();
    }

    #[test]
    fn each_broken_field_is_named() {
        type Breakage = Box<dyn Fn(&mut Record)>;
        let cases: Vec<(Breakage, &str)> = vec![
            (Box::new(|r| r.metric.clear()), "empty metric"),
            (Box::new(|r| r.unit = " ".into()), "empty unit"),
            (Box::new(|r| r.ferrite = f64::NAN), "not a finite"),
            (Box::new(|r| r.better = "faster".into()), "better is"),
            (
                Box::new(|r| r.ratio = Some(2.0)),
                "is not ferrite / baseline",
            ),
            (Box::new(|r| r.baseline = None), "without a baseline figure"),
            (
                Box::new(|r| r.baseline_name = None),
                "without a baseline_name",
            ),
            (Box::new(|r| r.ratio = None), "without a ratio"),
            (
                Box::new(|r| r.baseline = Some(0.0)),
                "not a finite positive",
            ),
            (Box::new(|r| r.notes = "3 runs".into()), "load average"),
            (
                Box::new(|r| r.notes = r.notes.replace("0.70 after", "1.70 after")),
                "busy mark",
            ),
            (Box::new(|r| r.verified.clear()), "verified"),
        ];
        for (breakage, want) in cases {
            let mut r = good();
            breakage(&mut r);
            let e = format!("{:#}", check(&r).unwrap_err());
            assert!(e.contains(want), "{e:?} should mention {want:?}");
        }
    }

    #[test]
    fn a_file_with_duplicate_or_missing_fields_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        let r = good();
        std::fs::write(&path, serde_json::to_string(&vec![r.clone(), r]).unwrap()).unwrap();
        assert!(format!("{:#}", check_file(&path).unwrap_err()).contains("twice"));
        std::fs::write(&path, r#"[{"metric": "m"}]"#).unwrap();
        assert!(format!("{:#}", check_file(&path).unwrap_err()).contains("parsing"));
        std::fs::write(&path, "[]").unwrap();
        assert!(format!("{:#}", check_file(&path).unwrap_err()).contains("no records"));
        std::fs::write(&path, serde_json::to_string(&vec![good()]).unwrap()).unwrap();
        assert_eq!(check_file(&path).unwrap(), 1);
    }
}
