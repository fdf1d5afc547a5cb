//! MBR partition tables: a pure codec for the four primary entries of sector 0.

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

const TABLE: usize = 446;

/// Writes `sector0[446..512]`: up to four entries (None = empty) and the 0x55AA signature.
/// CHS fields hold the "use LBA" filler, as tools do for disks past 8 GiB.
pub fn write_table(sector0: &mut [u8; 512], parts: &[Option<Partition>; 4]) {
    for (i, p) in parts.iter().enumerate() {
        let e = &mut sector0[TABLE + 16 * i..TABLE + 16 * (i + 1)];
        e.fill(0);
        if let Some(p) = p {
            e[0] = if p.bootable { 0x80 } else { 0 };
            e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
            e[4] = p.kind;
            e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
            e[8..12].copy_from_slice(&p.start.to_le_bytes());
            e[12..16].copy_from_slice(&p.sectors.to_le_bytes());
        }
    }
    sector0[510] = 0x55;
    sector0[511] = 0xaa;
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
    fn no_signature_means_no_table() {
        assert_eq!(read_table(&[0u8; 512]), None);
    }
}
