//! GPT and MBR: a pure codec for the GPT header and entries and the MBR partition
//! table, plus the post-deploy fix of moving the backup GPT to the end of a larger disk.

use std::io;

use super::io::DiskIo;

pub const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Refuse partition entry arrays larger than this (the spec's usual size is 16 KiB).
const MAX_ENTRIES_BYTES: u64 = 1 << 20;

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A GPT header as found on disk (the fields the agent uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    /// The header sector bytes (header_size of them are covered by the CRC).
    pub raw: Vec<u8>,
    pub header_size: u32,
    pub my_lba: u64,
    pub alternate_lba: u64,
    pub first_usable: u64,
    pub last_usable: u64,
    pub disk_guid: [u8; 16],
    pub entries_lba: u64,
    pub num_entries: u32,
    pub entry_size: u32,
    pub entries_crc: u32,
}

impl GptHeader {
    /// Parse and CRC-check a header sector; None if it is not a valid GPT header.
    pub fn parse(sector: &[u8]) -> Option<GptHeader> {
        if sector.len() < 92 || &sector[..8] != GPT_SIGNATURE {
            return None;
        }
        let header_size = le32(sector, 12);
        if !(92..=sector.len() as u32).contains(&header_size) {
            return None;
        }
        let mut copy = sector[..header_size as usize].to_vec();
        copy[16..20].fill(0);
        if crc32fast::hash(&copy) != le32(sector, 16) {
            return None;
        }
        let mut disk_guid = [0u8; 16];
        disk_guid.copy_from_slice(&sector[56..72]);
        let h = GptHeader {
            raw: sector.to_vec(),
            header_size,
            my_lba: le64(sector, 24),
            alternate_lba: le64(sector, 32),
            first_usable: le64(sector, 40),
            last_usable: le64(sector, 48),
            disk_guid,
            entries_lba: le64(sector, 72),
            num_entries: le32(sector, 80),
            entry_size: le32(sector, 84),
            entries_crc: le32(sector, 88),
        };
        let entries = u64::from(h.num_entries) * u64::from(h.entry_size);
        (h.entry_size >= 128 && entries <= MAX_ENTRIES_BYTES).then_some(h)
    }

    pub fn entries_bytes(&self) -> u64 {
        u64::from(self.num_entries) * u64::from(self.entry_size)
    }

    /// Serialise with the given location fields, recomputing the header CRC.
    pub fn encode(
        &self,
        my_lba: u64,
        alternate_lba: u64,
        last_usable: u64,
        entries_lba: u64,
    ) -> Vec<u8> {
        let mut b = self.raw.clone();
        b[24..32].copy_from_slice(&my_lba.to_le_bytes());
        b[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        b[48..56].copy_from_slice(&last_usable.to_le_bytes());
        b[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        b[16..20].fill(0);
        let crc = crc32fast::hash(&b[..self.header_size as usize]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

/// Format a GUID (mixed-endian as GPT stores it) in the usual text form, lower case.
pub fn guid_string(g: &[u8; 16]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        hex::encode(&g[10..16])
    )
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    pub number: u32,
    pub type_guid: String,
    pub uuid: String,
    pub first_lba: u64,
    pub last_lba: u64,
    pub name: String,
}

/// Decode the used entries of a partition entry array.
pub fn parse_entries(h: &GptHeader, entries: &[u8]) -> Vec<GptPartition> {
    let size = h.entry_size as usize;
    entries
        .chunks_exact(size)
        .take(h.num_entries as usize)
        .enumerate()
        .filter(|(_, e)| e[..16].iter().any(|&b| b != 0))
        .map(|(i, e)| {
            let mut t = [0u8; 16];
            t.copy_from_slice(&e[..16]);
            let mut u = [0u8; 16];
            u.copy_from_slice(&e[16..32]);
            let name: Vec<u16> = e[56..128.min(size)]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&c| c != 0)
                .collect();
            GptPartition {
                number: i as u32 + 1,
                type_guid: guid_string(&t),
                uuid: guid_string(&u),
                first_lba: le64(e, 32),
                last_lba: le64(e, 40),
                name: String::from_utf16_lossy(&name),
            }
        })
        .collect()
}

/// What partition table a disk carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Table {
    Gpt {
        header: GptHeader,
        partitions: Vec<GptPartition>,
    },
    /// MBR disk signature and the (number, type, start LBA, sectors) of used entries.
    Mbr {
        signature: u32,
        partitions: Vec<(u32, u8, u32, u32)>,
    },
    None,
}

/// Read the partition table of `file` (sector size `sector`).
pub fn read_table(file: &dyn DiskIo, sector: u64) -> io::Result<Table> {
    let mut head = vec![0u8; 2 * sector as usize];
    let n = file.read_at(&mut head, 0)?;
    if n < head.len() {
        return Ok(Table::None);
    }
    // A header whose entry array lies past any possible disk is not a table we can use.
    let gpt = GptHeader::parse(&head[sector as usize..])
        .and_then(|h| Some((h.entries_lba.checked_mul(sector)?, h)));
    if let Some((entries_at, h)) = gpt {
        let mut entries = vec![0u8; h.entries_bytes() as usize];
        file.read_exact_at(&mut entries, entries_at)?;
        if crc32fast::hash(&entries) == h.entries_crc {
            let partitions = parse_entries(&h, &entries);
            return Ok(Table::Gpt {
                header: h,
                partitions,
            });
        }
    }
    if head[510] == 0x55 && head[511] == 0xAA {
        let partitions = (0..4)
            .filter_map(|i| {
                let e = &head[446 + 16 * i..446 + 16 * (i + 1)];
                (e[4] != 0).then(|| (i as u32 + 1, e[4], le32(e, 8), le32(e, 12)))
            })
            .collect();
        return Ok(Table::Mbr {
            signature: le32(&head, 440),
            partitions,
        });
    }
    Ok(Table::None)
}

/// After writing a whole-disk image smaller than the disk, put the backup GPT at the
/// disk's end (and tell the primary header), as sgdisk -e does. Returns whether it moved.
pub fn move_backup_to_end(file: &dyn DiskIo, disk_size: u64, sector: u64) -> io::Result<bool> {
    let Table::Gpt { header: h, .. } = read_table(file, sector)? else {
        return Ok(false);
    };
    // The header comes from the image just written, so any field may be hostile: a
    // layout that does not fit the disk is left as it is.
    let Some(last_lba) = (disk_size / sector).checked_sub(1) else {
        return Ok(false);
    };
    if h.alternate_lba == last_lba || h.my_lba != 1 {
        return Ok(false);
    }
    let entries_sectors = h.entries_bytes().div_ceil(sector);
    let Some(new_entries_lba) = last_lba.checked_sub(entries_sectors) else {
        return Ok(false);
    };
    let Some(new_last_usable) = new_entries_lba.checked_sub(1) else {
        return Ok(false);
    };
    if new_last_usable < h.last_usable {
        // The disk is smaller than the image said; leave it as it is.
        return Ok(false);
    }
    let mut entries = vec![0u8; h.entries_bytes() as usize];
    // read_table has checked that this does not overflow.
    file.read_exact_at(&mut entries, h.entries_lba * sector)?;
    let old_backup = h.alternate_lba;
    file.write_all_at(&entries, new_entries_lba * sector)?;
    let backup = h.encode(last_lba, 1, new_last_usable, new_entries_lba);
    file.write_all_at(&backup, last_lba * sector)?;
    let primary = h.encode(1, last_lba, new_last_usable, h.entries_lba);
    file.write_all_at(&primary, sector)?;
    if old_backup < new_entries_lba && old_backup > h.last_usable {
        file.write_all_at(&vec![0u8; sector as usize], old_backup * sector)?;
    }
    file.sync()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_is_mixed_endian() {
        // EFI system partition type, as stored on disk.
        let esp = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        assert_eq!(guid_string(&esp), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }

    #[test]
    fn header_round_trips_through_encode() {
        let mut s = vec![0u8; 512];
        s[..8].copy_from_slice(GPT_SIGNATURE);
        s[12..16].copy_from_slice(&92u32.to_le_bytes());
        s[80..84].copy_from_slice(&128u32.to_le_bytes());
        s[84..88].copy_from_slice(&128u32.to_le_bytes());
        let crc = crc32fast::hash(&s[..92]);
        s[16..20].copy_from_slice(&crc.to_le_bytes());
        let h = GptHeader::parse(&s).unwrap();
        let moved = GptHeader::parse(&h.encode(100, 1, 60, 68)).unwrap();
        assert_eq!(
            (
                moved.my_lba,
                moved.alternate_lba,
                moved.last_usable,
                moved.entries_lba
            ),
            (100, 1, 60, 68)
        );
        let mut bad = s.clone();
        bad[40] ^= 1;
        assert!(GptHeader::parse(&bad).is_none());
    }

    /// A GPT header with a valid CRC at LBA 1 of a 512-byte-sector disk of `sectors`.
    fn disk_with_header(sectors: usize, entries_lba: u64, num_entries: u32) -> Vec<u8> {
        let mut d = vec![0u8; sectors * 512];
        let s = &mut d[512..1024];
        s[..8].copy_from_slice(GPT_SIGNATURE);
        s[12..16].copy_from_slice(&92u32.to_le_bytes());
        s[24..32].copy_from_slice(&1u64.to_le_bytes());
        s[32..40].copy_from_slice(&(sectors as u64 / 2).to_le_bytes());
        s[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        s[80..84].copy_from_slice(&num_entries.to_le_bytes());
        s[84..88].copy_from_slice(&128u32.to_le_bytes());
        s[88..92].copy_from_slice(&crc32fast::hash(&[]).to_le_bytes());
        let crc = crc32fast::hash(&s[..92]);
        s[16..20].copy_from_slice(&crc.to_le_bytes());
        d
    }

    /// Found by the partition_tables fuzz target: arithmetic on header fields of the
    /// image just written (or on a tiny disk size) overflowed, which panics in debug
    /// builds and in release wraps to writes at nonsense offsets.
    #[test]
    fn hostile_headers_and_tiny_disks_leave_the_table_alone() {
        use crate::fuzzing::MemDisk;
        // The entry array 2^62 sectors in: no table, no overflow.
        let d = disk_with_header(8, 1 << 62, 0);
        assert_eq!(
            read_table(&MemDisk::new(d.clone()), 512).unwrap(),
            Table::None
        );
        assert!(!move_backup_to_end(&MemDisk::new(d), 4096, 512).unwrap());
        // A usable header (no entries) on a disk that reports less than one sector.
        let d = disk_with_header(8, 2, 0);
        assert!(matches!(
            read_table(&MemDisk::new(d.clone()), 512).unwrap(),
            Table::Gpt { .. }
        ));
        assert!(!move_backup_to_end(&MemDisk::new(d.clone()), 511, 512).unwrap());
        assert!(!move_backup_to_end(&MemDisk::new(d.clone()), 0, 512).unwrap());
        // A disk with no room for the entries before its last sector.
        assert!(!move_backup_to_end(&MemDisk::new(d), 512, 512).unwrap());
        // 8192 entries (1 MiB) that cannot fit a 16-sector disk.
        let mut d = disk_with_header(16, 2, 8192);
        d.resize(16 * 512 + (1 << 20), 0);
        let crc = crc32fast::hash(&d[1024..1024 + (1 << 20)]);
        d[512 + 88..512 + 92].copy_from_slice(&crc.to_le_bytes());
        d[512 + 16..512 + 20].fill(0);
        let hcrc = crc32fast::hash(&d[512..512 + 92]);
        d[512 + 16..512 + 20].copy_from_slice(&hcrc.to_le_bytes());
        assert!(matches!(
            read_table(&MemDisk::new(d.clone()), 512).unwrap(),
            Table::Gpt { .. }
        ));
        assert!(!move_backup_to_end(&MemDisk::new(d), 16 * 512, 512).unwrap());
    }
}
