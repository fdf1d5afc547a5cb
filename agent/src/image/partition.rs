//! Partition-image deploy (`image_type: partition`): plan the partitions, stream the image
//! into the root partition, then — only once the checksum passed — write the ESP or BIOS
//! boot partition, the swap signature and the GPT or MBR. Before that the disk carries
//! no partition table, so a failed deploy cannot boot. Boot loaders are not installed.

use std::os::unix::fs::FileExt;
use std::path::Path;

use ferrite_image::disk::layout::{self, BootMode, Label, Layout, LayoutError, Request, Role};
use ferrite_image::disk::mkfs::{self, MkfsError};
use ferrite_image::disk::table_write::{self, Piece};
use ferrite_image::disk::wipe;
use ferrite_image::http::HttpConfig;
use ferrite_image::sink::{BlockSink, Window};
use ferrite_image::{stream_image, ImageError, Outcome, Phase, Progress};
use ferrite_proto::image::ImageInfo;
use serde_json::{json, Map, Value};
use tokio::runtime::Handle;
use uuid::Uuid;

use super::deploy::{sector_size, DeployError, TargetDisk};
use super::writer::{DirectWriter, Target};
use crate::disk::{blkdev, safety};

/// What a partition-image deploy did.
#[derive(Debug, Clone)]
pub struct PartitionDeployed {
    pub outcome: Outcome,
    pub layout: Layout,
    pub boot_mode: BootMode,
    /// The disk GUID (GPT) or the disk signature as 8 hex digits (MBR).
    pub disk_id: String,
    mbr_signature: u32,
    /// Filesystem UUID found in the root partition, when the image holds ext/XFS/btrfs.
    pub root_fs_uuid: Option<Uuid>,
    pub esp_serial: Option<u32>,
    pub partitions_reread: bool,
}

/// The layout request from `image_info`.
pub fn request(info: &ImageInfo, configdrive: bool) -> Result<Request, LayoutError> {
    Ok(Request {
        label: Label::parse(info.disk_label.as_deref())?,
        boot_mode: BootMode::parse(info.deploy_boot_mode.as_deref())?,
        root_mb: info.root_mb,
        swap_mb: info.swap_mb.unwrap_or(0),
        ephemeral_mb: info.ephemeral_mb.unwrap_or(0),
        configdrive,
    })
}

fn write_err(e: std::io::Error) -> ImageError {
    ImageError::Write(e)
}

fn mkfs_err(e: MkfsError) -> ImageError {
    ImageError::Write(std::io::Error::other(e))
}

fn apply(sink: &mut dyn BlockSink, base: u64, plan: &mkfs::Plan) -> Result<(), ImageError> {
    for &(off, len) in &plan.zero {
        sink.write_zeroes(base + off, len).map_err(write_err)?;
    }
    for (off, bytes) in &plan.writes {
        sink.write_at(base + off, bytes).map_err(write_err)?;
    }
    Ok(())
}

/// Write the image of `info` into the root partition of a new table on `target`.
/// `configdrive` says a config drive partition will follow (it needs an MBR slot).
pub fn deploy_partition_image(
    rt: &Handle,
    info: &ImageInfo,
    target: &TargetDisk,
    cfg: &HttpConfig,
    progress: &Progress,
    configdrive: bool,
) -> Result<PartitionDeployed, DeployError> {
    let req = request(info, configdrive)?;
    safety::authorize(&target.path, target.choice)?;
    let open = |p: &Path| {
        Target::open(p).map_err(|source| DeployError::Open {
            path: p.to_owned(),
            source,
        })
    };
    let disk = open(&target.path)?;
    // Plan before touching the disk: a layout that does not fit leaves it as it was.
    let sector = sector_size(&disk);
    let layout = layout::plan(&req, disk.size, sector)?;
    let root = layout
        .part(Role::Root)
        .cloned()
        .ok_or_else(|| ImageError::Corrupt("internal: the layout has no root partition".into()))?;
    let is_block = disk.is_block_device;
    let reads_zero = !is_block;
    if reads_zero {
        disk.zero_range(0, disk.size).map_err(ImageError::Write)?;
    }
    let mut writer = DirectWriter::new(disk, reads_zero);
    // An old table on a block device must not survive a failure of this deploy.
    if is_block {
        wipe::wipe_partition_signatures(&mut writer).map_err(ImageError::Write)?;
    }
    let mut window = Window {
        inner: &mut writer,
        base: root.offset(sector),
        len: root.bytes(sector),
    };
    let outcome = stream_image(rt, info, &mut window, cfg, progress)?;
    progress.set_phase(Phase::Partitioning);
    let disk_guid = Uuid::new_v4();
    let mbr_signature = rand::random::<u32>() | 1;
    let esp_serial = layout.part(Role::Esp).map(|_| rand::random::<u32>());
    if let Err(e) = finish_disk(
        &mut writer,
        &layout,
        req.boot_mode,
        disk_guid,
        mbr_signature,
        esp_serial,
    ) {
        progress.set_phase(Phase::Failed);
        return Err(match wipe::wipe_partition_signatures(&mut writer) {
            Ok(()) => e.into(),
            Err(wipe) => ImageError::WipeFailed {
                error: Box::new(e),
                wipe,
            }
            .into(),
        });
    }
    drop(writer);
    let file = open(&target.path)?;
    let mut head = vec![0u8; 68 << 10];
    let n = file
        .file()
        .read_at(&mut head, root.offset(sector))
        .map_err(|e| DeployError::Image(write_err(e)))?;
    let root_fs_uuid = mkfs::filesystem_uuid(&head[..n]);
    let partitions_reread = is_block && blkdev::reread_partitions(file.file()).is_ok();
    progress.set_phase(Phase::Done);
    Ok(PartitionDeployed {
        outcome,
        boot_mode: req.boot_mode,
        disk_id: match layout.label {
            Label::Gpt => disk_guid.to_string(),
            Label::Mbr => format!("{mbr_signature:08x}"),
        },
        layout,
        mbr_signature,
        root_fs_uuid,
        esp_serial,
        partitions_reread,
    })
}

/// ESP, swap signature and the partition table, then flush.
fn finish_disk(
    sink: &mut dyn BlockSink,
    layout: &Layout,
    boot_mode: BootMode,
    disk_guid: Uuid,
    mbr_signature: u32,
    esp_serial: Option<u32>,
) -> Result<(), ImageError> {
    let sector = layout.sector;
    for p in &layout.parts {
        let base = p.offset(sector);
        match p.role {
            Role::Esp => {
                let plan = mkfs::fat32(
                    p.bytes(sector),
                    sector as u32,
                    p.first_lba,
                    esp_serial.unwrap_or(1),
                    "efi-part",
                )
                .map_err(mkfs_err)?;
                apply(sink, base, &plan)?;
            }
            Role::Swap => {
                let plan = mkfs::swap(p.bytes(sector), p.uuid, "swap").map_err(mkfs_err)?;
                apply(sink, base, &plan)?;
            }
            // GRUB's core image goes into the BIOS boot partition: start it clean.
            Role::BiosBoot => sink
                .write_zeroes(base, p.bytes(sector))
                .map_err(write_err)?,
            Role::Ephemeral | Role::Root => {}
        }
    }
    let pieces: Vec<Piece> = match layout.label {
        Label::Gpt => table_write::gpt(layout, disk_guid),
        Label::Mbr => vec![table_write::mbr(
            layout,
            mbr_signature,
            boot_mode == BootMode::Bios,
        )],
    };
    for piece in &pieces {
        sink.write_at(piece.offset, &piece.bytes)
            .map_err(write_err)?;
    }
    sink.flush().map_err(write_err)
}

/// The kernel's name for partition `n` of `disk` (`sda3`, `nvme0n1p3`, `loop0p3`).
pub fn partition_path(disk: &Path, n: u32) -> String {
    let d = disk.display().to_string();
    if d.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{d}p{n}")
    } else {
        format!("{d}{n}")
    }
}

impl PartitionDeployed {
    /// PARTUUID of a partition, as the kernel and blkid name it.
    pub fn partuuid(&self, number: u32) -> Option<String> {
        let p = self.layout.parts.iter().find(|p| p.number == number)?;
        Some(match self.layout.label {
            Label::Gpt => p.uuid.to_string(),
            Label::Mbr => table_write::mbr_partuuid(self.mbr_signature, number),
        })
    }

    /// What `standby.get_partition_uuids` reports, in IPA's keys: `root uuid` is the root
    /// filesystem's UUID (its PARTUUID when the image holds no filesystem we read).
    pub fn uuids(&self, disk: &Path) -> Value {
        let mut parts = Map::new();
        let mut out = Map::new();
        for p in &self.layout.parts {
            let key = match p.role {
                Role::Esp => "efi system partition",
                Role::BiosBoot => "bios",
                Role::Ephemeral => "ephemeral",
                Role::Swap => "swap",
                Role::Root => "root",
            };
            parts.insert(key.into(), json!(partition_path(disk, p.number)));
            if let Some(u) = self.partuuid(p.number) {
                out.insert(format!("{key} partuuid"), json!(u));
            }
        }
        let root = self.layout.part(Role::Root).map(|p| p.number).unwrap_or(1);
        let root_uuid = self
            .root_fs_uuid
            .map(|u| u.to_string())
            .or_else(|| self.partuuid(root))
            .unwrap_or_default();
        out.insert("root uuid".into(), json!(root_uuid));
        if let Some(s) = self.esp_serial {
            out.insert(
                "efi system partition uuid".into(),
                json!(mkfs::fat_serial_string(s)),
            );
        }
        out.insert("partitions".into(), Value::Object(parts));
        out.insert("disk identifier".into(), json!(self.disk_id));
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_follow_the_kernel() {
        assert_eq!(partition_path(Path::new("/dev/sda"), 3), "/dev/sda3");
        assert_eq!(
            partition_path(Path::new("/dev/nvme0n1"), 1),
            "/dev/nvme0n1p1"
        );
        assert_eq!(partition_path(Path::new("/dev/loop7"), 2), "/dev/loop7p2");
    }
}
