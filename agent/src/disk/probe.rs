//! Our own signature probe (instead of blkid/wipefs): which partition tables, filesystems,
//! RAID, LVM, LUKS and Ceph signatures sit at the start or end of a disk, and the shared
//! cluster filesystems IPA guards against erasing (GPFS, VMFS, GFS2) plus Ceph's.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bytes examined at each end of the disk.
pub const PROBE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    Gpt,
    Mbr,
    Ext,
    Xfs,
    Btrfs,
    Vfat,
    Iso9660,
    Swap,
    Luks,
    Lvm,
    MdRaid,
    CephBluestore,
    /// A GPT partition of one of Ceph's OSD types (ceph-disk: data, journal, block).
    CephOsdPartition,
    /// IBM Spectrum Scale (GPFS) partition type.
    Gpfs,
    /// VMware VMFS partition (GPT type, or MBR type 0xfb).
    Vmfs,
    /// Red Hat Global File System 2 superblock.
    Gfs2,
}

impl Signature {
    pub fn name(self) -> &'static str {
        match self {
            Signature::Gpt => "gpt",
            Signature::Mbr => "dos (MBR)",
            Signature::Ext => "ext2/3/4",
            Signature::Xfs => "xfs",
            Signature::Btrfs => "btrfs",
            Signature::Vfat => "vfat",
            Signature::Iso9660 => "iso9660",
            Signature::Swap => "swap",
            Signature::Luks => "crypto_LUKS",
            Signature::Lvm => "LVM2_member",
            Signature::MdRaid => "linux_raid_member",
            Signature::CephBluestore => "ceph_bluestore",
            Signature::CephOsdPartition => "Ceph OSD partition",
            Signature::Gpfs => "IBM GPFS partition",
            Signature::Vmfs => "VMware VMFS partition",
            Signature::Gfs2 => "Red Hat Global File System 2",
        }
    }

    /// Signatures of storage shared with other machines: never erased unless forced.
    pub fn is_shared_storage(self) -> bool {
        matches!(
            self,
            Signature::CephBluestore
                | Signature::CephOsdPartition
                | Signature::Gpfs
                | Signature::Vmfs
                | Signature::Gfs2
        )
    }
}

/// GPT partition type GUIDs of shared storage (as IPA's `_check_for_special_partitions_
/// filesystems`, plus Ceph's OSD types), in their on-disk (mixed-endian) byte order.
const SHARED_PARTITION_TYPES: &[(&str, Signature)] = &[
    ("37AFFC90-EF7D-4E96-91C3-2D7AE055B174", Signature::Gpfs),
    ("AA31E02A-400F-11DB-9590-000C2911D1B8", Signature::Vmfs),
    (
        "4FBD7E29-9D25-41B8-AFD0-062C0CEFF05D",
        Signature::CephOsdPartition,
    ),
    (
        "45B0969E-9B03-4F30-B4C6-B4B80CEFF106",
        Signature::CephOsdPartition,
    ),
    (
        "CAFECAFE-9B03-4F30-B4C6-B4B80CEFF106",
        Signature::CephOsdPartition,
    ),
];

/// A textual GUID in GPT's on-disk byte order (the first three fields little-endian).
pub fn guid_bytes(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut b = [0u8; 16];
    for (i, out) in b.iter_mut().enumerate() {
        *out = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Some(b)
}

/// Shared-storage partition types in the GPT entries (LBA 2 of 512- or 4096-byte
/// sectors, 128 entries) or the MBR (VMFS is type 0xfb).
fn shared_partition_types(head: &[u8]) -> Vec<Signature> {
    let mut out = vec![];
    for sector in [512usize, 4096] {
        if !at(head, sector, b"EFI PART") {
            continue;
        }
        let entries = head.get(2 * sector..).unwrap_or_default();
        for entry in entries.chunks_exact(128).take(128) {
            for (guid, sig) in SHARED_PARTITION_TYPES {
                if guid_bytes(guid).is_some_and(|g| entry[..16] == g) && !out.contains(sig) {
                    out.push(*sig);
                }
            }
        }
    }
    if at(head, 510, &[0x55, 0xAA]) && (0..4).any(|i| head.get(446 + 16 * i + 4) == Some(&0xfb)) {
        out.push(Signature::Vmfs);
    }
    out
}

fn at(b: &[u8], off: usize, sig: &[u8]) -> bool {
    b.len() >= off + sig.len() && &b[off..off + sig.len()] == sig
}

/// Signatures found in `head` (the disk's first bytes) and `tail` (its last bytes).
pub fn probe(head: &[u8], tail: &[u8]) -> Vec<Signature> {
    let mut out = vec![];
    if at(head, 512, b"EFI PART") || at(head, 4096, b"EFI PART") {
        out.push(Signature::Gpt);
    } else if at(head, 510, &[0x55, 0xAA]) && !at(head, 82, b"FAT") && !at(head, 54, b"FAT") {
        out.push(Signature::Mbr);
    }
    if at(head, 1024 + 56, &[0x53, 0xEF]) {
        out.push(Signature::Ext);
    }
    if at(head, 0, b"XFSB") {
        out.push(Signature::Xfs);
    }
    if at(head, 65536 + 64, b"_BHRfS_M") {
        out.push(Signature::Btrfs);
    }
    if (at(head, 82, b"FAT32") || at(head, 54, b"FAT1")) && at(head, 510, &[0x55, 0xAA]) {
        out.push(Signature::Vfat);
    }
    if at(head, 32769, b"CD001") {
        out.push(Signature::Iso9660);
    }
    if at(head, 4096 - 10, b"SWAPSPACE2") || at(head, 4096 - 10, b"SWAP-SPACE") {
        out.push(Signature::Swap);
    }
    if at(head, 0, b"LUKS\xba\xbe") {
        out.push(Signature::Luks);
    }
    if (0..4).any(|s| at(head, s * 512, b"LABELONE") && at(head, s * 512 + 24, b"LVM2")) {
        out.push(Signature::Lvm);
    }
    let md = 0xa92b_4efcu32.to_le_bytes();
    // md 1.1 at 0, 1.2 at 4 KiB, 1.0 8 KiB before the end (aligned), 0.90 64 KiB before it.
    let tail_md = (tail.len() >= 8192 && at(tail, tail.len() - 8192, &md))
        || (tail.len() >= 65536 && at(tail, tail.len() / 65536 * 65536 - 65536, &md));
    if at(head, 0, &md) || at(head, 4096, &md) || tail_md {
        out.push(Signature::MdRaid);
    }
    if at(head, 0, b"bluestore block device") {
        out.push(Signature::CephBluestore);
    }
    // GFS2: the superblock 64 KiB in, a metadata header with magic 0x01161970, type 1.
    if at(head, 65536, &0x0116_1970u32.to_be_bytes()) && at(head, 65540, &1u32.to_be_bytes()) {
        out.push(Signature::Gfs2);
    }
    for sig in shared_partition_types(head) {
        if !out.contains(&sig) {
            out.push(sig);
        }
    }
    if !out.contains(&Signature::Gpt)
        && tail.len() >= 512
        && at(tail, tail.len() - 512, b"EFI PART")
    {
        out.push(Signature::Gpt);
    }
    out
}

/// Probe a disk (or file) of `size` bytes.
pub fn probe_file(f: &File, size: u64) -> io::Result<Vec<Signature>> {
    let n = PROBE_BYTES.min(size) as usize;
    let mut head = vec![0u8; n];
    f.read_exact_at(&mut head, 0)?;
    let mut tail = vec![0u8; n];
    f.read_exact_at(&mut tail, size - n as u64)?;
    Ok(probe(&head, &tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 finding 9: the shared cluster filesystems IPA guards, and Ceph's OSDs.
    #[test]
    fn finds_shared_cluster_storage() {
        let tail = vec![0u8; 1 << 20];
        let gpt_with = |guid: &str, sector: usize| {
            let mut head = vec![0u8; 1 << 20];
            head[sector..sector + 8].copy_from_slice(b"EFI PART");
            // The third entry, as a partition need not be the first.
            let e = 2 * sector + 2 * 128;
            head[e..e + 16].copy_from_slice(&guid_bytes(guid).unwrap());
            head
        };
        let linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
        assert_eq!(probe(&gpt_with(linux, 512), &tail), vec![Signature::Gpt]);
        for (guid, sig) in SHARED_PARTITION_TYPES {
            for sector in [512, 4096] {
                let found = probe(&gpt_with(guid, sector), &tail);
                assert!(found.contains(sig), "{guid} at {sector}: {found:?}");
                assert!(sig.is_shared_storage());
            }
        }
        let mut mbr = vec![0u8; 1 << 20];
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        mbr[446 + 16 + 4] = 0xfb;
        assert!(probe(&mbr, &tail).contains(&Signature::Vmfs));
        mbr[446 + 16 + 4] = 0x83;
        assert!(!probe(&mbr, &tail).iter().any(|s| s.is_shared_storage()));
        let mut gfs2 = vec![0u8; 1 << 20];
        gfs2[65536..65540].copy_from_slice(&0x0116_1970u32.to_be_bytes());
        gfs2[65540..65544].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(probe(&gfs2, &tail), vec![Signature::Gfs2]);
        gfs2[65543] = 2; // another GFS2 metadata type: not a superblock
        assert!(probe(&gfs2, &tail).is_empty());
        // The mixed-endian layout, checked against a known GPT on-disk value.
        assert_eq!(
            guid_bytes("C12A7328-F81F-11D2-BA4B-00A0C93EC93B").unwrap(),
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
    }

    #[test]
    fn finds_each_signature() {
        let mut head = vec![0u8; 1 << 20];
        let tail = vec![0u8; 1 << 20];
        assert!(probe(&head, &tail).is_empty());
        head[512..520].copy_from_slice(b"EFI PART");
        head[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xEF]);
        head[0..22].copy_from_slice(b"bluestore block device");
        let s = probe(&head, &tail);
        assert_eq!(
            s,
            vec![Signature::Gpt, Signature::Ext, Signature::CephBluestore]
        );
        assert!(s.iter().any(|x| x.is_shared_storage()));
        let mut head = vec![0u8; 1 << 20];
        head[512..520].copy_from_slice(b"LABELONE");
        head[536..540].copy_from_slice(b"LVM2");
        head[4096..4100].copy_from_slice(&0xa92b_4efcu32.to_le_bytes());
        head[0..6].copy_from_slice(b"LUKS\xba\xbe");
        assert_eq!(
            probe(&head, &tail),
            vec![Signature::Luks, Signature::Lvm, Signature::MdRaid]
        );
        let mut tail = vec![0u8; 1 << 20];
        let n = tail.len();
        tail[n - 512..n - 504].copy_from_slice(b"EFI PART");
        assert_eq!(probe(&vec![0u8; 1 << 20], &tail), vec![Signature::Gpt]);
    }
}
