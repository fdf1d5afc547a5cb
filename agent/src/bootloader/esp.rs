//! The EFI system partition of a written disk and the boot loader on it, read in place
//! (the FAT filesystem through the `fatfs` crate, nothing mounted).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use ferrite_image::disk::gpt::{self, Table};

use super::efivars::{guid_bytes, HardDrive, Signature};

/// The EFI system partition type GUID.
pub const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// The MBR partition type of an EFI system partition.
const ESP_MBR_TYPE: u8 = ferrite_image::disk::mbr::EFI_SYSTEM;

/// Loaders in the order IPA's `efi_utils` prefers them: a vendor's shim, then its GRUB,
/// then the removable-media fallback path.
const VENDOR_LOADERS: &[&str] = &["shimx64.efi", "grubx64.efi"];
const FALLBACK: &str = "\\EFI\\BOOT\\BOOTX64.EFI";

#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error("reading the partition table of {0}")]
    Table(String, #[source] io::Error),
    #[error("{0} has no EFI system partition{1}")]
    NoEsp(String, String),
    #[error("reading the FAT filesystem of the EFI system partition")]
    Fat(#[source] io::Error),
    #[error("no boot loader on the EFI system partition (looked for \\EFI\\<vendor>\\shimx64.efi, grubx64.efi and {FALLBACK})")]
    NoLoader,
}

/// The ESP of the disk at `disk` (`sector`-byte sectors): the one whose unique GUID is
/// `wanted` when given and found, else the first partition of the ESP type.
pub fn find(
    disk: &File,
    name: &str,
    sector: u64,
    wanted: Option<&str>,
) -> Result<HardDrive, EspError> {
    let table = gpt::read_table(disk, sector).map_err(|e| EspError::Table(name.into(), e))?;
    match table {
        Table::Gpt { partitions, .. } => {
            let esps: Vec<_> = partitions
                .iter()
                .filter(|p| p.type_guid.eq_ignore_ascii_case(ESP_TYPE))
                .collect();
            let chosen = wanted
                .and_then(|w| esps.iter().find(|p| p.uuid.eq_ignore_ascii_case(w)))
                .or_else(|| esps.first())
                .ok_or_else(|| EspError::NoEsp(name.into(), " (GPT type C12A7328-…)".into()))?;
            let signature = guid_bytes(&chosen.uuid)
                .ok_or_else(|| EspError::NoEsp(name.into(), ": its GUID is malformed".into()))?;
            Ok(HardDrive {
                number: chosen.number,
                start_lba: chosen.first_lba,
                size_lba: chosen.last_lba + 1 - chosen.first_lba,
                signature: Signature::Gpt(signature),
            })
        }
        Table::Mbr {
            signature,
            partitions,
        } => partitions
            .iter()
            .find(|(_, ty, _, _)| *ty == ESP_MBR_TYPE)
            .map(|(n, _, start, len)| HardDrive {
                number: *n,
                start_lba: u64::from(*start),
                size_lba: u64::from(*len),
                signature: Signature::Mbr(signature),
            })
            .ok_or_else(|| EspError::NoEsp(name.into(), " (MBR type 0xEF)".into())),
        Table::None => Err(EspError::NoEsp(name.into(), ": no partition table".into())),
    }
}

/// A window on one partition, for `fatfs`; writes fail unless it was opened `writable`.
struct Window<'a> {
    disk: &'a File,
    start: u64,
    len: u64,
    pos: u64,
    writable: bool,
}

impl Read for Window<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        let n = self.disk.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Window<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the EFI system partition is only read here",
            ));
        }
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the EFI system partition",
            ));
        }
        self.disk.write_all_at(&buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.writable {
            self.disk.sync_data()?;
        }
        Ok(())
    }
}

impl Seek for Window<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

/// The boot loader on the ESP `hd` of `disk`, as a UEFI path (`\EFI\debian\shimx64.efi`).
pub fn find_loader(disk: &File, hd: &HardDrive, sector: u64) -> Result<String, EspError> {
    let window = Window {
        disk,
        start: hd.start_lba * sector,
        len: hd.size_lba * sector,
        pos: 0,
        writable: false,
    };
    let fs = fatfs::FileSystem::new(window, fatfs::FsOptions::new()).map_err(EspError::Fat)?;
    let efi = fs
        .root_dir()
        .open_dir("EFI")
        .map_err(|_| EspError::NoLoader)?;
    let mut vendors = vec![];
    for entry in efi.iter() {
        let entry = entry.map_err(EspError::Fat)?;
        let name = entry.file_name();
        if entry.is_dir() && name != "." && name != ".." && !name.eq_ignore_ascii_case("BOOT") {
            vendors.push(name);
        }
    }
    vendors.sort();
    for loader in VENDOR_LOADERS {
        for vendor in &vendors {
            if efi.open_file(&format!("{vendor}/{loader}")).is_ok() {
                return Ok(format!("\\EFI\\{vendor}\\{loader}"));
            }
        }
    }
    if efi.open_file("BOOT/BOOTX64.EFI").is_ok() {
        return Ok(FALLBACK.into());
    }
    Err(EspError::NoLoader)
}

/// Writes `files` (paths with `/`, directories created as needed, existing files replaced)
/// into the FAT filesystem of the ESP `hd` of `disk`.
pub fn write_files(
    disk: &File,
    hd: &HardDrive,
    sector: u64,
    files: &[(String, Vec<u8>)],
) -> Result<(), EspError> {
    let window = Window {
        disk,
        start: hd.start_lba * sector,
        len: hd.size_lba * sector,
        pos: 0,
        writable: true,
    };
    let fs = fatfs::FileSystem::new(window, fatfs::FsOptions::new()).map_err(EspError::Fat)?;
    for (path, data) in files {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((leaf, dirs)) = parts.split_last() else {
            continue;
        };
        let mut dir = fs.root_dir();
        for d in dirs {
            dir = match dir.open_dir(d) {
                Ok(d) => d,
                Err(_) => dir.create_dir(d).map_err(EspError::Fat)?,
            };
        }
        let mut f = dir.create_file(leaf).map_err(EspError::Fat)?;
        f.truncate().map_err(EspError::Fat)?;
        f.write_all(data).map_err(EspError::Fat)?;
        f.flush().map_err(EspError::Fat)?;
    }
    fs.unmount().map_err(EspError::Fat)?;
    let mut window = Window {
        disk,
        start: hd.start_lba * sector,
        len: hd.size_lba * sector,
        pos: 0,
        writable: true,
    };
    fix_dot_entries(&mut window).map_err(EspError::Fat)
}

fn read_exact_at(w: &mut Window<'_>, at: u64, buf: &mut [u8]) -> io::Result<()> {
    w.seek(SeekFrom::Start(at))?;
    w.read_exact(buf)
}

/// `fatfs` 0.3 gives every name a long-name entry, "." and ".." too, so a directory it
/// makes starts with an LFN slot where FAT wants "." (fsck.fat and strict firmware
/// object), and its ".." names the FAT32 root by cluster 2 where FAT wants 0. This puts
/// "." and ".." first in every directory of a FAT32 filesystem (their LFN slots marked
/// deleted) and zeroes the root's cluster number in "..".
fn fix_dot_entries(w: &mut Window<'_>) -> io::Result<()> {
    let mut bpb = [0u8; 512];
    read_exact_at(w, 0, &mut bpb)?;
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([bpb[o], bpb[o + 1]]));
    let u32_at = |o: usize| {
        u64::from(u32::from_le_bytes([
            bpb[o],
            bpb[o + 1],
            bpb[o + 2],
            bpb[o + 3],
        ]))
    };
    let (bps, spc, reserved, fats) = (
        u16_at(11),
        u64::from(bpb[13]),
        u16_at(14),
        u64::from(bpb[16]),
    );
    let (fat_size, root) = (u32_at(36), u32_at(44));
    if u16_at(22) != 0 || bps == 0 || spc == 0 || root < 2 {
        return Ok(()); // not FAT32: fatfs made a fixed root, nothing to fix here
    }
    let cluster_bytes = bps * spc;
    let data = (reserved + fats * fat_size) * bps;
    let offset = |c: u64| data + (c - 2) * cluster_bytes;
    let mut todo = vec![(root, true)];
    let mut seen = 0;
    while let Some((first, is_root)) = todo.pop() {
        seen += 1;
        if seen > 4096 {
            break;
        }
        let mut dir = vec![0u8; cluster_bytes as usize];
        read_exact_at(w, offset(first), &mut dir)?;
        let slot = |d: &[u8], i: usize| d[i * 32..i * 32 + 32].to_vec();
        if !is_root {
            let is_lfn = |e: &[u8]| e[11] == 0x0f;
            let named = |e: &[u8], n: &[u8; 11]| &e[..11] == n;
            let (e0, e1, e2, e3) = (slot(&dir, 0), slot(&dir, 1), slot(&dir, 2), slot(&dir, 3));
            if is_lfn(&e0)
                && named(&e1, b".          ")
                && is_lfn(&e2)
                && named(&e3, b"..         ")
            {
                dir[..32].copy_from_slice(&e1);
                dir[32..64].copy_from_slice(&e3);
                for i in 2..4 {
                    dir[i * 32..i * 32 + 32].fill(0);
                    dir[i * 32] = 0xe5;
                }
            }
            if &dir[32..43] == b"..         " {
                let parent = u64::from(u16::from_le_bytes([dir[52], dir[53]])) << 16
                    | u64::from(u16::from_le_bytes([dir[58], dir[59]]));
                if parent == root {
                    dir[52..54].fill(0);
                    dir[58..60].fill(0);
                }
            }
            w.seek(SeekFrom::Start(offset(first)))?;
            w.write_all(&dir)?;
        }
        // Subdirectories listed in this first cluster (ESP directories are small).
        for e in dir.chunks_exact(32) {
            if e[0] == 0 {
                break;
            }
            let is_dir = e[11] != 0x0f && e[11] & 0x10 != 0 && e[0] != 0xe5 && e[0] != b'.';
            let c = u64::from(u16::from_le_bytes([e[20], e[21]])) << 16
                | u64::from(u16::from_le_bytes([e[26], e[27]]));
            if is_dir && c >= 2 {
                todo.push((c, false));
            }
        }
    }
    w.flush()
}

/// Opens `path` for reading.
pub fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// A GPT disk image of 48 MiB with one ESP (34 MiB FAT) at 1 MiB holding `files`.
    pub(crate) fn disk_with_esp(files: &[&str]) -> tempfile::NamedTempFile {
        const MIB: u64 = 1 << 20;
        let mut fat = vec![0u8; 34 * MIB as usize];
        fatfs::format_volume(Cursor::new(&mut fat[..]), fatfs::FormatVolumeOptions::new()).unwrap();
        {
            let fs =
                fatfs::FileSystem::new(Cursor::new(&mut fat[..]), fatfs::FsOptions::new()).unwrap();
            for f in files {
                let mut dir = fs.root_dir();
                let parts: Vec<&str> = f.split('/').collect();
                for d in &parts[..parts.len() - 1] {
                    dir = dir.open_dir(d).or_else(|_| dir.create_dir(d)).unwrap();
                }
                dir.create_file(parts[parts.len() - 1])
                    .unwrap()
                    .write_all(b"MZ")
                    .unwrap();
            }
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(48 * MIB).unwrap();
        let status = std::process::Command::new("sfdisk")
            .arg("--quiet")
            .arg(file.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(b"label: gpt\nstart=2048, size=69632, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n")?;
                c.wait()
            })
            .unwrap();
        assert!(status.success());
        file.as_file().write_all_at(&fat, MIB).unwrap();
        file
    }

    #[test]
    fn finds_the_esp_and_prefers_a_vendor_shim() {
        let disk = disk_with_esp(&[
            "EFI/BOOT/BOOTX64.EFI",
            "EFI/debian/grubx64.efi",
            "EFI/debian/shimx64.efi",
        ]);
        let f = open(disk.path()).unwrap();
        let hd = find(&f, "disk", 512, None).unwrap();
        assert_eq!((hd.number, hd.start_lba, hd.size_lba), (1, 2048, 69632));
        assert!(matches!(hd.signature, Signature::Gpt(_)));
        assert_eq!(
            find_loader(&f, &hd, 512).unwrap(),
            "\\EFI\\debian\\shimx64.efi"
        );
        // A wanted GUID that is not there: the first ESP all the same.
        assert_eq!(
            find(
                &f,
                "disk",
                512,
                Some("00000000-0000-0000-0000-000000000000")
            )
            .unwrap(),
            hd
        );
    }

    #[test]
    fn falls_back_to_the_removable_path_and_says_when_nothing_is_there() {
        let disk = disk_with_esp(&["EFI/BOOT/BOOTX64.EFI"]);
        let f = open(disk.path()).unwrap();
        let hd = find(&f, "disk", 512, None).unwrap();
        assert_eq!(find_loader(&f, &hd, 512).unwrap(), FALLBACK);
        let empty = disk_with_esp(&["EFI/other/readme.txt"]);
        let f = open(empty.path()).unwrap();
        let hd = find(&f, "disk", 512, None).unwrap();
        assert!(matches!(find_loader(&f, &hd, 512), Err(EspError::NoLoader)));
        let blank = tempfile::NamedTempFile::new().unwrap();
        blank.as_file().set_len(1 << 20).unwrap();
        let f = open(blank.path()).unwrap();
        assert!(matches!(
            find(&f, "blank", 512, None),
            Err(EspError::NoEsp(..))
        ));
    }
}
