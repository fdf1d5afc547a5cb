//! Erasing one disk (`erase_devices_metadata`, `erase_devices`) behind the safety gate:
//! metadata only, or all of it with an NVMe Format NVM / Sanitize where the controller
//! supports it, else the kernel's write-zeroes. Also `ferrite-agent erase-disk`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ferrite_image::disk::wipe;
use ferrite_image::BlockSink;
use serde_json::{json, Map, Value};

use crate::disk::safety::{self, Choice};
use crate::disk::{blkdev, nvme_dev, probe, readback};
use crate::image::writer::{DirectWriter, Target};
use crate::job::CommandError;

/// Why the NVMe path was not taken, for the step result and the log.
fn nvme_attempt(path: &Path, t: &Target) -> Result<nvme_dev::Erased, String> {
    if !t.is_block_device {
        return Err("not a block device".into());
    }
    let name = nvme_dev::namespace_name(path)
        .ok_or_else(|| "not a whole NVMe namespace (nvmeXnY)".to_string())?;
    let siblings = nvme_dev::sibling_namespaces(Path::new("/sys/block"), &name);
    nvme_dev::erase(t.file(), &siblings, nvme_dev::SANITIZE_DEADLINE)
        .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
}

/// Erase everything on `t`: NVMe first, else write-zeroes. Adds what was done and whether
/// the disk reads back zeroes to `out`.
fn erase_all(path: &Path, t: &Target, out: &mut Map<String, Value>) -> Result<(), CommandError> {
    let size = t.size;
    let nvme = nvme_attempt(path, t);
    match nvme {
        Ok(done) => {
            tracing::info!(device = %path.display(), method = done.plan.method(), seconds = done.seconds, "NVMe erase done");
            // The device changed behind the kernel's buffer cache.
            if let Err(e) = blkdev::flush_buffers(t.file()) {
                tracing::warn!(device = %path.display(), error = %e, "BLKFLSBUF after the NVMe erase failed");
            }
            let rb = readback::check_zeroes(path, size)
                .map_err(|e| CommandError::failed(format!("reading {} back", path.display()), e))?;
            out.insert("method".into(), done.plan.method().into());
            out.insert("nsid".into(), done.nsid.into());
            out.insert("model".into(), done.model.into());
            out.insert("seconds".into(), json!(done.seconds));
            out.insert("reads_back_zeroes".into(), rb.all_zero().into());
            out.insert(
                "zeroes_evidence".into(),
                format!(
                    "read back {} bytes{}; DLFEAT {} deallocated blocks read as zeroes",
                    rb.bytes_read,
                    rb.first_nonzero
                        .map(|o| format!(", first non-zero byte at {o}"))
                        .unwrap_or_default(),
                    if done.dlfeat_reads_zeroes {
                        "says"
                    } else {
                        "does not say"
                    }
                )
                .into(),
            );
        }
        Err(reason) => {
            if t.is_block_device {
                tracing::warn!(device = %path.display(), reason = %reason, "no NVMe erase; zeroing instead");
                out.insert("nvme_skipped".into(), reason.into());
            }
            // A device write-zeroes (unmapping where it can), or a punched hole for files:
            // either way the disk reads back zeroes.
            let how = t
                .zero_range_by(0, size)
                .map_err(|e| CommandError::failed(format!("erasing {}", path.display()), e))?;
            out.insert("method".into(), "zeroed".into());
            out.insert("reads_back_zeroes".into(), true.into());
            out.insert("zeroes_evidence".into(), how.describe().into());
        }
    }
    Ok(())
}

/// Erase one disk: metadata only (both ends) or all of it.
pub fn erase_disk(
    path: &Path,
    choice: Choice,
    full: bool,
    force: bool,
) -> Result<Value, CommandError> {
    safety::authorize(path, choice).map_err(|e| CommandError::failed("refusing to erase", e))?;
    let t = Target::open(path)
        .map_err(|e| CommandError::failed(format!("cannot open {}", path.display()), e))?;
    let found = probe::probe_file(t.file(), t.size)
        .map_err(|e| CommandError::failed(format!("cannot read {}", path.display()), e))?;
    let names: Vec<&str> = found.iter().map(|s| s.name()).collect();
    if !force {
        if let Some(s) = found.iter().find(|s| s.is_shared_storage()) {
            return Err(CommandError::failed_msg(format!(
                "{} holds a {} signature (shared storage); refusing to erase it: pass the step argument force=true to erase anyway",
                path.display(),
                s.name()
            )));
        }
    }
    let mut out = Map::new();
    out.insert("device".into(), path.display().to_string().into());
    out.insert("signatures".into(), json!(names));
    if full {
        erase_all(path, &t, &mut out)?;
    } else {
        out.insert("method".into(), "metadata wiped".into());
    }
    let mut w = DirectWriter::new(t, false);
    wipe::wipe_partition_signatures(&mut w)
        .map_err(|e| CommandError::failed(format!("wiping {}", path.display()), e))?;
    w.flush()
        .map_err(|e| CommandError::failed(format!("syncing {}", path.display()), e))?;
    Ok(Value::Object(out))
}

#[derive(Debug, clap::Args)]
pub struct EraseDiskArgs {
    /// The disk: a file or a loop device (or any disk when running in the ramdisk).
    #[arg(long)]
    pub disk: PathBuf,
    /// Only wipe partition tables and signatures (erase_devices_metadata).
    #[arg(long)]
    pub metadata_only: bool,
    /// Erase even when the disk holds shared-storage signatures (e.g. Ceph).
    #[arg(long)]
    pub force: bool,
}

/// `ferrite-agent erase-disk`: prints the step result as JSON.
pub fn run(a: EraseDiskArgs) -> ExitCode {
    match erase_disk(&a.disk, Choice::Explicit, !a.metadata_only, a.force) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "ferrite-agent: erasing {}: {:#}",
                a.disk.display(),
                anyhow::Error::from(e)
            );
            ExitCode::FAILURE
        }
    }
}
