//! Whole-disk deploy of an `image_info` onto a named target: safety gate, checksum
//! resolution, download, the pipeline, then the GPT/partition re-read fix-ups.

use std::path::{Path, PathBuf};

use ferrite_proto::image::ImageInfo;
use tokio::runtime::Handle;

use super::checksum::{self, ChecksumError, Expected, Spec};
use super::http::{self, HttpConfig, HttpSource};
use super::pipeline::{write_image, ImageError, Input, Outcome};
use super::progress::{Phase, Progress};
use super::qcow2::RangeRead;
use super::sink::BlockSink;
use super::writer::{DirectWriter, Target};
use crate::disk::safety::{self, Choice, SafetyError};
use crate::disk::{blkdev, gpt, wipe};

/// Largest checksum file fetched.
const CHECKSUM_FILE_LIMIT: usize = 4 << 20;

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
    Layout(#[from] crate::disk::layout::LayoutError),
    #[error(
        "image_info.image_type {0:?} is not supported by this command (whole-disk images only)"
    )]
    ImageType(String),
}

impl DeployError {
    /// Message with causes, for command results.
    pub fn chain(&self) -> String {
        match self {
            DeployError::Image(e) => e.chain(),
            e => {
                let mut s = e.to_string();
                let mut src = std::error::Error::source(e);
                while let Some(c) = src {
                    s.push_str(": ");
                    s.push_str(&c.to_string());
                    src = c.source();
                }
                s
            }
        }
    }
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

/// The image's expected checksum, fetching a checksum file if `checksum` is a URL.
pub fn expected_checksum(
    rt: &Handle,
    info: &ImageInfo,
    cfg: &HttpConfig,
) -> Result<Expected, ImageError> {
    match checksum::spec(
        info.os_hash_algo.as_deref(),
        info.os_hash_value.as_deref(),
        info.checksum.as_deref(),
    )? {
        Spec::Value(e) => Ok(e),
        Spec::Url(url) => {
            let client = http::client(cfg)?;
            let text = http::fetch_text(rt, &client, &url, cfg, CHECKSUM_FILE_LIMIT)?;
            let image_url = info.urls.first().map(String::as_str).unwrap_or("");
            Ok(checksum::from_checksum_file(&text, &url, image_url)?)
        }
    }
}

/// Write the whole-disk image of `info` to `target`. Must run on a blocking thread.
/// On failure after the target is opened, its partition tables are wiped.
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

/// Resolve the checksum, download `info`'s image and run the pipeline onto `sink` (a local
/// disk's writer or a remote LUN). Must run on a blocking thread. On any failure the
/// sink's partition tables are wiped.
pub fn stream_image(
    rt: &Handle,
    info: &ImageInfo,
    sink: &mut dyn BlockSink,
    cfg: &HttpConfig,
    progress: &Progress,
) -> Result<Outcome, ImageError> {
    let fail = |sink: &mut dyn BlockSink, e: ImageError| -> ImageError {
        progress.set_phase(Phase::Failed);
        match wipe::wipe_partition_signatures(sink) {
            Ok(()) => e,
            Err(wipe) => ImageError::WipeFailed {
                error: Box::new(e),
                wipe,
            },
        }
    };
    let expected = match expected_checksum(rt, info, cfg) {
        Ok(e) => e,
        Err(e) => return Err(fail(sink, e)),
    };
    let client = match http::client(cfg) {
        Ok(c) => c,
        Err(e) => return Err(fail(sink, e.into())),
    };
    let source = match HttpSource::open(rt, &client, &info.urls, cfg) {
        Ok(s) => s,
        Err(e) => return Err(fail(sink, e.into())),
    };
    let input = Input {
        len: source.len(),
        ranges: source
            .ranges()
            .map(|r| Box::new(r) as Box<dyn RangeRead + Send>),
        declared_format: info.disk_format.clone(),
        reader: source,
    };
    write_image(input, Some(&expected), sink, progress)
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
