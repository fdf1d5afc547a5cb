//! MBR partition tables: a pure codec for the four primary entries of sector 0. The
//! agent's partition-table writer, the config drive's added partition and ramdisk-build's
//! test disk all encode entries here.

/// One primary partition, in 512-byte sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub bootable: bool,
    pub kind: u8,
    pub start: u32,
    pub sectors: u32,
}

/// FAT16 with LBA addressing.
pub const FAT16_LBA: u8 = 0x0e;
/// An EFI system partition (FAT inside).
pub const EFI_SYSTEM: u8 = 0xef;

/// Byte offset of the four 16-byte entries in sector 0.
pub const TABLE: usize = 446;

impl Partition {
    /// A partition given in 64-bit sectors, each clamped to the 32 bits an MBR holds.
    pub fn clamped(bootable: bool, kind: u8, start: u64, sectors: u64) -> Partition {
        let clamp = |v: u64| v.min(u64::from(u32::MAX)) as u32;
        Partition {
            bootable,
            kind,
            start: clamp(start),
            sectors: clamp(sectors),
        }
    }

    /// The 16-byte entry. CHS fields hold the "use LBA" filler, as tools do for disks past
    /// 8 GiB (nothing modern reads them).
    pub fn encode(&self) -> [u8; 16] {
        let mut e = [0u8; 16];
        e[0] = if self.bootable { 0x80 } else { 0 };
        e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
        e[4] = self.kind;
        e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
        e[8..12].copy_from_slice(&self.start.to_le_bytes());
        e[12..16].copy_from_slice(&self.sectors.to_le_bytes());
        e
    }
}

/// Writes entry `slot` (0..4) of `sector0` (at least 512 bytes).
pub fn write_entry(sector0: &mut [u8], slot: usize, p: &Partition) {
    sector0[TABLE + 16 * slot..TABLE + 16 * (slot + 1)].copy_from_slice(&p.encode());
}

/// Writes the 0x55AA signature at the end of `sector0`'s first 512 bytes.
pub fn write_signature(sector0: &mut [u8]) {
    sector0[510] = 0x55;
    sector0[511] = 0xaa;
}

/// Writes `sector0[446..512]`: up to four entries (None = empty) and the 0x55AA signature.
pub fn write_table(sector0: &mut [u8; 512], parts: &[Option<Partition>; 4]) {
    for (i, p) in parts.iter().enumerate() {
        match p {
            Some(p) => write_entry(sector0, i, p),
            None => sector0[TABLE + 16 * i..TABLE + 16 * (i + 1)].fill(0),
        }
    }
    write_signature(sector0);
}

/// Reads the four entries; None when sector 0 has no MBR signature.
pub fn read_table(sector0: &[u8; 512]) -> Option<[Option<Partition>; 4]> {
    if sector0[510..512] != [0x55, 0xaa] {
        return None;
    }
    let mut parts = [None; 4];
    for (i, slot) in parts.iter_mut().enumerate() {
        let e = &sector0[TABLE + 16 * i..TABLE + 16 * (i + 1)];
        let kind = e[4];
        let sectors = u32::from_le_bytes(e[12..16].try_into().expect("4 bytes"));
        if kind != 0 && sectors != 0 {
            *slot = Some(Partition {
                bootable: e[0] == 0x80,
                kind,
                start: u32::from_le_bytes(e[8..12].try_into().expect("4 bytes")),
                sectors,
            });
        }
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_boot_code() {
        let mut s = [0x90u8; 512];
        let p = Partition {
            bootable: true,
            kind: FAT16_LBA,
            start: 2048,
            sectors: 63488,
        };
        write_table(&mut s, &[Some(p), None, None, None]);
        assert_eq!(s[0], 0x90);
        assert_eq!(s[446], 0x80);
        assert_eq!(&s[454..458], &2048u32.to_le_bytes());
        assert_eq!(read_table(&s), Some([Some(p), None, None, None]));
    }

    #[test]
    fn clamps_to_32_bits() {
        let p = Partition::clamped(false, 0xee, 1, 1 << 40);
        assert_eq!(p.sectors, u32::MAX);
        assert_eq!(&p.encode()[12..16], &[0xff; 4]);
    }

    #[test]
    fn no_signature_means_no_table() {
        assert_eq!(read_table(&[0u8; 512]), None);
    }
}
