//! SCSI status codes and fixed-format sense data (SPC-4 §4.5.3). No I/O.

pub const GOOD: u8 = 0x00;
pub const CHECK_CONDITION: u8 = 0x02;

pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const NOT_READY: u8 = 0x2;
    pub const MEDIUM_ERROR: u8 = 0x3;
    pub const HARDWARE_ERROR: u8 = 0x4;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
    pub const ABORTED_COMMAND: u8 = 0xb;
    pub const MISCOMPARE: u8 = 0xe;
}

/// A sense key with its additional sense code and qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
    /// INFORMATION field (e.g. the offset of a miscompare), when valid.
    pub info: Option<u32>,
}

impl Sense {
    pub const fn new(key: u8, asc: u8, ascq: u8) -> Sense {
        Sense {
            key,
            asc,
            ascq,
            info: None,
        }
    }

    pub const INVALID_OPCODE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x20, 0x00);
    pub const LBA_OUT_OF_RANGE: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x21, 0x00);
    pub const INVALID_FIELD_IN_CDB: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x24, 0x00);
    pub const INVALID_FIELD_IN_PARAM: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x26, 0x00);
    pub const PARAM_LIST_LENGTH: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x1a, 0x00);
    pub const INVALID_FIELD_IN_IU: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x0e, 0x03);
    pub const LUN_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x25, 0x00);
    pub const SAVING_NOT_SUPPORTED: Sense = Sense::new(key::ILLEGAL_REQUEST, 0x39, 0x00);
    pub const WRITE_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x0c, 0x00);
    pub const READ_ERROR: Sense = Sense::new(key::MEDIUM_ERROR, 0x11, 0x00);
    pub const MISCOMPARE_VERIFY: Sense = Sense::new(key::MISCOMPARE, 0x1d, 0x00);
    pub const RESET_OCCURRED: Sense = Sense::new(key::UNIT_ATTENTION, 0x29, 0x00);

    pub fn with_info(mut self, info: u32) -> Sense {
        self.info = Some(info);
        self
    }

    /// 18-byte fixed-format sense data, current error.
    pub fn fixed(&self) -> [u8; 18] {
        let mut b = [0u8; 18];
        b[0] = 0x70;
        if let Some(i) = self.info {
            b[0] |= 0x80;
            b[3..7].copy_from_slice(&i.to_be_bytes());
        }
        b[2] = self.key & 0x0f;
        b[7] = 10;
        b[12] = self.asc;
        b[13] = self.ascq;
        b
    }

    /// The data segment of a SCSI Response carrying this sense (RFC 7143 §11.4.7.2).
    pub fn response_data(&self) -> Vec<u8> {
        let f = self.fixed();
        let mut v = Vec::with_capacity(2 + f.len());
        v.extend_from_slice(&(f.len() as u16).to_be_bytes());
        v.extend_from_slice(&f);
        v
    }

    /// Parses the sense in a SCSI Response data segment.
    pub fn from_response_data(d: &[u8]) -> Option<Sense> {
        if d.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([d[0], d[1]]) as usize;
        let s = d.get(2..2 + len)?;
        match s.first()? & 0x7f {
            0x70 | 0x71 if s.len() >= 14 => Some(Sense::new(s[2] & 0x0f, s[12], s[13])),
            0x72 | 0x73 if s.len() >= 4 => Some(Sense::new(s[1] & 0x0f, s[2], s[3])),
            _ => None,
        }
    }
}

impl std::fmt::Display for Sense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sense key {:#x}, ASC/ASCQ {:#04x}/{:#04x}",
            self.key, self.asc, self.ascq
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sense_bytes() {
        let s = Sense::LBA_OUT_OF_RANGE.fixed();
        assert_eq!(
            s,
            [0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0, 0, 0, 0, 0]
        );
        let d = Sense::MISCOMPARE_VERIFY.with_info(0x1234).response_data();
        assert_eq!(&d[..2], &[0, 18]);
        assert_eq!(d[2], 0xf0);
        assert_eq!(&d[5..9], &[0, 0, 0x12, 0x34]);
        assert_eq!(
            Sense::from_response_data(&d),
            Some(Sense::new(0xe, 0x1d, 0))
        );
        assert_eq!(Sense::from_response_data(&[0, 30, 0x70]), None);
    }
}
