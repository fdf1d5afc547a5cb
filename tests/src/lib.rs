//! Shared helpers for Ferrite's end-to-end and fixture tests.

use std::path::PathBuf;

pub mod guest;

/// `tests/fixtures/` in the source tree.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// True when the caller asked to skip the slow QEMU tests (`cargo xtask test --quick`
/// sets `FERRITE_SKIP_VM_TESTS=1`); prints and records the skip (see
/// `ferrite_qemu_harness::skip`).
#[track_caller]
pub fn skip_vm_tests() -> bool {
    ferrite_qemu_harness::skip_vm_test()
}

/// The workspace's `target/` directory.
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// The `ferrite` binary beside the running test's directory (`target/debug/ferrite`),
/// which `cargo test --workspace` builds with the conductor's own tests.
pub fn ferrite_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|d| d.join("ferrite"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p ferrite-conductor`",
        bin.display()
    );
    bin
}

/// A conductor-driven lab configuration with the static agent, the `ferrite` binary and
/// the ramdisk download cache of this workspace, working in `work_dir`.
pub fn lab_config(work_dir: &std::path::Path) -> ferrite_qemu_harness::conducted::LabConfig {
    let agent = target_dir().join("agent/ferrite-agent");
    assert!(
        agent.exists(),
        "{} is missing: build the static agent first (`cargo xtask agent`)",
        agent.display()
    );
    ferrite_qemu_harness::conducted::LabConfig::new(
        agent,
        ferrite_bin(),
        target_dir().join("ramdisk-cache"),
        work_dir.to_path_buf(),
    )
}

/// Unwraps a harness result, panicking with its full (multi-line) message.
pub fn ok<T>(r: Result<T, ferrite_qemu_harness::Error>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A node's `provision_state`.
pub fn state(n: &serde_json::Value) -> &str {
    n["provision_state"].as_str().unwrap_or("?")
}
