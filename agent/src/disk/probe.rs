//! Our own signature probe (instead of blkid/wipefs): which partition tables, filesystems,
//! RAID, LVM, LUKS and Ceph signatures sit at the start or end of a disk.

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
        }
    }

    /// Signatures of storage shared with other machines: never erased unless forced.
    pub fn is_shared_storage(self) -> bool {
        matches!(self, Signature::CephBluestore)
    }
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
