//! UEFI boot entries written through efivarfs, without efibootmgr: an `EFI_LOAD_OPTION`
//! (UEFI 2.10 §3.1.3) naming a file on a hard-drive partition, stored as `Boot####`, and
//! `BootOrder` with that entry first.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The EFI global variable GUID, as efivarfs spells it in file names.
pub const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
const ATTRIBUTES: u32 = 0x7;
/// LOAD_OPTION_ACTIVE.
const LOAD_OPTION_ACTIVE: u32 = 0x1;
/// FS_IOC_GETFLAGS / FS_IOC_SETFLAGS and FS_IMMUTABLE_FL (linux/fs.h): efivarfs marks
/// existing variables immutable.
/// (`libc::Ioctl` is `c_ulong` on glibc and `c_int` on musl; the cast keeps the bits.)
const GETFLAGS: u32 = 0x8008_6601;
const SETFLAGS: u32 = 0x4008_6602;
const FS_IOC_GETFLAGS: libc::Ioctl = GETFLAGS as libc::Ioctl;
const FS_IOC_SETFLAGS: libc::Ioctl = SETFLAGS as libc::Ioctl;
const FS_IMMUTABLE_FL: libc::c_long = 0x10;

/// Which partition the loader is on, as the hard-drive device path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardDrive {
    /// 1-based partition number.
    pub number: u32,
    pub start_lba: u64,
    pub size_lba: u64,
    pub signature: Signature,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// The GPT partition's unique GUID, in its on-disk (mixed-endian) bytes.
    Gpt([u8; 16]),
    /// The MBR disk signature.
    Mbr(u32),
}

/// GUID text (`xxxxxxxx-xxxx-…`) to the mixed-endian bytes GPT and UEFI store.
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Some(b)
}

fn ucs2(text: &str, out: &mut Vec<u8>) {
    for unit in text.encode_utf16().chain(std::iter::once(0)) {
        out.extend_from_slice(&unit.to_le_bytes());
    }
}

/// The `EFI_LOAD_OPTION` of an active entry `description` that starts `loader` (a path on
/// the partition with `\` separators, e.g. `\EFI\BOOT\BOOTX64.EFI`).
pub fn load_option(description: &str, hd: &HardDrive, loader: &str) -> Vec<u8> {
    let mut path = Vec::new();
    // Hard drive media device path: type 4, subtype 1, 42 bytes.
    path.extend_from_slice(&[0x04, 0x01]);
    path.extend_from_slice(&42u16.to_le_bytes());
    path.extend_from_slice(&hd.number.to_le_bytes());
    path.extend_from_slice(&hd.start_lba.to_le_bytes());
    path.extend_from_slice(&hd.size_lba.to_le_bytes());
    match hd.signature {
        Signature::Gpt(guid) => {
            path.extend_from_slice(&guid);
            path.extend_from_slice(&[0x02, 0x02]);
        }
        Signature::Mbr(sig) => {
            path.extend_from_slice(&sig.to_le_bytes());
            path.extend_from_slice(&[0u8; 12]);
            path.extend_from_slice(&[0x01, 0x01]);
        }
    }
    // File path media device path: type 4, subtype 4.
    let mut file = Vec::new();
    ucs2(loader, &mut file);
    path.extend_from_slice(&[0x04, 0x04]);
    path.extend_from_slice(&((4 + file.len()) as u16).to_le_bytes());
    path.extend_from_slice(&file);
    // End of the device path.
    path.extend_from_slice(&[0x7f, 0xff, 0x04, 0x00]);

    let mut out = Vec::new();
    out.extend_from_slice(&LOAD_OPTION_ACTIVE.to_le_bytes());
    out.extend_from_slice(&(path.len() as u16).to_le_bytes());
    ucs2(description, &mut out);
    out.extend_from_slice(&path);
    out
}

/// Why a boot entry could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EfiVarError {
    #[error("efivarfs is not mounted at {0}")]
    NoEfivarfs(PathBuf),
    #[error("reading {0}")]
    Read(PathBuf, #[source] io::Error),
    #[error("writing {0}")]
    Write(PathBuf, #[source] io::Error),
    #[error("every Boot#### number is taken")]
    NoFreeNumber,
}

/// The efivarfs directory: its variables, read and written as files whose first four
/// bytes are the attributes.
pub struct Efivars {
    dir: PathBuf,
}

impl Efivars {
    /// `dir` (normally /sys/firmware/efi/efivars), if it is there.
    pub fn open(dir: &Path) -> Result<Efivars, EfiVarError> {
        if !dir.is_dir() {
            return Err(EfiVarError::NoEfivarfs(dir.to_owned()));
        }
        Ok(Efivars {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-{GLOBAL_GUID}"))
    }

    /// A global variable's data (without its attributes); `None` when it does not exist.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, EfiVarError> {
        let path = self.path(name);
        match std::fs::read(&path) {
            Ok(raw) => Ok(Some(raw.get(4..).unwrap_or_default().to_vec())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EfiVarError::Read(path, e)),
        }
    }

    /// Sets a global variable: one write of attributes and data, as efivarfs requires,
    /// after lifting the immutable flag efivarfs puts on existing variables.
    pub fn set(&self, name: &str, data: &[u8]) -> Result<(), EfiVarError> {
        let path = self.path(name);
        let err = |e| EfiVarError::Write(path.clone(), e);
        if path.exists() {
            clear_immutable(&path).map_err(err)?;
        }
        let mut buf = ATTRIBUTES.to_le_bytes().to_vec();
        buf.extend_from_slice(data);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(err)?;
        f.write_all(&buf).map_err(err)
    }

    /// Makes `option` a boot entry and puts it first in `BootOrder`: an existing entry with
    /// the same load option is reused, else the lowest free number is taken. Returns the
    /// entry's number.
    pub fn add_first(&self, option: &[u8]) -> Result<u16, EfiVarError> {
        let mut free = None;
        let mut number = None;
        for n in 0..=u16::MAX {
            match self.get(&format!("Boot{n:04X}"))? {
                Some(existing) if existing == option => {
                    number = Some(n);
                    break;
                }
                Some(_) => {}
                None if free.is_none() => free = Some(n),
                None => {}
            }
            // Entries are dense in practice; stop looking once well past the free slot.
            if free.is_some_and(|f| n > f.saturating_add(64)) {
                break;
            }
        }
        let n = match number {
            Some(n) => n,
            None => {
                let n = free.ok_or(EfiVarError::NoFreeNumber)?;
                self.set(&format!("Boot{n:04X}"), option)?;
                n
            }
        };
        let order = self.get("BootOrder")?.unwrap_or_default();
        let mut new = n.to_le_bytes().to_vec();
        for pair in order.chunks_exact(2) {
            if u16::from_le_bytes([pair[0], pair[1]]) != n {
                new.extend_from_slice(pair);
            }
        }
        if new != order {
            self.set("BootOrder", &new)?;
        }
        Ok(n)
    }
}

fn clear_immutable(path: &Path) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let f = File::open(path)?;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into `flags`, which lives for the call; the
    // descriptor is open for the duration.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) };
    if r != 0 {
        // Not a filesystem with inode flags (a test directory on tmpfs): nothing to lift.
        return Ok(());
    }
    if flags & FS_IMMUTABLE_FL == 0 {
        return Ok(());
    }
    flags &= !FS_IMMUTABLE_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one long from `flags`, valid for the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS, &flags) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_stored_mixed_endian() {
        let b = guid_bytes("c12a7328-f81f-11d2-ba4b-00a0c93ec93b").unwrap();
        assert_eq!(
            ferrite_image::disk::gpt::guid_string(&b),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        assert_eq!(&b[..4], &[0x28, 0x73, 0x2a, 0xc1]);
        assert!(guid_bytes("not-a-guid").is_none());
        assert!(guid_bytes("c12a7328f81f11d2ba4b00a0c93ec93b").is_none());
    }

    #[test]
    fn load_option_matches_efibootmgr_layout() {
        let hd = HardDrive {
            number: 1,
            start_lba: 2048,
            size_lba: 204800,
            signature: Signature::Gpt(guid_bytes("01234567-89ab-cdef-0123-456789abcdef").unwrap()),
        };
        let o = load_option("ferrite", &hd, "\\EFI\\BOOT\\BOOTX64.EFI");
        assert_eq!(&o[0..4], &[1, 0, 0, 0], "active");
        let path_len = u16::from_le_bytes([o[4], o[5]]) as usize;
        // "ferrite" + NUL in UCS-2.
        let desc_end = 6 + 16;
        assert_eq!(&o[6..8], &[b'f', 0]);
        assert_eq!(&o[desc_end - 2..desc_end], &[0, 0]);
        let path = &o[desc_end..];
        assert_eq!(path.len(), path_len);
        assert_eq!(&path[..4], &[0x04, 0x01, 42, 0]);
        assert_eq!(&path[4..8], &1u32.to_le_bytes());
        assert_eq!(&path[8..16], &2048u64.to_le_bytes());
        assert_eq!(&path[16..24], &204800u64.to_le_bytes());
        assert_eq!(&path[40..42], &[2, 2], "GPT, GUID signature");
        let file_len = u16::from_le_bytes([path[44], path[45]]) as usize;
        assert_eq!(&path[42..44], &[0x04, 0x04]);
        assert_eq!(file_len, 4 + 2 * ("\\EFI\\BOOT\\BOOTX64.EFI".len() + 1));
        assert_eq!(&path[42 + file_len..], &[0x7f, 0xff, 0x04, 0x00]);
    }

    #[test]
    fn entries_are_added_once_and_put_first() {
        let dir = tempfile::tempdir().unwrap();
        let vars = Efivars::open(dir.path()).unwrap();
        vars.set("Boot0000", b"pxe").unwrap();
        vars.set("BootOrder", &[0, 0]).unwrap();
        let raw = std::fs::read(dir.path().join(format!("Boot0000-{GLOBAL_GUID}"))).unwrap();
        assert_eq!(&raw[..4], &[7, 0, 0, 0]);
        let n = vars.add_first(b"disk").unwrap();
        assert_eq!(n, 1);
        assert_eq!(vars.get("Boot0001").unwrap().unwrap(), b"disk");
        assert_eq!(vars.get("BootOrder").unwrap().unwrap(), vec![1, 0, 0, 0]);
        // Again: the same entry, still first, nothing added.
        assert_eq!(vars.add_first(b"disk").unwrap(), 1);
        assert_eq!(vars.get("BootOrder").unwrap().unwrap(), vec![1, 0, 0, 0]);
        assert!(vars.get("Boot0002").unwrap().is_none());
        assert!(matches!(
            Efivars::open(&dir.path().join("absent")),
            Err(EfiVarError::NoEfivarfs(_))
        ));
    }
}
