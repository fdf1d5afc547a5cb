//! Boot loaders taken from a written partition image's own root filesystem, read in place
//! (ext2/3/4 through `ext4-view`; nothing mounted, no chroot): for UEFI its EFI tree
//! (`/boot/efi/EFI/…`, IPA's "preserved EFI assets") copied into the new ESP, for BIOS its
//! GRUB `boot.img` and `core.img` (`/boot/grub/i386-pc/`, where grub-install leaves them)
//! set up on the disk as grub-setup does (see `grub_setup`).

use std::fs::File;
use std::os::unix::fs::FileExt;

use ext4_view::{Ext4, Ext4Error, Ext4Read};
use ferrite_image::disk::gpt::{self, Table};
use ferrite_image::disk::mkfs;
use ferrite_image::disk::table_write;

use super::efivars::HardDrive;
use super::esp::{self, EspError};
use super::grub_setup::{self, SetupError, SECTOR};

/// Where a partition image keeps the EFI files to put on the ESP.
pub const EFI_ASSETS: &str = "/boot/efi/EFI";
/// GRUB's BIOS images, as grub-install leaves them in the installed system.
pub const BOOT_IMG: &str = "/boot/grub/i386-pc/boot.img";
pub const CORE_IMG: &str = "/boot/grub/i386-pc/core.img";
/// The GPT BIOS boot partition type ("Hah!IdontNeedEFI").
const BIOS_BOOT_TYPE: &str = "21686148-6449-6e6f-744e-656564454649";
/// At most this much is copied onto the ESP from the image.
const MAX_EFI_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FromImageError {
    #[error("reading the partition table of {0}")]
    Table(String, #[source] std::io::Error),
    #[error(
        "no partition of {disk} holds the root filesystem {uuid} (by filesystem UUID or PARTUUID)"
    )]
    NoRoot { disk: String, uuid: String },
    #[error("reading partition {0}")]
    Read(u32, #[source] std::io::Error),
    #[error(
        "the root filesystem (partition {0}) is not ext2/3/4, the one kind ferrite-agent reads \
         to install a boot loader from a partition image"
    )]
    NotExt(u32, #[source] Ext4Error),
    #[error("reading {path} from the image's root filesystem")]
    File {
        path: String,
        #[source]
        source: Ext4Error,
    },
    #[error(
        "the image has no {0}: a UEFI partition image must carry its EFI loader there \
         (e.g. /boot/efi/EFI/<vendor>/grubx64.efi)"
    )]
    NoEfiAssets(&'static str),
    #[error("the image's EFI files pass {MAX_EFI_BYTES} bytes")]
    TooBig,
    #[error("writing the EFI system partition")]
    Esp(#[source] EspError),
    #[error(
        "the image has no {0}: ferrite-agent installs BIOS GRUB from the image's own boot.img \
         and core.img (grub-install --target=i386-pc leaves them there; or grub-mkimage -O \
         i386-pc with a search for the root filesystem)"
    )]
    NoGrub(&'static str),
    #[error("{0} has {1}-byte sectors; BIOS GRUB needs 512")]
    Sector(String, u64),
    #[error("{0} has no BIOS boot partition (GPT type 21686148-…) for GRUB's core.img")]
    NoBiosBoot(String),
    #[error("{0} has no partition table")]
    NoTable(String),
    #[error("installing GRUB")]
    Setup(#[source] SetupError),
    #[error("writing GRUB to {0}")]
    Write(String, #[source] std::io::Error),
}

/// The root partition: number, first byte, length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPart {
    pub number: u32,
    pub offset: u64,
    pub len: u64,
}

/// The partition of `disk` whose filesystem UUID or PARTUUID is `uuid` (IPA's
/// `get_partition(device, uuid=…)`).
pub fn find_root(
    disk: &File,
    name: &str,
    sector: u64,
    uuid: &str,
) -> Result<RootPart, FromImageError> {
    let table = gpt::read_table(disk, sector).map_err(|e| FromImageError::Table(name.into(), e))?;
    let parts: Vec<(u32, String, u64, u64)> = match table {
        Table::Gpt { partitions, .. } => partitions
            .iter()
            .map(|p| {
                (
                    p.number,
                    p.uuid.clone(),
                    p.first_lba,
                    p.last_lba + 1 - p.first_lba,
                )
            })
            .collect(),
        Table::Mbr {
            signature,
            partitions,
        } => partitions
            .iter()
            .map(|(n, _, start, len)| {
                (
                    *n,
                    table_write::mbr_partuuid(signature, *n),
                    u64::from(*start),
                    u64::from(*len),
                )
            })
            .collect(),
        Table::None => vec![],
    };
    for (number, partuuid, start, len) in parts {
        let part = RootPart {
            number,
            offset: start * sector,
            len: len * sector,
        };
        if partuuid.eq_ignore_ascii_case(uuid) {
            return Ok(part);
        }
        let mut head = vec![0u8; (68 << 10).min(part.len as usize)];
        let n = disk
            .read_at(&mut head, part.offset)
            .map_err(|e| FromImageError::Read(number, e))?;
        if mkfs::filesystem_uuid(&head[..n])
            .is_some_and(|u| u.to_string().eq_ignore_ascii_case(uuid))
        {
            return Ok(part);
        }
    }
    Err(FromImageError::NoRoot {
        disk: name.into(),
        uuid: uuid.into(),
    })
}

/// A partition as `ext4-view` reads it.
struct PartReader {
    file: File,
    part: RootPart,
}

impl Ext4Read for PartReader {
    fn read(
        &mut self,
        start: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        if start.saturating_add(dst.len() as u64) > self.part.len {
            return Err("read past the end of the root partition".into());
        }
        self.file.read_exact_at(dst, self.part.offset + start)?;
        Ok(())
    }
}

/// The root filesystem, read-only.
pub fn open_root(disk: &File, part: RootPart) -> Result<Ext4, FromImageError> {
    let file = disk
        .try_clone()
        .map_err(|e| FromImageError::Read(part.number, e))?;
    Ext4::load(Box::new(PartReader { file, part }))
        .map_err(|e| FromImageError::NotExt(part.number, e))
}

fn read(fs: &Ext4, path: &str) -> Result<Vec<u8>, FromImageError> {
    fs.read(path).map_err(|source| FromImageError::File {
        path: path.into(),
        source,
    })
}

/// The files under `dir` (recursively), as (path relative to `dir`, contents).
fn files_under(fs: &Ext4, dir: &str) -> Result<Vec<(String, Vec<u8>)>, FromImageError> {
    let mut out = vec![];
    let mut total = 0u64;
    let mut todo = vec![String::new()];
    while let Some(rel) = todo.pop() {
        let path = format!("{dir}{rel}");
        let entries = fs
            .read_dir(path.as_str())
            .map_err(|source| FromImageError::File {
                path: path.clone(),
                source,
            })?;
        for entry in entries {
            let entry = entry.map_err(|source| FromImageError::File {
                path: path.clone(),
                source,
            })?;
            let name = entry.file_name();
            let Ok(name) = name.as_str() else { continue };
            if name == "." || name == ".." {
                continue;
            }
            let child = format!("{rel}/{name}");
            let ty = entry.file_type().map_err(|source| FromImageError::File {
                path: child.clone(),
                source,
            })?;
            if ty.is_dir() {
                todo.push(child);
            } else if ty.is_regular_file() {
                let data = read(fs, &format!("{dir}{child}"))?;
                total += data.len() as u64;
                if total > MAX_EFI_BYTES {
                    return Err(FromImageError::TooBig);
                }
                out.push((child.trim_start_matches('/').to_string(), data));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Copies the image's `/boot/efi/EFI` tree into the ESP `hd` of `disk` as `EFI/…`, and the
/// loader the firmware would pick (a vendor's shim, else its GRUB) also to the
/// removable-media path `EFI/BOOT/BOOTX64.EFI` (with the GRUB a shim loads next to it)
/// unless the image brings one. Returns the ESP paths written.
pub fn copy_efi_assets(
    disk: &File,
    hd: &HardDrive,
    sector: u64,
    root: &Ext4,
) -> Result<Vec<String>, FromImageError> {
    if !root.exists(EFI_ASSETS).unwrap_or(false) {
        return Err(FromImageError::NoEfiAssets(EFI_ASSETS));
    }
    let mut files: Vec<(String, Vec<u8>)> = files_under(root, EFI_ASSETS)?
        .into_iter()
        .map(|(p, d)| (format!("EFI/{p}"), d))
        .collect();
    let has =
        |files: &[(String, Vec<u8>)], p: &str| files.iter().any(|(f, _)| f.eq_ignore_ascii_case(p));
    if !has(&files, "EFI/BOOT/BOOTX64.EFI") {
        let pick = |leaf: &str| {
            files
                .iter()
                .find(|(f, _)| {
                    f.rsplit('/')
                        .next()
                        .is_some_and(|l| l.eq_ignore_ascii_case(leaf))
                        && f.matches('/').count() == 2
                })
                .cloned()
        };
        let mut extra = vec![];
        if let Some((_, shim)) = pick("shimx64.efi") {
            extra.push(("EFI/BOOT/BOOTX64.EFI".to_string(), shim));
            if let Some((_, grub)) = pick("grubx64.efi") {
                extra.push(("EFI/BOOT/grubx64.efi".to_string(), grub));
            }
        } else if let Some((_, grub)) = pick("grubx64.efi") {
            extra.push(("EFI/BOOT/BOOTX64.EFI".to_string(), grub));
        }
        files.extend(extra);
    }
    esp::write_files(disk, hd, sector, &files).map_err(FromImageError::Esp)?;
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// What the BIOS GRUB install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubInstalled {
    /// Where core.img went: the BIOS boot partition's number, or 0 for the gap after the MBR.
    pub core_partition: u32,
    pub core_lba: u64,
    pub core_sectors: u64,
}

/// Installs the image's BIOS GRUB on `disk`: core.img into the BIOS boot partition (GPT)
/// or the gap between the MBR and the first partition (MBR), boot.img into the MBR.
pub fn install_grub_bios(
    disk: &File,
    name: &str,
    sector: u64,
    root: &Ext4,
) -> Result<GrubInstalled, FromImageError> {
    if sector != SECTOR as u64 {
        return Err(FromImageError::Sector(name.into(), sector));
    }
    let boot = match root.exists(BOOT_IMG) {
        Ok(true) => read(root, BOOT_IMG)?,
        _ => return Err(FromImageError::NoGrub(BOOT_IMG)),
    };
    let core = match root.exists(CORE_IMG) {
        Ok(true) => read(root, CORE_IMG)?,
        _ => return Err(FromImageError::NoGrub(CORE_IMG)),
    };
    let table = gpt::read_table(disk, sector).map_err(|e| FromImageError::Table(name.into(), e))?;
    let (core_partition, core_lba, room) = match table {
        Table::Gpt { partitions, .. } => partitions
            .iter()
            .find(|p| p.type_guid.eq_ignore_ascii_case(BIOS_BOOT_TYPE))
            .map(|p| (p.number, p.first_lba, p.last_lba + 1 - p.first_lba))
            .ok_or_else(|| FromImageError::NoBiosBoot(name.into()))?,
        Table::Mbr { partitions, .. } => {
            let first = partitions
                .iter()
                .map(|(_, _, start, _)| u64::from(*start))
                .min()
                .unwrap_or(1);
            (0, 1, first.saturating_sub(1))
        }
        Table::None => return Err(FromImageError::NoTable(name.into())),
    };
    let placed = grub_setup::place_core(&core, core_lba, room).map_err(FromImageError::Setup)?;
    let mut old = [0u8; SECTOR];
    disk.read_exact_at(&mut old, 0)
        .map_err(|e| FromImageError::Write(name.into(), e))?;
    let mbr = grub_setup::boot_sector(&boot, &old, core_lba).map_err(FromImageError::Setup)?;
    let write = |bytes: &[u8], at: u64| {
        disk.write_all_at(bytes, at)
            .map_err(|e| FromImageError::Write(name.into(), e))
    };
    // core.img first: until the MBR points at it, the disk boots as before.
    write(&placed, core_lba * sector)?;
    disk.sync_data()
        .map_err(|e| FromImageError::Write(name.into(), e))?;
    write(&mbr, 0)?;
    disk.sync_data()
        .map_err(|e| FromImageError::Write(name.into(), e))?;
    Ok(GrubInstalled {
        core_partition,
        core_lba,
        core_sectors: (placed.len() / SECTOR) as u64,
    })
}
