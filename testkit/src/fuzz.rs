//! Replaying a crate's fuzz corpus in `cargo test`: the committed seeds and every past
//! finding (`fuzz/regressions/<target>/`, where `cargo xtask fuzz` says to put a crash once
//! it is fixed) run through the fuzz targets' functions on every test run.

use std::path::Path;

/// A fuzz target: its name (the corpus directory) and the function `cargo fuzz` runs.
pub type Target<'a> = (&'a str, fn(&[u8]));

/// Runs each target's function over every file of `fuzz/seeds/<target>/` and
/// `fuzz/regressions/<target>/` of the crate at `crate_dir` (its `CARGO_MANIFEST_DIR`);
/// returns how many inputs each target ran, in the order given. A panic in a target fails
/// the calling test.
pub fn replay_corpus(crate_dir: impl AsRef<Path>, targets: &[Target]) -> Vec<(String, usize)> {
    let fuzz_dir = crate_dir.as_ref().join("fuzz");
    targets
        .iter()
        .map(|(target, run)| {
            let mut n = 0;
            for sub in ["seeds", "regressions"] {
                let Ok(dir) = std::fs::read_dir(fuzz_dir.join(sub).join(target)) else {
                    continue;
                };
                for entry in dir {
                    let path = entry.expect("listing the fuzz corpus").path();
                    let data = std::fs::read(&path)
                        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                    run(&data);
                    n += 1;
                }
            }
            (target.to_string(), n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static BYTES: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn replays_seeds_and_regressions_of_each_target() {
        let dir = tempfile::tempdir().unwrap();
        for (sub, name, data) in [
            ("seeds", "a", &b"12"[..]),
            ("seeds", "b", b"345"),
            ("regressions", "c", b"6"),
        ] {
            let d = dir.path().join("fuzz").join(sub).join("codec");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(name), data).unwrap();
        }
        let counts = replay_corpus(
            dir.path(),
            &[
                ("codec", |d| {
                    BYTES.fetch_add(d.len(), Ordering::SeqCst);
                }),
                ("absent", |_| panic!("no inputs")),
            ],
        );
        assert_eq!(
            counts,
            [("codec".to_string(), 3), ("absent".to_string(), 0)]
        );
        assert_eq!(BYTES.load(Ordering::SeqCst), 6);
    }
}
