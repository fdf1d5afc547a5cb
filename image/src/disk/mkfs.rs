//! The two filesystems a partition-image deploy creates itself (no mkfs in the ramdisk):
//! an empty FAT32 ESP and a swap signature, as byte plans; plus reading the UUID of the
//! root filesystem the image put down (ext2/3/4, XFS, btrfs), for `root uuid`.

use uuid::Uuid;

/// Bytes to put at offsets relative to the partition start, after zeroing `zero` ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// (offset, length) ranges that must read back as zeroes.
    pub zero: Vec<(u64, u64)>,
    pub writes: Vec<(u64, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MkfsError {
    #[error("a {0}-byte partition is too small for FAT32 (at least 65525 clusters are needed)")]
    FatTooSmall(u64),
    #[error("a {0}-byte partition is too small for swap")]
    SwapTooSmall(u64),
}

/// FAT32 volume serial in the form blkid prints it (`XXXX-XXXX`).
pub fn fat_serial_string(serial: u32) -> String {
    format!("{:04X}-{:04X}", serial >> 16, serial & 0xFFFF)
}

/// An empty FAT32 filesystem over `bytes` of a partition starting at LBA `hidden`:
/// 32 reserved sectors (boot sector, FSInfo, backups at 6 and 7), two FATs, a root
/// directory in cluster 2 holding the volume label. Clusters are 4 KiB.
pub fn fat32(
    bytes: u64,
    sector: u32,
    hidden: u64,
    serial: u32,
    label: &str,
) -> Result<Plan, MkfsError> {
    let ss = u64::from(sector);
    let per_cluster = (4096 / sector).max(1) as u8;
    let total = bytes / ss;
    let reserved: u64 = 32;
    // Smallest FAT that maps every cluster left after the FATs themselves (grows
    // monotonically to the fixed point, in a few rounds).
    let spc = u64::from(per_cluster);
    let mut fat_sectors = 1u64;
    loop {
        let clusters = total.saturating_sub(reserved + 2 * fat_sectors) / spc;
        let need = ((clusters + 2) * 4).div_ceil(ss);
        if need <= fat_sectors {
            break;
        }
        fat_sectors = need;
    }
    let data_start = reserved + 2 * fat_sectors;
    let clusters = total.saturating_sub(data_start) / u64::from(per_cluster);
    if clusters < 65525 || total > u64::from(u32::MAX) {
        return Err(MkfsError::FatTooSmall(bytes));
    }
    let mut bs = vec![0u8; sector as usize];
    bs[..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
    bs[3..11].copy_from_slice(b"FERRITE ");
    bs[11..13].copy_from_slice(&(sector as u16).to_le_bytes());
    bs[13] = per_cluster;
    bs[14..16].copy_from_slice(&(reserved as u16).to_le_bytes());
    bs[16] = 2;
    bs[21] = 0xF8;
    bs[24..26].copy_from_slice(&63u16.to_le_bytes());
    bs[26..28].copy_from_slice(&255u16.to_le_bytes());
    bs[28..32].copy_from_slice(&(hidden.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    bs[32..36].copy_from_slice(&(total as u32).to_le_bytes());
    bs[36..40].copy_from_slice(&(fat_sectors as u32).to_le_bytes());
    bs[44..48].copy_from_slice(&2u32.to_le_bytes());
    bs[48..50].copy_from_slice(&1u16.to_le_bytes());
    bs[50..52].copy_from_slice(&6u16.to_le_bytes());
    bs[64] = 0x80;
    bs[66] = 0x29;
    bs[67..71].copy_from_slice(&serial.to_le_bytes());
    let mut name = [b' '; 11];
    for (d, s) in name.iter_mut().zip(label.bytes()) {
        *d = s.to_ascii_uppercase();
    }
    bs[71..82].copy_from_slice(&name);
    bs[82..90].copy_from_slice(b"FAT32   ");
    bs[510] = 0x55;
    bs[511] = 0xAA;
    let mut fsinfo = vec![0u8; sector as usize];
    fsinfo[..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    fsinfo[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    fsinfo[488..492].copy_from_slice(&((clusters - 1) as u32).to_le_bytes());
    fsinfo[492..496].copy_from_slice(&3u32.to_le_bytes());
    fsinfo[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    let mut fat_head = vec![];
    for v in [0x0FFF_FFF8u32, 0x0FFF_FFFF, 0x0FFF_FFFF] {
        fat_head.extend_from_slice(&v.to_le_bytes());
    }
    let mut root = vec![0u8; 32];
    root[..11].copy_from_slice(&name);
    root[11] = 0x08; // volume label entry
    let fat_bytes = fat_sectors * ss;
    let root_at = data_start * ss;
    Ok(Plan {
        zero: vec![
            (0, reserved * ss),
            (reserved * ss, 2 * fat_bytes),
            (root_at, u64::from(per_cluster) * ss),
        ],
        writes: vec![
            (0, bs.clone()),
            (ss, fsinfo.clone()),
            (6 * ss, bs),
            (7 * ss, fsinfo),
            (reserved * ss, fat_head.clone()),
            (reserved * ss + fat_bytes, fat_head),
            (root_at, root),
        ],
    })
}

/// A Linux swap signature (mkswap's version-1 header in the first 4 KiB page).
pub fn swap(bytes: u64, uuid: Uuid, label: &str) -> Result<Plan, MkfsError> {
    const PAGE: u64 = 4096;
    let pages = bytes / PAGE;
    if pages < 10 {
        return Err(MkfsError::SwapTooSmall(bytes));
    }
    let mut p = vec![0u8; PAGE as usize];
    p[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    p[1028..1032].copy_from_slice(&((pages - 1).min(u64::from(u32::MAX)) as u32).to_le_bytes());
    p[1036..1052].copy_from_slice(uuid.as_bytes());
    for (d, s) in p[1052..1068].iter_mut().zip(label.bytes()) {
        *d = s;
    }
    p[4086..4096].copy_from_slice(b"SWAPSPACE2");
    Ok(Plan {
        zero: vec![(0, PAGE)],
        writes: vec![(0, p)],
    })
}

/// The UUID of the filesystem whose first 68 KiB are `head` (ext2/3/4, XFS, btrfs).
pub fn filesystem_uuid(head: &[u8]) -> Option<Uuid> {
    let at = |off: usize, sig: &[u8]| head.get(off..off + sig.len()) == Some(sig);
    let uuid = |off: usize| {
        head.get(off..off + 16)
            .and_then(|b| Uuid::from_slice(b).ok())
            .filter(|u| !u.is_nil())
    };
    if at(1024 + 56, &[0x53, 0xEF]) {
        return uuid(1024 + 104);
    }
    if at(0, b"XFSB") {
        return uuid(32);
    }
    if at(65536 + 64, b"_BHRfS_M") {
        return uuid(65536 + 32);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(plan: &Plan, size: usize) -> Vec<u8> {
        let mut d = vec![0xAAu8; size];
        for &(o, l) in &plan.zero {
            d[o as usize..(o + l) as usize].fill(0);
        }
        for (o, b) in &plan.writes {
            d[*o as usize..*o as usize + b.len()].copy_from_slice(b);
        }
        d
    }

    #[test]
    fn fat32_of_an_esp_has_consistent_geometry() {
        let bytes = 550u64 << 20;
        let p = fat32(bytes, 512, 2048, 0x1234_abcd, "efi-part").unwrap();
        let d = apply(&p, 8 << 20);
        let le32 = |o: usize| u32::from_le_bytes([d[o], d[o + 1], d[o + 2], d[o + 3]]);
        assert_eq!(&d[82..90], b"FAT32   ");
        assert_eq!(&d[71..82], b"EFI-PART   ");
        assert_eq!(d[13], 8);
        assert_eq!(le32(32) as u64, bytes / 512);
        let fat = le32(36) as u64;
        let clusters = (bytes / 512 - 32 - 2 * fat) / 8;
        // Each FAT holds an entry for every cluster plus the two reserved ones.
        assert!(fat * 512 / 4 >= clusters + 2, "FAT too small");
        assert!(fat * 512 / 4 < clusters + 2 + 1024, "FAT much too large");
        assert_eq!(le32(512 + 488) as u64, clusters - 1);
        assert_eq!(&d[6 * 512..7 * 512], &d[..512]);
        assert_eq!(le32(32 * 512), 0x0FFF_FFF8);
        assert_eq!(le32((32 + fat as usize) * 512 + 8), 0x0FFF_FFFF);
        assert_eq!(fat_serial_string(0x1234_abcd), "1234-ABCD");
        assert!(fat32(32 << 20, 512, 0, 1, "x").is_err());
        let p = fat32(bytes, 4096, 256, 1, "efi-part").unwrap();
        assert_eq!(p.writes[0].1.len(), 4096);
        assert_eq!(p.writes[0].1[13], 1);
    }

    #[test]
    fn swap_and_filesystem_uuids() {
        let u = Uuid::new_v4();
        let d = apply(&swap(64 << 20, u, "swap").unwrap(), 4096);
        assert_eq!(&d[4086..], b"SWAPSPACE2");
        assert_eq!(&d[1036..1052], u.as_bytes());
        assert!(swap(8192, u, "").is_err());
        let mut ext = vec![0u8; 70_000];
        ext[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xEF]);
        ext[1024 + 104..1024 + 120].copy_from_slice(u.as_bytes());
        assert_eq!(filesystem_uuid(&ext), Some(u));
        let mut xfs = vec![0u8; 70_000];
        xfs[..4].copy_from_slice(b"XFSB");
        xfs[32..48].copy_from_slice(u.as_bytes());
        assert_eq!(filesystem_uuid(&xfs), Some(u));
        assert_eq!(filesystem_uuid(&[0u8; 100]), None);
    }
}
