//! The safety gate for destructive work: writing, erasing or repartitioning a disk is
//! allowed only when the agent runs from its ramdisk (root filesystem is an initramfs),
//! or when the caller named the target explicitly as a regular file or a loop device.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// How the target disk was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Named by the operator/test (`--disk`, `ferrite_target_disk`).
    Explicit,
    /// Picked by root device hints or the default rule.
    Discovered,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SafetyError {
    #[error(
        "refusing to modify {path}: the agent is not running from its ramdisk (root filesystem \
         is {rootfs}) and {why}; name a regular file or a /dev/loopN device explicitly, or run \
         the agent from the Ferrite ramdisk"
    )]
    NotAllowed {
        path: PathBuf,
        rootfs: String,
        why: &'static str,
    },
    #[error("target {path} does not exist or cannot be inspected: {why}")]
    Missing { path: PathBuf, why: String },
}

/// The root filesystem's type as statfs names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFs {
    Ramfs,
    Tmpfs,
    Other(i64),
}

impl RootFs {
    pub fn current() -> RootFs {
        const RAMFS_MAGIC: i64 = 0x8584_58f6;
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        match nix::sys::statfs::statfs("/") {
            // f_type is i64 on glibc and u64 on musl; the magics fit either way.
            #[allow(clippy::unnecessary_cast)]
            Ok(s) => match s.filesystem_type().0 as i64 {
                RAMFS_MAGIC => RootFs::Ramfs,
                TMPFS_MAGIC => RootFs::Tmpfs,
                other => RootFs::Other(other),
            },
            Err(_) => RootFs::Other(-1),
        }
    }

    /// An initramfs root is ramfs or tmpfs ("rootfs").
    pub fn is_ramdisk(self) -> bool {
        matches!(self, RootFs::Ramfs | RootFs::Tmpfs)
    }

    fn describe(self) -> String {
        match self {
            RootFs::Ramfs => "ramfs".into(),
            RootFs::Tmpfs => "tmpfs".into(),
            RootFs::Other(0xef53) => "ext2/3/4".into(),
            RootFs::Other(0x9123_683e) => "btrfs".into(),
            RootFs::Other(0x5846_5342) => "xfs".into(),
            RootFs::Other(m) => format!("a disk filesystem (magic {m:#x})"),
        }
    }
}

/// True for /dev/loopN (and its /dev/block alias) by the device's sysfs name.
fn is_loop_device(path: &Path) -> bool {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    real.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("loop"))
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// May the agent write to `path`? `rootfs` is passed in so tests can check both answers.
pub fn check(path: &Path, choice: Choice, rootfs: RootFs) -> Result<(), SafetyError> {
    if rootfs.is_ramdisk() {
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(|e| SafetyError::Missing {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    let not_allowed = |why| SafetyError::NotAllowed {
        path: path.to_owned(),
        rootfs: rootfs.describe(),
        why,
    };
    if choice == Choice::Discovered {
        return Err(not_allowed(
            "the disk was chosen by discovery, not named explicitly",
        ));
    }
    if meta.file_type().is_file() {
        return Ok(());
    }
    if meta.file_type().is_block_device() && is_loop_device(path) {
        return Ok(());
    }
    Err(not_allowed(
        "it is neither a regular file nor a loop device",
    ))
}

/// `check` against the running system.
pub fn authorize(path: &Path, choice: Choice) -> Result<(), SafetyError> {
    check(path, choice, RootFs::current())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_named_explicitly_are_allowed_anywhere() {
        let f = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(
            check(f.path(), Choice::Explicit, RootFs::Other(0xef53)),
            Ok(())
        );
    }

    #[test]
    fn discovered_disks_need_the_ramdisk() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = check(f.path(), Choice::Discovered, RootFs::Other(0xef53)).unwrap_err();
        assert!(
            e.to_string().contains("not running from its ramdisk"),
            "{e}"
        );
        assert!(e.to_string().contains("ext2/3/4"), "{e}");
        assert_eq!(check(f.path(), Choice::Discovered, RootFs::Ramfs), Ok(()));
    }

    #[test]
    fn real_disks_are_refused_even_when_named() {
        // /dev/null is a character device: neither a file nor a loop device.
        let e = check(
            Path::new("/dev/null"),
            Choice::Explicit,
            RootFs::Other(0xef53),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("neither a regular file nor a loop device"),
            "{e}"
        );
        assert!(!is_loop_device(Path::new("/dev/vda")));
        assert!(!is_loop_device(Path::new("/dev/loop-control")));
        assert!(is_loop_device(Path::new("/nonexistent/loop12")));
    }

    #[test]
    fn the_host_running_these_tests_is_not_a_ramdisk() {
        // Tests run on a real root filesystem; if this fails, the gate would let
        // discovery-chosen disks through on a development machine.
        assert!(
            !RootFs::current().is_ramdisk() || std::env::var_os("FERRITE_IN_RAMDISK").is_some()
        );
    }
}
