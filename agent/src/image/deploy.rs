//! Whole-disk deploy of an `image_info` onto a named target: safety gate, checksum
//! resolution, download, the pipeline (`ferrite_image::stream_image`), then the
//! GPT/partition re-read fix-ups.

use std::path::{Path, PathBuf};

use ferrite_image::checksum::ChecksumError;
use ferrite_image::disk::{gpt, wipe};
use ferrite_image::http::HttpConfig;
use ferrite_image::{stream_image, ImageError, Outcome, Phase, Progress};
use ferrite_proto::image::ImageInfo;
use tokio::runtime::Handle;

use super::writer::{DirectWriter, Target};
use crate::disk::blkdev;
use crate::disk::safety::{self, Choice, SafetyError};

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Safety(#[from] SafetyError),
    #[error("cannot open the target disk {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Layout(#[from] ferrite_image::disk::layout::LayoutError),
    #[error(
        "image_info.image_type {0:?} is not supported by this command (whole-disk images only)"
    )]
    ImageType(String),
}

/// Where to write and how the target was chosen.
#[derive(Debug, Clone)]
pub struct TargetDisk {
    pub path: PathBuf,
    pub choice: Choice,
}

/// What a whole-disk deploy did.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub outcome: Outcome,
    pub backup_gpt_moved: bool,
    pub partitions_reread: bool,
}

/// Write the whole-disk image of `info` to `target`. Must run on a blocking thread.
/// The old partition tables (first and last MiB) are gone before the first image byte is
/// written (a file target is emptied, a block device wiped), and wiped again on failure.
pub fn deploy_whole_disk(
    rt: &Handle,
    info: &ImageInfo,
    target: &TargetDisk,
    cfg: &HttpConfig,
    progress: &Progress,
) -> Result<Deployed, DeployError> {
    if let Some(t) = info.image_type.as_deref().filter(|t| *t != "whole-disk") {
        return Err(DeployError::ImageType(t.to_owned()));
    }
    safety::authorize(&target.path, target.choice)?;
    let open = |p: &Path| {
        Target::open(p).map_err(|source| DeployError::Open {
            path: p.to_owned(),
            source,
        })
    };
    let disk = open(&target.path)?;
    let is_block = disk.is_block_device;
    // A file target becomes a fresh sparse file (reads back zeroes); a block device keeps
    // its old content, so zero runs of the image are written.
    let reads_zero = !is_block;
    if reads_zero {
        disk.zero_range(0, disk.size).map_err(ImageError::Write)?;
    }
    let mut writer = DirectWriter::new(disk, reads_zero);
    if is_block {
        // The pipeline holds the image's first MiB back until the end, so without this a
        // crash or power loss mid-write would leave the old MBR/GPT (and the old backup
        // GPT at the end) describing partitions over new data: a bootable half-disk.
        wipe::wipe_partition_signatures(&mut writer).map_err(ImageError::Write)?;
    }
    let outcome = stream_image(rt, info, &mut writer, cfg, progress)?;
    drop(writer);
    progress.set_phase(Phase::Partitioning);
    let file = open(&target.path)?;
    let backup_gpt_moved = gpt::move_backup_to_end(file.file(), file.size, sector_size(&file))
        .map_err(|e| DeployError::Image(ImageError::Write(e)))?;
    let partitions_reread = is_block && blkdev::reread_partitions(file.file()).is_ok();
    progress.set_phase(Phase::Done);
    Ok(Deployed {
        outcome,
        backup_gpt_moved,
        partitions_reread,
    })
}

/// Logical sector size: the device's, or 512 for files.
pub fn sector_size(t: &Target) -> u64 {
    if t.is_block_device {
        blkdev::logical_sector_size(t.file())
            .map(u64::from)
            .unwrap_or(512)
    } else {
        512
    }
}

impl From<ChecksumError> for DeployError {
    fn from(e: ChecksumError) -> DeployError {
        DeployError::Image(e.into())
    }
}
