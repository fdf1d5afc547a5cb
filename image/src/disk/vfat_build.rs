//! Builds a VFAT filesystem image from a list of files (with the `fatfs` crate), for an
//! ISO9660 config drive that must be rebuilt as VFAT: a 4Kn disk cannot mount ISO9660,
//! whose 2 KiB blocks are smaller than its sectors.

use std::io::{Cursor, Write};

use super::iso9660::Entry;

#[derive(Debug, thiserror::Error)]
pub enum VfatError {
    #[error("the files need a {0}-byte filesystem, more than the {1}-byte limit")]
    TooLarge(u64, u64),
    #[error("building the VFAT filesystem failed")]
    Fat(#[source] std::io::Error),
}

const MIB: u64 = 1 << 20;

/// A VFAT image of at most `limit` bytes with `sector`-byte sectors, labelled `label`,
/// holding `entries` (parents listed before their children, as the ISO reader gives them).
pub fn build(
    label: &str,
    entries: &[Entry],
    sector: u16,
    limit: u64,
) -> Result<Vec<u8>, VfatError> {
    let data: u64 = entries
        .iter()
        .map(|e| {
            e.data
                .as_ref()
                .map_or(4096, |d| (d.len() as u64).next_multiple_of(4096))
        })
        .sum();
    let size = ((data + MIB) * 5 / 4).next_multiple_of(MIB).max(8 * MIB);
    if size > limit {
        return Err(VfatError::TooLarge(size, limit));
    }
    let mut name = [b' '; 11];
    for (d, s) in name.iter_mut().zip(label.bytes()) {
        *d = s;
    }
    let mut img = vec![0u8; size as usize];
    let opts = fatfs::FormatVolumeOptions::new()
        .bytes_per_sector(sector)
        .total_sectors((size / u64::from(sector)) as u32)
        .volume_label(name)
        .volume_id(rand::random());
    fatfs::format_volume(Cursor::new(&mut img[..]), opts).map_err(VfatError::Fat)?;
    {
        let fs = fatfs::FileSystem::new(Cursor::new(&mut img[..]), fatfs::FsOptions::new())
            .map_err(VfatError::Fat)?;
        for e in entries {
            let root = fs.root_dir();
            match &e.data {
                None => {
                    root.create_dir(&e.path).map_err(VfatError::Fat)?;
                }
                Some(bytes) => {
                    let mut f = root.create_file(&e.path).map_err(VfatError::Fat)?;
                    f.truncate().map_err(VfatError::Fat)?;
                    f.write_all(bytes).map_err(VfatError::Fat)?;
                }
            }
        }
        fs.unmount().map_err(VfatError::Fat)?;
    }
    fix_dot_entries(&mut img);
    Ok(img)
}

fn le16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// fatfs 0.3.6 writes long-name slots in front of the `.` and `..` entries of a new
/// directory; fsck.fat then wants `.` and `..` in the first two slots. Move the two short
/// entries up and mark the slots after them deleted. FAT12/16 (all an image of ≤ 64 MiB
/// with 4 KiB clusters can be); only each directory's first cluster, where they live.
fn fix_dot_entries(img: &mut [u8]) {
    let (bps, spc, rsvd, fats) = (
        le16(img, 11),
        usize::from(img[13]),
        le16(img, 14),
        usize::from(img[16]),
    );
    let (root_entries, fat_sectors) = (le16(img, 17), le16(img, 22));
    if fat_sectors == 0 || bps == 0 || spc == 0 {
        return; // FAT32: never produced here
    }
    let root_at = (rsvd + fats * fat_sectors) * bps;
    let data_at = root_at + (root_entries * 32).next_multiple_of(bps);
    let cluster_bytes = spc * bps;
    let mut dirs = vec![(root_at, root_entries * 32, 0usize)];
    while let Some((at, len, depth)) = dirs.pop() {
        let Some(dir) = img.get_mut(at..at + len) else {
            continue;
        };
        let is_lfn = |e: &[u8]| e[11] == 0x0F;
        if len >= 128
            && is_lfn(&dir[..32])
            && &dir[32..43] == b".          "
            && is_lfn(&dir[64..96])
            && &dir[96..107] == b"..         "
        {
            dir.copy_within(32..64, 0);
            dir.copy_within(96..128, 32);
            dir[64] = 0xE5;
            dir[96] = 0xE5;
        }
        for e in dir.chunks_exact(32) {
            if e[0] == 0 {
                break;
            }
            let dot = e[0] == b'.';
            if e[0] != 0xE5 && !is_lfn(e) && e[11] & 0x10 != 0 && !dot && depth < 16 {
                let cluster = le16(e, 26);
                if cluster >= 2 {
                    dirs.push((
                        data_at + (cluster - 2) * cluster_bytes,
                        cluster_bytes,
                        depth + 1,
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn files_read_back_through_fatfs_on_4k_sectors() {
        let entries = vec![
            Entry {
                path: "openstack".into(),
                data: None,
            },
            Entry {
                path: "openstack/latest".into(),
                data: None,
            },
            Entry {
                path: "openstack/latest/meta_data.json".into(),
                data: Some(br#"{"uuid": "x"}"#.to_vec()),
            },
        ];
        let mut img = build("config-2", &entries, 4096, 64 * MIB).unwrap();
        assert_eq!(u16::from_le_bytes([img[11], img[12]]), 4096);
        let fs =
            fatfs::FileSystem::new(Cursor::new(&mut img[..]), fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label(), "config-2");
        let mut s = String::new();
        fs.root_dir()
            .open_file("openstack/latest/meta_data.json")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, r#"{"uuid": "x"}"#);
        let big = vec![Entry {
            path: "big".into(),
            data: Some(vec![1; 70 << 20]),
        }];
        assert!(matches!(
            build("config-2", &big, 4096, 64 * MIB),
            Err(VfatError::TooLarge(..))
        ));
    }
}
