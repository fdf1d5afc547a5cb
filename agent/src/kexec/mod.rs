//! `ferrite.kexec`: boot the OS just written without going back through the firmware.
//! Each partition of the install disk is mounted read-only in turn until one holds a boot
//! loader config naming a kernel on it ([`entry::find`]); the kernel and initrd are copied
//! into the ramdisk, the partition is unmounted, and the system hooks load them with
//! `kexec_file_load(2)`; the command then succeeds and the agent jumps
//! (`reboot(LINUX_REBOOT_CMD_KEXEC)`) two seconds later, skipping POST, which on real
//! servers costs from 30 s to minutes. Anything that prevents it (no entry, a
//! kernel the running kernel refuses to load) fails the command with the reason, and the
//! caller falls back to an ordinary reboot.
//!
//! Ferrite's own extension (IPA has no kexec): the conductor sends it when a node opts in.

pub mod entry;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::job::{blocking, CommandError};
use crate::state::registry::{Mode, Registry};
use crate::state::AgentState;
use crate::system::KexecImage;

pub use ferrite_proto::commands::KEXEC;

/// Filesystems tried, in order, when mounting a partition to look for a boot entry.
const FS_TYPES: &[&str] = &["vfat", "ext4", "xfs", "btrfs"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KexecParams {
    /// Replaces the command line the boot loader config gives (`kernel_append_params`).
    #[serde(default)]
    pub cmdline: Option<String>,
}

pub fn register(r: &mut Registry) {
    r.register(KEXEC, Mode::Async, kexec);
}

async fn kexec(p: KexecParams, state: Arc<AgentState>) -> Result<Value, CommandError> {
    blocking("kexec into the deployed OS", move || run(&state, &p)).await
}

fn run(state: &AgentState, p: &KexecParams) -> Result<Value, CommandError> {
    if let Some(c) = &p.cmdline {
        if c.contains(['\n', '\0']) {
            return Err(CommandError::invalid_params(
                "cmdline",
                "must be one line without NUL bytes",
            ));
        }
    }
    let target = crate::install::target_disk(state, None)?;
    let root = &state.config.root;
    let parts = partitions(root, &target.path);
    if parts.is_empty() {
        return Err(CommandError::failed_msg(format!(
            "{} has no partitions the kernel knows of: nothing to kexec into; reboot instead",
            target.path.display()
        )));
    }
    let staging = root.join("run/ferrite-kexec");
    let mount_point = staging.join("mnt");
    std::fs::create_dir_all(&mount_point)
        .map_err(|e| CommandError::failed("creating the kexec staging directory", e))?;
    let mut tried = vec![];
    for part in &parts {
        match stage_from(part, &mount_point, &staging) {
            Ok(Some((image, source))) => {
                let mut image = image;
                if let Some(c) = &p.cmdline {
                    image.cmdline = c.clone();
                }
                tracing::info!(partition = %part.display(), config = %source, kernel = %image.kernel.display(), cmdline = %image.cmdline, "kexec into the deployed OS");
                let result = json!({
                    "ferrite_partition": part.display().to_string(),
                    "ferrite_config": source,
                    "ferrite_cmdline": image.cmdline,
                    "ferrite_jump_in_s": crate::system::KEXEC_GRACE.as_secs_f64(),
                });
                state
                    .hooks
                    .kexec(&image)
                    .map_err(|e| CommandError::failed("kexec into the deployed OS failed", e))?;
                return Ok(result);
            }
            Ok(None) => tried.push(format!("{}: no boot entry", part.display())),
            Err(why) => tried.push(format!("{}: {why}", part.display())),
        }
    }
    Err(CommandError::failed_msg(format!(
        "no partition of {} holds a boot loader config (BLS, GRUB or syslinux) naming a \
         kernel on it ({}); reboot instead",
        target.path.display(),
        tried.join("; ")
    )))
}

/// The partition device nodes of `disk` in the kernel's order, from sysfs.
pub fn partitions(root: &Path, disk: &Path) -> Vec<PathBuf> {
    let Some(name) = disk.file_name().and_then(|n| n.to_str()) else {
        return vec![];
    };
    let Ok(entries) = std::fs::read_dir(root.join("sys/class/block").join(name)) else {
        return vec![];
    };
    let mut parts: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let n: u32 = std::fs::read_to_string(e.path().join("partition"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some((n, root.join("dev").join(e.file_name())))
        })
        .collect();
    parts.sort();
    parts.into_iter().map(|(_, p)| p).collect()
}

/// Mounts `part` read-only at `mnt`, looks for a boot entry, copies its files into
/// `staging` and unmounts. Ok(None): mounted, nothing bootable on it.
fn stage_from(
    part: &Path,
    mnt: &Path,
    staging: &Path,
) -> Result<Option<(KexecImage, String)>, String> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mounted = FS_TYPES
        .iter()
        .any(|fs| mount(Some(part), mnt, Some(*fs), flags, None::<&str>).is_ok());
    if !mounted {
        return Err(format!("not mountable as {}", FS_TYPES.join("/")));
    }
    let staged = entry::find(mnt).map(|e| {
        let copy = |src: &Path, name: &str| -> Result<PathBuf, String> {
            let dst = staging.join(name);
            std::fs::copy(src, &dst)
                .map(|_| dst)
                .map_err(|e| format!("copying {}: {e}", src.display()))
        };
        let kernel = copy(&e.kernel, "kernel")?;
        let initrd = e.initrd.as_ref().map(|i| copy(i, "initrd")).transpose()?;
        let source = e
            .source
            .strip_prefix(mnt)
            .map(|s| format!("/{}", s.display()))
            .unwrap_or_default();
        Ok((
            KexecImage {
                kernel,
                initrd,
                cmdline: e.cmdline,
            },
            source,
        ))
    });
    let _ = umount2(mnt, MntFlags::MNT_DETACH);
    staged.transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_come_from_sysfs_in_order() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for (name, part) in [("vda2", Some("2")), ("vda1", Some("1")), ("holders", None)] {
            let dir = root.join("sys/class/block/vda").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(n) = part {
                std::fs::write(dir.join("partition"), format!("{n}\n")).unwrap();
            }
        }
        assert_eq!(
            partitions(root, Path::new("/dev/vda")),
            [root.join("dev/vda1"), root.join("dev/vda2")]
        );
        assert!(partitions(root, Path::new("/dev/sdz")).is_empty());
    }
}
