//! The one switch that skips the QEMU tests in a quick local loop (`cargo xtask test
//! --quick` sets `FERRITE_SKIP_VM_TESTS=1`). It is honoured only when set to exactly `1`;
//! every skip prints one line to stderr and, when `FERRITE_VM_SKIP_LOG` names a file,
//! appends the skipped test's location there, so that `cargo xtask test` (CI) fails if any
//! VM test was skipped.

use std::io::Write;

/// The variable that asks for the skip.
pub const SKIP_VAR: &str = "FERRITE_SKIP_VM_TESTS";
/// The file every skip is recorded in, if set.
pub const SKIP_LOG_VAR: &str = "FERRITE_VM_SKIP_LOG";

/// True when the calling VM test should return at once. Call it first thing in the test.
#[track_caller]
pub fn skip_vm_test() -> bool {
    let value = std::env::var(SKIP_VAR).unwrap_or_default();
    if value != "1" {
        if !value.is_empty() {
            eprintln!("{SKIP_VAR}={value:?} ignored: only `1` skips the VM tests");
        }
        return false;
    }
    let at = std::panic::Location::caller();
    eprintln!("skipped: VM test at {at} ({SKIP_VAR}=1)");
    if let Some(log) = std::env::var_os(SKIP_LOG_VAR) {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| writeln!(f, "{at}"));
    }
    true
}
