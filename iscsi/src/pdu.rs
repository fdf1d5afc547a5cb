//! iSCSI PDU codec (RFC 7143 §11): the 48-byte Basic Header Segment as a typed enum,
//! additional header segments, data segments with padding, optional CRC32C digests. No I/O.

use bytes::{BufMut, Bytes, BytesMut};

use crate::crc32c::crc32c;

pub const BHS_LEN: usize = 48;

/// Limits and digest settings that framing needs; both sides learn them at login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub header_digest: bool,
    pub data_digest: bool,
    /// Largest data segment we accept (our MaxRecvDataSegmentLength, or a login limit).
    pub max_recv_data: u32,
}

impl Default for Framing {
    fn default() -> Self {
        // Login PDUs: no digests, and RFC 7143 §6.1 lets text data reach 8192 bytes per PDU.
        Framing {
            header_digest: false,
            data_digest: false,
            max_recv_data: 8192,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PduError {
    #[error("PDU truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("unknown iSCSI opcode {0:#04x}")]
    UnknownOpcode(u8),
    #[error("data segment of {len} bytes exceeds the negotiated limit of {max} bytes")]
    DataTooLong { len: u32, max: u32 },
    #[error("header digest mismatch: PDU says {got:#010x}, computed {want:#010x}")]
    HeaderDigest { got: u32, want: u32 },
    #[error("data digest mismatch: PDU says {got:#010x}, computed {want:#010x}")]
    DataDigest { got: u32, want: u32 },
    #[error("AHS of {0} bytes is too large")]
    AhsTooLong(usize),
}

/// Opcodes (RFC 7143 §11.2.1.2).
pub mod op {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_CMD: u8 = 0x01;
    pub const TASK_MGMT_REQ: u8 = 0x02;
    pub const LOGIN_REQ: u8 = 0x03;
    pub const TEXT_REQ: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT_REQ: u8 = 0x06;
    pub const SNACK: u8 = 0x10;
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESP: u8 = 0x21;
    pub const TASK_MGMT_RESP: u8 = 0x22;
    pub const LOGIN_RESP: u8 = 0x23;
    pub const TEXT_RESP: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RESP: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const ASYNC: u8 = 0x32;
    pub const REJECT: u8 = 0x3f;
}

/// The fields every BHS shares; opcode-specific words live in [`Bhs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub bhs: Bhs,
    /// Immediate delivery bit (initiator PDUs).
    pub immediate: bool,
    pub ahs: Bytes,
    pub data: Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Nop {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    /// CmdSN (Out) or StatSN (In).
    pub sn: u32,
    /// ExpStatSN (Out) or ExpCmdSN (In).
    pub exp_sn: u32,
    pub max_cmd_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiCmd {
    pub final_: bool,
    pub read: bool,
    pub write: bool,
    pub attr: u8,
    pub lun: u64,
    pub itt: u32,
    pub edtl: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub cdb: [u8; 16],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScsiResp {
    pub bidi_overflow: bool,
    pub bidi_underflow: bool,
    pub overflow: bool,
    pub underflow: bool,
    pub response: u8,
    pub status: u8,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub exp_data_sn: u32,
    pub residual: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskMgmt {
    pub function: u8,
    pub lun: u64,
    pub itt: u32,
    pub ref_itt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub ref_cmd_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskMgmtResp {
    pub response: u8,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Login {
    pub transit: bool,
    pub cont: bool,
    pub csg: u8,
    pub nsg: u8,
    pub version_max: u8,
    /// Version-min (request) or Version-active (response).
    pub version: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    /// CID (request only).
    pub cid: u16,
    /// CmdSN (request) or StatSN (response).
    pub sn: u32,
    /// ExpStatSN (request) or ExpCmdSN (response).
    pub exp_sn: u32,
    pub max_cmd_sn: u32,
    pub status_class: u8,
    pub status_detail: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Text {
    pub final_: bool,
    pub cont: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    /// CmdSN (request) or StatSN (response).
    pub sn: u32,
    /// ExpStatSN (request) or ExpCmdSN (response).
    pub exp_sn: u32,
    pub max_cmd_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataOut {
    pub final_: bool,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub exp_stat_sn: u32,
    pub data_sn: u32,
    pub offset: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataIn {
    pub final_: bool,
    pub ack: bool,
    pub overflow: bool,
    pub underflow: bool,
    /// Status is carried in this PDU (S bit); `stat_sn` and `status` are then valid.
    pub has_status: bool,
    pub status: u8,
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub data_sn: u32,
    pub offset: u32,
    pub residual: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct R2t {
    pub lun: u64,
    pub itt: u32,
    pub ttt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub r2t_sn: u32,
    pub offset: u32,
    pub length: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Logout {
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogoutResp {
    pub response: u8,
    pub itt: u32,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub time2wait: u16,
    pub time2retain: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reject {
    pub reason: u8,
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub data_sn: u32,
}

/// A PDU opcode we pass through without interpreting (SNACK, async messages, vendor codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw {
    pub opcode: u8,
    pub bytes: [u8; BHS_LEN],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bhs {
    NopOut(Nop),
    NopIn(Nop),
    ScsiCmd(ScsiCmd),
    ScsiResp(ScsiResp),
    TaskMgmt(TaskMgmt),
    TaskMgmtResp(TaskMgmtResp),
    LoginReq(Login),
    LoginResp(Login),
    TextReq(Text),
    TextResp(Text),
    DataOut(DataOut),
    DataIn(DataIn),
    LogoutReq(Logout),
    LogoutResp(LogoutResp),
    R2t(R2t),
    Reject(Reject),
    Other(Raw),
}

#[path = "pdu_bhs.rs"]
mod bhs;

/// Lengths a BHS announces, needed to know how many more bytes make up the PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lengths {
    pub ahs: usize,
    pub data: u32,
}

impl Lengths {
    /// Bytes that follow the BHS: AHS, header digest, padded data, data digest.
    pub fn rest(&self, f: &Framing) -> usize {
        let mut n = self.ahs + if f.header_digest { 4 } else { 0 };
        if self.data > 0 {
            n += pad4(self.data as usize) + if f.data_digest { 4 } else { 0 };
        }
        n
    }
}

pub fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Reads the AHS and data lengths from a BHS and checks them against the limits.
pub fn lengths(bhs: &[u8; BHS_LEN], f: &Framing) -> Result<Lengths, PduError> {
    let ahs = bhs[4] as usize * 4;
    let data = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]);
    if data > f.max_recv_data {
        return Err(PduError::DataTooLong {
            len: data,
            max: f.max_recv_data,
        });
    }
    Ok(Lengths { ahs, data })
}

/// The BHS of a PDU with no AHS and `data_len` bytes of data, for callers that write the
/// data segment themselves (digests and padding included).
pub fn header_for(bhs: &Bhs, data_len: usize) -> [u8; BHS_LEN] {
    let mut b = [0u8; BHS_LEN];
    bhs.write(&mut b);
    let dl = (data_len as u32).to_be_bytes();
    b[5..8].copy_from_slice(&dl[1..4]);
    b
}

impl Pdu {
    pub fn new(bhs: Bhs) -> Pdu {
        Pdu {
            bhs,
            immediate: false,
            ahs: Bytes::new(),
            data: Bytes::new(),
        }
    }

    pub fn with_data(bhs: Bhs, data: impl Into<Bytes>) -> Pdu {
        Pdu {
            data: data.into(),
            ..Pdu::new(bhs)
        }
    }

    pub fn immediate(mut self) -> Pdu {
        self.immediate = true;
        self
    }

    /// The 48-byte BHS with lengths filled in.
    pub fn header(&self) -> Result<[u8; BHS_LEN], PduError> {
        if self.ahs.len() > 255 * 4 || !self.ahs.len().is_multiple_of(4) {
            return Err(PduError::AhsTooLong(self.ahs.len()));
        }
        if self.data.len() > 0x00ff_ffff {
            return Err(PduError::DataTooLong {
                len: self.data.len() as u32,
                max: 0x00ff_ffff,
            });
        }
        let mut b = [0u8; BHS_LEN];
        self.bhs.write(&mut b);
        if self.immediate {
            b[0] |= 0x40;
        }
        b[4] = (self.ahs.len() / 4) as u8;
        let dl = (self.data.len() as u32).to_be_bytes();
        b[5..8].copy_from_slice(&dl[1..4]);
        Ok(b)
    }

    /// Appends the whole wire form to `out`.
    pub fn encode(&self, f: &Framing, out: &mut BytesMut) -> Result<(), PduError> {
        let h = self.header()?;
        out.reserve(BHS_LEN + self.ahs.len() + self.data.len() + 12);
        let start = out.len();
        out.put_slice(&h);
        out.put_slice(&self.ahs);
        if f.header_digest {
            let d = crc32c(&out[start..]);
            out.put_u32_le(d);
        }
        if !self.data.is_empty() {
            out.put_slice(&self.data);
            let pad = pad4(self.data.len()) - self.data.len();
            out.put_bytes(0, pad);
            if f.data_digest {
                let d = crc32c(&out[out.len() - self.data.len() - pad..]);
                out.put_u32_le(d);
            }
        }
        Ok(())
    }

    /// Parses one complete PDU from `buf` (BHS followed by `lengths(..).rest(..)` bytes).
    pub fn decode(buf: &[u8], f: &Framing) -> Result<Pdu, PduError> {
        let need = BHS_LEN;
        if buf.len() < need {
            return Err(PduError::Truncated {
                need,
                have: buf.len(),
            });
        }
        let bhs: [u8; BHS_LEN] = buf[..BHS_LEN].try_into().expect("48 bytes");
        let l = lengths(&bhs, f)?;
        let need = BHS_LEN + l.rest(f);
        if buf.len() < need {
            return Err(PduError::Truncated {
                need,
                have: buf.len(),
            });
        }
        Pdu::decode_parts(&bhs, Bytes::copy_from_slice(&buf[BHS_LEN..need]), f)
    }

    /// Parses a PDU from its BHS and the bytes after it (exactly `lengths(..).rest(..)`).
    pub fn decode_parts(bhs: &[u8; BHS_LEN], rest: Bytes, f: &Framing) -> Result<Pdu, PduError> {
        let l = lengths(bhs, f)?;
        let need = l.rest(f);
        if rest.len() < need {
            return Err(PduError::Truncated {
                need: BHS_LEN + need,
                have: BHS_LEN + rest.len(),
            });
        }
        let parsed = Bhs::read(bhs)?;
        let ahs = rest.slice(..l.ahs);
        let mut at = l.ahs;
        if f.header_digest {
            let got = u32::from_le_bytes(rest[at..at + 4].try_into().expect("4 bytes"));
            let mut c = crate::crc32c::Crc32c::new();
            c.update(bhs);
            c.update(&rest[..l.ahs]);
            let want = c.finish();
            if got != want {
                return Err(PduError::HeaderDigest { got, want });
            }
            at += 4;
        }
        let dl = l.data as usize;
        let data = rest.slice(at..at + dl);
        if dl > 0 && f.data_digest {
            let padded = pad4(dl);
            let got = u32::from_le_bytes(rest[at + padded..at + padded + 4].try_into().expect("4"));
            let want = crc32c(&rest[at..at + padded]);
            if got != want {
                return Err(PduError::DataDigest { got, want });
            }
        }
        Ok(Pdu {
            bhs: parsed,
            immediate: bhs[0] & 0x40 != 0,
            ahs,
            data,
        })
    }
}

#[cfg(test)]
#[path = "pdu_tests.rs"]
mod tests;
