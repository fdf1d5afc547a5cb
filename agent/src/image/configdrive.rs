//! The config drive written to a local target disk: the safety gate, then
//! `ferrite_image::disk::configdrive` (fetch, decode, place, write) on the opened device,
//! then a partition re-read.

use ferrite_image::disk::configdrive::{fetch, write_data, ConfigDriveError};
use ferrite_image::http::HttpConfig;
use tokio::runtime::Handle;

use super::deploy::{sector_size, TargetDisk};
use super::writer::Target;
use crate::disk::blkdev;
use crate::disk::safety::{self, SafetyError};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Safety(#[from] SafetyError),
    #[error(transparent)]
    ConfigDrive(#[from] ConfigDriveError),
}

/// Fetch, decode and write the config drive; returns a message saying where it went.
pub fn write(
    rt: &Handle,
    configdrive: &str,
    target: &TargetDisk,
    cfg: &HttpConfig,
    node: &str,
) -> Result<String, WriteError> {
    safety::authorize(&target.path, target.choice)?;
    let data = fetch(rt, configdrive, cfg)?;
    let name = target.path.display().to_string();
    let t = Target::open(&target.path).map_err(|source| ConfigDriveError::Io {
        path: name.clone(),
        source,
    })?;
    let sector = sector_size(&t);
    tracing::info!(node, disk = %target.path.display(), bytes = data.len(), "writing the config drive");
    let msg = write_data(t.file(), t.size, sector, &data, &name)?;
    if t.is_block_device {
        let _ = blkdev::reread_partitions(t.file());
    }
    Ok(msg)
}
