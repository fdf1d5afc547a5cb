//! Data-In payloads the LUN generates: INQUIRY (standard and VPD), READ CAPACITY, MODE SENSE,
//! REPORT LUNS (SPC-4, SBC-3). No I/O.

use super::sense::Sense;

/// What the pages describe about the LUN.
#[derive(Debug, Clone)]
pub struct Identity {
    pub blocks: u64,
    pub block_size: u32,
    /// Unit serial number (VPD 0x80), printable ASCII.
    pub serial: String,
    /// The target's iSCSI name, for the SCSI name string designator.
    pub target_name: String,
}

/// Largest READ/WRITE transfer, in blocks, that a single command may ask for.
pub const MAX_TRANSFER_BLOCKS: u32 = 0x10000;
pub const MAX_UNMAP_BLOCKS: u32 = 0x0010_0000;
pub const MAX_UNMAP_DESCRIPTORS: u32 = 256;
pub const MAX_COMPARE_WRITE_BLOCKS: u8 = 255;
pub const MAX_WRITE_SAME_BLOCKS: u64 = 0x0100_0000;

fn pad(s: &str, n: usize) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().take(n).collect();
    v.resize(n, b' ');
    v
}

pub fn standard_inquiry() -> Vec<u8> {
    let mut b = vec![0u8; 66];
    b[0] = 0x00; // connected, direct-access block device
    b[2] = 0x06; // SPC-4
    b[3] = 0x12; // HISUP, response data format 2
    b[4] = (b.len() - 5) as u8;
    b[7] = 0x02; // CMDQUE
    b[8..16].copy_from_slice(&pad("FERRITE", 8));
    b[16..32].copy_from_slice(&pad("ferrite-iscsi", 16));
    b[32..36].copy_from_slice(&pad("0001", 4));
    // Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3.
    for (i, d) in [0x00a0u16, 0x0960, 0x0460, 0x04c0].iter().enumerate() {
        b[58 + 2 * i..60 + 2 * i].copy_from_slice(&d.to_be_bytes());
    }
    b
}

pub const VPD_PAGES: [u8; 6] = [0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2];

pub fn vpd(page: u8, id: &Identity) -> Result<Vec<u8>, Sense> {
    let mut b = vec![0u8, page, 0, 0];
    match page {
        0x00 => b.extend_from_slice(&VPD_PAGES),
        0x80 => b.extend_from_slice(id.serial.as_bytes()),
        0x83 => {
            // T10 vendor ID designator: vendor + serial.
            let mut t10 = pad("FERRITE", 8);
            t10.extend_from_slice(id.serial.as_bytes());
            b.extend_from_slice(&[0x02, 0x01, 0x00, t10.len() as u8]);
            b.extend_from_slice(&t10);
            // NAA IEEE Registered Extended-like designator derived from the serial (locally
            // assigned; lets hosts build stable /dev/disk/by-id names).
            let h = fnv64(id.serial.as_bytes());
            let mut naa = [0u8; 8];
            naa.copy_from_slice(&h.to_be_bytes());
            naa[0] = 0x60 | (naa[0] & 0x0f);
            b.extend_from_slice(&[0x01, 0x03, 0x00, 0x08]);
            b.extend_from_slice(&naa);
            // SCSI name string designator with the target name (target port association).
            let mut name = id.target_name.clone().into_bytes();
            name.push(0);
            name.resize(name.len().div_ceil(4) * 4, 0);
            b.extend_from_slice(&[0x53, 0x98, 0x00, name.len() as u8]);
            b.extend_from_slice(&name);
        }
        0xb0 => {
            let mut p = [0u8; 0x3c];
            p[1] = MAX_COMPARE_WRITE_BLOCKS;
            p[4..8].copy_from_slice(&MAX_TRANSFER_BLOCKS.to_be_bytes());
            p[8..12].copy_from_slice(&(256u32).to_be_bytes()); // optimal: 128 KiB
            p[16..20].copy_from_slice(&MAX_UNMAP_BLOCKS.to_be_bytes());
            p[20..24].copy_from_slice(&MAX_UNMAP_DESCRIPTORS.to_be_bytes());
            p[24..28].copy_from_slice(&8u32.to_be_bytes()); // 4 KiB unmap granularity
            p[28..32].copy_from_slice(&0x8000_0000u32.to_be_bytes()); // UGAVALID, alignment 0
            p[32..40].copy_from_slice(&MAX_WRITE_SAME_BLOCKS.to_be_bytes());
            b.extend_from_slice(&p);
        }
        0xb1 => {
            let mut p = [0u8; 0x3c];
            p[1] = 0x01; // non-rotating medium
            b.extend_from_slice(&p);
        }
        0xb2 => {
            // LBPU, LBPWS, LBPWS10, LBPRZ; thin provisioned.
            b.extend_from_slice(&[0x00, 0xe4, 0x02, 0x00]);
        }
        _ => return Err(Sense::INVALID_FIELD_IN_CDB),
    }
    let len = (b.len() - 4) as u16;
    b[2..4].copy_from_slice(&len.to_be_bytes());
    Ok(b)
}

fn fnv64(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn read_capacity10(id: &Identity) -> Vec<u8> {
    let last = (id.blocks - 1).min(0xffff_ffff) as u32;
    let mut b = last.to_be_bytes().to_vec();
    b.extend_from_slice(&id.block_size.to_be_bytes());
    b
}

pub fn read_capacity16(id: &Identity) -> Vec<u8> {
    let mut b = vec![0u8; 32];
    b[0..8].copy_from_slice(&(id.blocks - 1).to_be_bytes());
    b[8..12].copy_from_slice(&id.block_size.to_be_bytes());
    b[14] = 0xc0; // LBPME, LBPRZ
    b
}

pub fn report_luns() -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[3] = 8; // one LUN, number 0
    b
}

fn mode_pages(page: u8, changeable: bool) -> Result<Vec<u8>, Sense> {
    let caching = || {
        let mut p = vec![0u8; 20];
        p[0] = 0x08;
        p[1] = 0x12;
        if !changeable {
            p[2] = 0x04; // WCE: writes land in the page cache until SYNCHRONIZE CACHE
        }
        p
    };
    let control = || {
        let mut p = vec![0u8; 12];
        p[0] = 0x0a;
        p[1] = 0x0a;
        if !changeable {
            p[3] = 0x10; // unrestricted reordering allowed
            p[8] = 0xff; // busy timeout period
            p[9] = 0xff;
        }
        p
    };
    let exceptions = || {
        let mut p = vec![0u8; 12];
        p[0] = 0x1c;
        p[1] = 0x0a;
        p
    };
    Ok(match page {
        0x08 => caching(),
        0x0a => control(),
        0x1c => exceptions(),
        0x3f => [caching(), control(), exceptions()].concat(),
        _ => return Err(Sense::INVALID_FIELD_IN_CDB),
    })
}

/// MODE SENSE (6 or 10) data for `cdb`, before allocation-length truncation.
pub fn mode_sense(cdb: &[u8], ten: bool, id: &Identity) -> Result<Vec<u8>, Sense> {
    let dbd = cdb[1] & 0x08 != 0;
    let pc = cdb[2] >> 6;
    let page = cdb[2] & 0x3f;
    let subpage = cdb[3];
    if pc == 3 {
        return Err(Sense::SAVING_NOT_SUPPORTED);
    }
    if subpage != 0 && subpage != 0xff {
        return Err(Sense::INVALID_FIELD_IN_CDB);
    }
    let pages = mode_pages(page, pc == 1)?;
    let mut bd = Vec::new();
    if !dbd {
        bd = vec![0u8; 8];
        bd[0..4].copy_from_slice(&(id.blocks.min(0xffff_ffff) as u32).to_be_bytes());
        bd[5..8].copy_from_slice(&id.block_size.to_be_bytes()[1..4]);
    }
    let dev_specific = 0x10; // DPOFUA
    let mut out = if ten {
        let total = 8 + bd.len() + pages.len();
        let mut h = vec![0u8; 8];
        h[0..2].copy_from_slice(&((total - 2) as u16).to_be_bytes());
        h[3] = dev_specific;
        h[6..8].copy_from_slice(&(bd.len() as u16).to_be_bytes());
        h
    } else {
        let total = 4 + bd.len() + pages.len();
        vec![(total - 1).min(255) as u8, 0, dev_specific, bd.len() as u8]
    };
    out.extend_from_slice(&bd);
    out.extend_from_slice(&pages);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            blocks: 2048,
            block_size: 512,
            serial: "abc123".into(),
            target_name: "iqn.2026-01.test:t".into(),
        }
    }

    #[test]
    fn capacity_and_luns() {
        assert_eq!(read_capacity10(&id()), vec![0, 0, 7, 0xff, 0, 0, 2, 0]);
        let c = read_capacity16(&id());
        assert_eq!(&c[..12], &[0, 0, 0, 0, 0, 0, 7, 0xff, 0, 0, 2, 0]);
        assert_eq!(c[14], 0xc0);
        assert_eq!(
            report_luns(),
            vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn inquiry_pages() {
        let s = standard_inquiry();
        assert_eq!(s[4] as usize + 5, s.len());
        assert_eq!(&s[8..15], b"FERRITE");
        assert_eq!(
            vpd(0, &id()).unwrap(),
            vec![0, 0, 0, 6, 0, 0x80, 0x83, 0xb0, 0xb1, 0xb2]
        );
        assert_eq!(vpd(0x80, &id()).unwrap(), b"\0\x80\0\x06abc123".to_vec());
        let p83 = vpd(0x83, &id()).unwrap();
        assert_eq!(u16::from_be_bytes([p83[2], p83[3]]) as usize, p83.len() - 4);
        assert_eq!(vpd(0xb0, &id()).unwrap().len(), 0x40);
        assert_eq!(vpd(0x42, &id()), Err(Sense::INVALID_FIELD_IN_CDB));
    }

    #[test]
    fn mode_sense_headers() {
        let m = mode_sense(&[0x1a, 0, 0x3f, 0, 255, 0], false, &id()).unwrap();
        assert_eq!(m[0] as usize + 1, m.len());
        assert_eq!(m[3], 8);
        assert_eq!(m.len(), 4 + 8 + 20 + 12 + 12);
        let m10 = mode_sense(&[0x5a, 0x08, 0x0a, 0, 0, 0, 0, 1, 0, 0], true, &id()).unwrap();
        assert_eq!(m10.len(), 8 + 12);
        assert_eq!(u16::from_be_bytes([m10[0], m10[1]]) as usize, m10.len() - 2);
        assert_eq!(
            mode_sense(&[0x1a, 0, 0xc8, 0, 255, 0], false, &id()),
            Err(Sense::SAVING_NOT_SUPPORTED)
        );
        assert_eq!(
            mode_sense(&[0x1a, 0, 0x01, 0, 255, 0], false, &id()),
            Err(Sense::INVALID_FIELD_IN_CDB)
        );
    }
}
