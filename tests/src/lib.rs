//! Shared helpers for Ferrite's end-to-end and fixture tests.

use std::path::PathBuf;

/// `tests/fixtures/` in the source tree.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// True when the caller asked to skip the slow QEMU tests (`cargo xtask test --quick`).
pub fn skip_vm_tests() -> bool {
    std::env::var_os("FERRITE_SKIP_VM_TESTS").is_some()
}
