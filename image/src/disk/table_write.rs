//! Encoders for new partition tables: GPT (protective MBR, primary and backup headers and
//! entry arrays) and MBR, from a planned [`Layout`]. Pure: bytes and where they go.

use uuid::Uuid;

use super::gpt::GPT_SIGNATURE;
use super::layout::{Layout, Role};
use super::mbr;

/// Entries in a GPT entry array, of 128 bytes each (16 KiB, as every tool writes).
pub const GPT_ENTRIES: u32 = 128;
const ENTRY_BYTES: usize = 128;

/// One piece of a table: bytes and their byte offset on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub bytes: Vec<u8>,
}

/// The first 512 bytes of a disk with an MBR. In BIOS mode root is marked active.
pub fn mbr(layout: &Layout, signature: u32, mark_root_active: bool) -> Piece {
    let mut s = vec![0u8; 512];
    s[440..444].copy_from_slice(&signature.to_le_bytes());
    for (i, p) in layout.parts.iter().take(4).enumerate() {
        let boot = mark_root_active && p.role == Role::Root;
        let entry = mbr::Partition::clamped(boot, p.role.mbr_type(), p.first_lba, p.sectors);
        mbr::write_entry(&mut s, i, &entry);
    }
    mbr::write_signature(&mut s);
    Piece {
        offset: 0,
        bytes: s,
    }
}

fn entry_array(layout: &Layout) -> Vec<u8> {
    let mut a = vec![0u8; GPT_ENTRIES as usize * ENTRY_BYTES];
    for p in &layout.parts {
        let e = &mut a[(p.number as usize - 1) * ENTRY_BYTES..p.number as usize * ENTRY_BYTES];
        // Type GUIDs are constants; a parse failure would be a typo caught by the tests.
        let t = Uuid::parse_str(p.role.gpt_type()).unwrap_or_default();
        e[..16].copy_from_slice(&t.to_bytes_le());
        e[16..32].copy_from_slice(&p.uuid.to_bytes_le());
        e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&(p.first_lba + p.sectors - 1).to_le_bytes());
        for (i, c) in p.role.name().encode_utf16().take(36).enumerate() {
            e[56 + 2 * i..58 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
    }
    a
}

/// Protective MBR, primary header + entries, backup entries + header.
pub fn gpt(layout: &Layout, disk_guid: Uuid) -> Vec<Piece> {
    let sector = layout.sector;
    let last = layout.disk_sectors - 1;
    let entries = entry_array(layout);
    let entry_sectors = (entries.len() as u64).div_ceil(sector);
    let first_usable = 2 + entry_sectors;
    let last_usable = last - 1 - entry_sectors;
    let entries_crc = crc32fast::hash(&entries);
    let header = |my: u64, alt: u64, entries_lba: u64| {
        let mut h = vec![0u8; sector as usize];
        h[..8].copy_from_slice(GPT_SIGNATURE);
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.to_bytes_le());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&GPT_ENTRIES.to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_BYTES as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let mut pmbr = vec![0u8; sector as usize];
    mbr::write_entry(&mut pmbr, 0, &mbr::Partition::clamped(false, 0xEE, 1, last));
    // The protective entry's CHS start is 0/0/2 (the sector after the MBR), as UEFI says.
    pmbr[mbr::TABLE + 1..mbr::TABLE + 4].copy_from_slice(&[0x00, 0x02, 0x00]);
    mbr::write_signature(&mut pmbr);
    let mut primary = pmbr;
    primary.extend_from_slice(&header(1, last, 2));
    primary.extend_from_slice(&entries);
    let backup_entries_lba = last - entry_sectors;
    let mut backup = entries;
    backup.resize((entry_sectors * sector) as usize, 0);
    backup.extend_from_slice(&header(last, 1, backup_entries_lba));
    vec![
        Piece {
            offset: 0,
            bytes: primary,
        },
        Piece {
            offset: backup_entries_lba * sector,
            bytes: backup,
        },
    ]
}

/// The text form of the PARTUUID the kernel gives MBR partitions: `SSSSSSSS-NN`.
pub fn mbr_partuuid(signature: u32, number: u32) -> String {
    format!("{signature:08x}-{number:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::gpt::{parse_entries, GptHeader};
    use crate::disk::layout::{plan, BootMode, Label, Request};

    fn layout(label: Label, sector: u64) -> Layout {
        let r = Request {
            label,
            boot_mode: BootMode::Uefi,
            root_mb: Some(100),
            swap_mb: 16,
            ephemeral_mb: 0,
            configdrive: false,
        };
        plan(&r, 1 << 30, sector).unwrap()
    }

    #[test]
    fn gpt_round_trips_through_our_parser_on_512_and_4kn() {
        for sector in [512u64, 4096] {
            let l = layout(Label::Gpt, sector);
            let guid = Uuid::new_v4();
            let pieces = gpt(&l, guid);
            let mut disk = vec![0u8; 1 << 30];
            for p in &pieces {
                disk[p.offset as usize..p.offset as usize + p.bytes.len()]
                    .copy_from_slice(&p.bytes);
            }
            let s = sector as usize;
            let h = GptHeader::parse(&disk[s..2 * s]).expect("primary header");
            assert_eq!(h.alternate_lba, l.disk_sectors - 1);
            let entries = &disk[2 * s..2 * s + h.entries_bytes() as usize];
            assert_eq!(crc32fast::hash(entries), h.entries_crc);
            let parts = parse_entries(&h, entries);
            assert_eq!(parts.len(), 3);
            assert_eq!(parts[0].type_guid, Role::Esp.gpt_type());
            assert_eq!(parts[2].uuid, l.parts[2].uuid.to_string());
            assert_eq!(parts[2].name, "root");
            let last = (l.disk_sectors - 1) as usize;
            let b = GptHeader::parse(&disk[last * s..(last + 1) * s]).expect("backup header");
            assert_eq!((b.my_lba, b.alternate_lba), (l.disk_sectors - 1, 1));
            assert_eq!(b.disk_guid, guid.to_bytes_le());
            assert_eq!(disk[450], 0xEE);
        }
    }

    #[test]
    fn mbr_marks_root_active_in_bios_mode() {
        let l = layout(Label::Mbr, 512);
        let m = mbr(&l, 0xdeadbeef, true);
        let b = &m.bytes;
        assert_eq!(&b[510..], &[0x55, 0xAA]);
        assert_eq!(b[446 + 4], 0xEF);
        assert_eq!(b[462 + 4], 0x82);
        assert_eq!((b[478], b[478 + 4]), (0x80, 0x83));
        assert_eq!(
            u32::from_le_bytes([b[478 + 8], b[479 + 8], b[480 + 8], b[481 + 8]]) as u64,
            l.parts[2].first_lba
        );
        assert_eq!(mbr_partuuid(0xdeadbeef, 3), "deadbeef-03");
    }
}
