//! GRUB's BIOS install, as `grub-setup` (grub-bios-setup) does it, as a pure codec: the
//! image's `boot.img` becomes the disk's MBR code (the partition table and disk signature
//! stay), pointing at the first sector of `core.img`; `core.img` (made by `grub-mkimage -O
//! i386-pc`, whose first sector is `diskboot.img`) gets the blocklist of its remaining
//! sectors. Offsets from GRUB 2.06 `include/grub/i386/pc/boot.h` and `util/setup.c`.

/// One disk sector; BIOS GRUB only boots 512-byte-sector disks.
pub const SECTOR: usize = 512;
/// Where boot.img keeps the 64-bit LBA of core.img's first sector.
const KERNEL_SECTOR: usize = 0x5c;
/// The boot drive byte (0xff: use the drive the BIOS booted from).
const BOOT_DRIVE: usize = 0x64;
/// The two-byte drive check grub-install turns into NOPs unless `--allow-floppy`.
const DRIVE_CHECK: usize = 0x66;
/// The DOS BPB area kept from the old sector.
const BPB: std::ops::Range<usize> = 0x03..0x5a;
/// Windows NT disk signature through the end of the partition table, kept from the old
/// sector.
const TABLE: std::ops::Range<usize> = 0x1b8..0x1fe;
/// diskboot.img's blocklist entry: the last 12 bytes of core.img's first sector
/// (`u64 start`, `u16 len`, `u16 segment`).
const BLOCKLIST: usize = SECTOR - 12;
/// The segment the first blocklist entry loads to (0x800 + 512 / 16), as grub-mkimage
/// leaves it.
const FIRST_SEGMENT: u16 = 0x820;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SetupError {
    #[error("boot.img is {0} bytes; GRUB's i386-pc boot.img is exactly 512")]
    BootSize(usize),
    #[error("boot.img has no 0x55AA boot signature")]
    BootSignature,
    #[error("core.img is {0} bytes: too small to be GRUB's diskboot.img and core")]
    CoreSize(usize),
    #[error(
        "core.img does not start with diskboot.img (its blocklist says {len} sectors at \
         segment {segment:#x}; the file has {sectors}): make it with grub-mkimage -O i386-pc"
    )]
    NotDiskboot {
        len: u16,
        segment: u16,
        sectors: usize,
    },
    #[error("core.img needs {needed} sectors and only {room} are free where it goes")]
    NoRoom { needed: u64, room: u64 },
}

/// The MBR sector to write: `boot_img`'s code around the BPB and partition table of
/// `old_mbr`, pointing at `core_lba`.
pub fn boot_sector(
    boot_img: &[u8],
    old_mbr: &[u8; SECTOR],
    core_lba: u64,
) -> Result<[u8; SECTOR], SetupError> {
    let boot: &[u8; SECTOR] = boot_img
        .try_into()
        .map_err(|_| SetupError::BootSize(boot_img.len()))?;
    if boot[510..] != [0x55, 0xaa] {
        return Err(SetupError::BootSignature);
    }
    let mut out = *boot;
    out[BPB].copy_from_slice(&old_mbr[BPB]);
    out[TABLE].copy_from_slice(&old_mbr[TABLE]);
    out[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    out[BOOT_DRIVE] = 0xff;
    out[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
    Ok(out)
}

/// `core_img` with its blocklist naming its sectors after the first, placed contiguously
/// from `core_lba` (at most `room` sectors free there).
pub fn place_core(core_img: &[u8], core_lba: u64, room: u64) -> Result<Vec<u8>, SetupError> {
    if core_img.len() <= SECTOR {
        return Err(SetupError::CoreSize(core_img.len()));
    }
    // grub-mkimage does not pad the file; the loader reads whole sectors.
    let sectors = core_img.len().div_ceil(SECTOR);
    if sectors as u64 > room {
        return Err(SetupError::NoRoom {
            needed: sectors as u64,
            room,
        });
    }
    let len = u16::from_le_bytes([core_img[BLOCKLIST + 8], core_img[BLOCKLIST + 9]]);
    let segment = u16::from_le_bytes([core_img[BLOCKLIST + 10], core_img[BLOCKLIST + 11]]);
    if usize::from(len) != sectors - 1 || segment != FIRST_SEGMENT {
        return Err(SetupError::NotDiskboot {
            len,
            segment,
            sectors,
        });
    }
    let mut out = core_img.to_vec();
    out.resize(sectors * SECTOR, 0);
    out[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    // The entry before it (growing down) terminates the list.
    out[BLOCKLIST - 12..BLOCKLIST].fill(0);
    Ok(out)
}

/// Reads back what [`boot_sector`] and [`place_core`] wrote: (core.img's LBA from the MBR,
/// the blocklist's start, length and segment).
pub fn read_back(mbr: &[u8; SECTOR], core_first_sector: &[u8]) -> (u64, u64, u16, u16) {
    let lba = u64::from_le_bytes(
        mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8]
            .try_into()
            .unwrap_or_default(),
    );
    let b = &core_first_sector[BLOCKLIST..BLOCKLIST + 12];
    (
        lba,
        u64::from_le_bytes(b[..8].try_into().unwrap_or_default()),
        u16::from_le_bytes([b[8], b[9]]),
        u16::from_le_bytes([b[10], b[11]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot_img() -> Vec<u8> {
        let mut b = vec![0xeb; SECTOR];
        b[510] = 0x55;
        b[511] = 0xaa;
        b
    }

    fn core_img(sectors: usize) -> Vec<u8> {
        let mut c = vec![0x11; sectors * SECTOR];
        c[BLOCKLIST..BLOCKLIST + 8].fill(0);
        c[BLOCKLIST + 8..BLOCKLIST + 10].copy_from_slice(&((sectors - 1) as u16).to_le_bytes());
        c[BLOCKLIST + 10..BLOCKLIST + 12].copy_from_slice(&FIRST_SEGMENT.to_le_bytes());
        c
    }

    #[test]
    fn boot_sector_keeps_the_table_and_points_at_core() {
        let mut old = [0u8; SECTOR];
        old[0x1b8..0x1bc].copy_from_slice(b"SIGN");
        old[0x1be] = 0x80;
        old[0x1c2] = 0xee;
        old[0x10] = 0x42; // BPB byte
        let s = boot_sector(&boot_img(), &old, 2048).unwrap();
        assert_eq!(&s[0x1b8..0x1fe], &old[0x1b8..0x1fe]);
        assert_eq!(s[0x10], 0x42);
        assert_eq!(&s[510..], &[0x55, 0xaa]);
        assert_eq!(s[0], 0xeb, "boot.img's code");
        assert_eq!(s[BOOT_DRIVE], 0xff);
        assert_eq!(&s[DRIVE_CHECK..DRIVE_CHECK + 2], &[0x90, 0x90]);
        let core = place_core(&core_img(60), 2048, 2048).unwrap();
        assert_eq!(read_back(&s, &core), (2048, 2049, 59, FIRST_SEGMENT));
        assert_eq!(
            &core[SECTOR..],
            &core_img(60)[SECTOR..],
            "only sector 0 changes"
        );
    }

    #[test]
    fn bad_images_and_no_room_are_refused() {
        let old = [0u8; SECTOR];
        assert_eq!(
            boot_sector(&[0; 100], &old, 1),
            Err(SetupError::BootSize(100))
        );
        assert_eq!(
            boot_sector(&[0; SECTOR], &old, 1),
            Err(SetupError::BootSignature)
        );
        assert_eq!(
            place_core(&[0; 500], 1, 100),
            Err(SetupError::CoreSize(500))
        );
        // Not a whole number of sectors: padded, as grub-setup reads it.
        let mut short = core_img(3);
        short.truncate(2 * SECTOR + 10);
        assert_eq!(place_core(&short, 1, 100).unwrap().len(), 3 * SECTOR);
        assert!(matches!(
            place_core(&vec![0; 4 * SECTOR], 1, 100),
            Err(SetupError::NotDiskboot { len: 0, .. })
        ));
        assert_eq!(
            place_core(&core_img(60), 1, 59),
            Err(SetupError::NoRoom {
                needed: 60,
                room: 59
            })
        );
    }
}
