//! Byte layout of each typed Basic Header Segment (RFC 7143 §11): encode and decode.

use super::*;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
fn bit(b: u8, mask: u8) -> bool {
    b & mask != 0
}
fn flag(on: bool, mask: u8) -> u8 {
    if on {
        mask
    } else {
        0
    }
}

impl Bhs {
    pub fn opcode(&self) -> u8 {
        match self {
            Bhs::NopOut(_) => op::NOP_OUT,
            Bhs::NopIn(_) => op::NOP_IN,
            Bhs::ScsiCmd(_) => op::SCSI_CMD,
            Bhs::ScsiResp(_) => op::SCSI_RESP,
            Bhs::TaskMgmt(_) => op::TASK_MGMT_REQ,
            Bhs::TaskMgmtResp(_) => op::TASK_MGMT_RESP,
            Bhs::LoginReq(_) => op::LOGIN_REQ,
            Bhs::LoginResp(_) => op::LOGIN_RESP,
            Bhs::TextReq(_) => op::TEXT_REQ,
            Bhs::TextResp(_) => op::TEXT_RESP,
            Bhs::DataOut(_) => op::DATA_OUT,
            Bhs::DataIn(_) => op::DATA_IN,
            Bhs::LogoutReq(_) => op::LOGOUT_REQ,
            Bhs::LogoutResp(_) => op::LOGOUT_RESP,
            Bhs::R2t(_) => op::R2T,
            Bhs::Reject(_) => op::REJECT,
            Bhs::Other(r) => r.opcode,
        }
    }

    /// Initiator Task Tag, where the PDU has one (0xffffffff otherwise).
    pub fn itt(&self) -> u32 {
        match self {
            Bhs::NopOut(x) | Bhs::NopIn(x) => x.itt,
            Bhs::ScsiCmd(x) => x.itt,
            Bhs::ScsiResp(x) => x.itt,
            Bhs::TaskMgmt(x) => x.itt,
            Bhs::TaskMgmtResp(x) => x.itt,
            Bhs::LoginReq(x) | Bhs::LoginResp(x) => x.itt,
            Bhs::TextReq(x) | Bhs::TextResp(x) => x.itt,
            Bhs::DataOut(x) => x.itt,
            Bhs::DataIn(x) => x.itt,
            Bhs::LogoutReq(x) => x.itt,
            Bhs::LogoutResp(x) => x.itt,
            Bhs::R2t(x) => x.itt,
            Bhs::Reject(_) => 0xffff_ffff,
            Bhs::Other(r) => u32_at(&r.bytes, 16),
        }
    }

    /// Writes the opcode-specific fields; lengths are filled in by [`Pdu::encode`].
    pub(super) fn write(&self, b: &mut [u8; BHS_LEN]) {
        b[0] = self.opcode();
        match *self {
            Bhs::NopOut(n) | Bhs::NopIn(n) => {
                b[1] = 0x80;
                put64(b, 8, n.lun);
                put32(b, 16, n.itt);
                put32(b, 20, n.ttt);
                put32(b, 24, n.sn);
                put32(b, 28, n.exp_sn);
                if matches!(self, Bhs::NopIn(_)) {
                    put32(b, 32, n.max_cmd_sn);
                }
            }
            Bhs::ScsiCmd(c) => {
                b[1] =
                    flag(c.final_, 0x80) | flag(c.read, 0x40) | flag(c.write, 0x20) | (c.attr & 7);
                put64(b, 8, c.lun);
                put32(b, 16, c.itt);
                put32(b, 20, c.edtl);
                put32(b, 24, c.cmd_sn);
                put32(b, 28, c.exp_stat_sn);
                b[32..48].copy_from_slice(&c.cdb);
            }
            Bhs::ScsiResp(r) => {
                b[1] = 0x80
                    | flag(r.bidi_overflow, 0x10)
                    | flag(r.bidi_underflow, 0x08)
                    | flag(r.overflow, 0x04)
                    | flag(r.underflow, 0x02);
                b[2] = r.response;
                b[3] = r.status;
                put32(b, 16, r.itt);
                put32(b, 24, r.stat_sn);
                put32(b, 28, r.exp_cmd_sn);
                put32(b, 32, r.max_cmd_sn);
                put32(b, 36, r.exp_data_sn);
                put32(b, 44, r.residual);
            }
            Bhs::TaskMgmt(t) => {
                b[1] = 0x80 | (t.function & 0x7f);
                put64(b, 8, t.lun);
                put32(b, 16, t.itt);
                put32(b, 20, t.ref_itt);
                put32(b, 24, t.cmd_sn);
                put32(b, 28, t.exp_stat_sn);
                put32(b, 32, t.ref_cmd_sn);
            }
            Bhs::TaskMgmtResp(t) => {
                b[1] = 0x80;
                b[2] = t.response;
                put32(b, 16, t.itt);
                put32(b, 24, t.stat_sn);
                put32(b, 28, t.exp_cmd_sn);
                put32(b, 32, t.max_cmd_sn);
            }
            Bhs::LoginReq(l) | Bhs::LoginResp(l) => {
                b[0] |= if matches!(self, Bhs::LoginReq(_)) {
                    0x40
                } else {
                    0
                };
                b[1] =
                    flag(l.transit, 0x80) | flag(l.cont, 0x40) | ((l.csg & 3) << 2) | (l.nsg & 3);
                b[2] = l.version_max;
                b[3] = l.version;
                b[8..14].copy_from_slice(&l.isid);
                b[14..16].copy_from_slice(&l.tsih.to_be_bytes());
                put32(b, 16, l.itt);
                b[20..22].copy_from_slice(&l.cid.to_be_bytes());
                put32(b, 24, l.sn);
                put32(b, 28, l.exp_sn);
                if matches!(self, Bhs::LoginResp(_)) {
                    put32(b, 32, l.max_cmd_sn);
                    b[36] = l.status_class;
                    b[37] = l.status_detail;
                }
            }
            Bhs::TextReq(t) | Bhs::TextResp(t) => {
                b[1] = flag(t.final_, 0x80) | flag(t.cont, 0x40);
                put64(b, 8, t.lun);
                put32(b, 16, t.itt);
                put32(b, 20, t.ttt);
                put32(b, 24, t.sn);
                put32(b, 28, t.exp_sn);
                if matches!(self, Bhs::TextResp(_)) {
                    put32(b, 32, t.max_cmd_sn);
                }
            }
            Bhs::DataOut(d) => {
                b[1] = flag(d.final_, 0x80);
                put64(b, 8, d.lun);
                put32(b, 16, d.itt);
                put32(b, 20, d.ttt);
                put32(b, 28, d.exp_stat_sn);
                put32(b, 36, d.data_sn);
                put32(b, 40, d.offset);
            }
            Bhs::DataIn(d) => {
                b[1] = flag(d.final_, 0x80)
                    | flag(d.ack, 0x40)
                    | flag(d.overflow, 0x04)
                    | flag(d.underflow, 0x02)
                    | flag(d.has_status, 0x01);
                if d.has_status {
                    b[3] = d.status;
                    put32(b, 24, d.stat_sn);
                }
                put64(b, 8, d.lun);
                put32(b, 16, d.itt);
                put32(b, 20, d.ttt);
                put32(b, 28, d.exp_cmd_sn);
                put32(b, 32, d.max_cmd_sn);
                put32(b, 36, d.data_sn);
                put32(b, 40, d.offset);
                put32(b, 44, d.residual);
            }
            Bhs::LogoutReq(l) => {
                b[0] |= 0x40;
                b[1] = 0x80 | (l.reason & 0x7f);
                put32(b, 16, l.itt);
                b[20..22].copy_from_slice(&l.cid.to_be_bytes());
                put32(b, 24, l.cmd_sn);
                put32(b, 28, l.exp_stat_sn);
            }
            Bhs::LogoutResp(l) => {
                b[1] = 0x80;
                b[2] = l.response;
                put32(b, 16, l.itt);
                put32(b, 24, l.stat_sn);
                put32(b, 28, l.exp_cmd_sn);
                put32(b, 32, l.max_cmd_sn);
                b[40..42].copy_from_slice(&l.time2wait.to_be_bytes());
                b[42..44].copy_from_slice(&l.time2retain.to_be_bytes());
            }
            Bhs::R2t(r) => {
                b[1] = 0x80;
                put64(b, 8, r.lun);
                put32(b, 16, r.itt);
                put32(b, 20, r.ttt);
                put32(b, 24, r.stat_sn);
                put32(b, 28, r.exp_cmd_sn);
                put32(b, 32, r.max_cmd_sn);
                put32(b, 36, r.r2t_sn);
                put32(b, 40, r.offset);
                put32(b, 44, r.length);
            }
            Bhs::Reject(r) => {
                b[1] = 0x80;
                b[2] = r.reason;
                put32(b, 16, 0xffff_ffff);
                put32(b, 24, r.stat_sn);
                put32(b, 28, r.exp_cmd_sn);
                put32(b, 32, r.max_cmd_sn);
                put32(b, 36, r.data_sn);
            }
            Bhs::Other(r) => {
                *b = r.bytes;
                b[0] = r.opcode & 0x3f;
            }
        }
    }

    /// Parses the opcode-specific fields of a 48-byte BHS.
    pub fn read(b: &[u8; BHS_LEN]) -> Result<Bhs, PduError> {
        let opcode = b[0] & 0x3f;
        let f1 = b[1];
        let nop = || Nop {
            lun: u64_at(b, 8),
            itt: u32_at(b, 16),
            ttt: u32_at(b, 20),
            sn: u32_at(b, 24),
            exp_sn: u32_at(b, 28),
            max_cmd_sn: u32_at(b, 32),
        };
        let login = || Login {
            transit: bit(f1, 0x80),
            cont: bit(f1, 0x40),
            csg: (f1 >> 2) & 3,
            nsg: f1 & 3,
            version_max: b[2],
            version: b[3],
            isid: b[8..14].try_into().expect("6 bytes"),
            tsih: u16::from_be_bytes([b[14], b[15]]),
            itt: u32_at(b, 16),
            cid: u16::from_be_bytes([b[20], b[21]]),
            sn: u32_at(b, 24),
            exp_sn: u32_at(b, 28),
            max_cmd_sn: u32_at(b, 32),
            status_class: b[36],
            status_detail: b[37],
        };
        let text = || Text {
            final_: bit(f1, 0x80),
            cont: bit(f1, 0x40),
            lun: u64_at(b, 8),
            itt: u32_at(b, 16),
            ttt: u32_at(b, 20),
            sn: u32_at(b, 24),
            exp_sn: u32_at(b, 28),
            max_cmd_sn: u32_at(b, 32),
        };
        Ok(match opcode {
            op::NOP_OUT => Bhs::NopOut(Nop {
                max_cmd_sn: 0,
                ..nop()
            }),
            op::NOP_IN => Bhs::NopIn(nop()),
            op::SCSI_CMD => Bhs::ScsiCmd(ScsiCmd {
                final_: bit(f1, 0x80),
                read: bit(f1, 0x40),
                write: bit(f1, 0x20),
                attr: f1 & 7,
                lun: u64_at(b, 8),
                itt: u32_at(b, 16),
                edtl: u32_at(b, 20),
                cmd_sn: u32_at(b, 24),
                exp_stat_sn: u32_at(b, 28),
                cdb: b[32..48].try_into().expect("16 bytes"),
            }),
            op::SCSI_RESP => Bhs::ScsiResp(ScsiResp {
                bidi_overflow: bit(f1, 0x10),
                bidi_underflow: bit(f1, 0x08),
                overflow: bit(f1, 0x04),
                underflow: bit(f1, 0x02),
                response: b[2],
                status: b[3],
                itt: u32_at(b, 16),
                stat_sn: u32_at(b, 24),
                exp_cmd_sn: u32_at(b, 28),
                max_cmd_sn: u32_at(b, 32),
                exp_data_sn: u32_at(b, 36),
                residual: u32_at(b, 44),
            }),
            op::TASK_MGMT_REQ => Bhs::TaskMgmt(TaskMgmt {
                function: f1 & 0x7f,
                lun: u64_at(b, 8),
                itt: u32_at(b, 16),
                ref_itt: u32_at(b, 20),
                cmd_sn: u32_at(b, 24),
                exp_stat_sn: u32_at(b, 28),
                ref_cmd_sn: u32_at(b, 32),
            }),
            op::TASK_MGMT_RESP => Bhs::TaskMgmtResp(TaskMgmtResp {
                response: b[2],
                itt: u32_at(b, 16),
                stat_sn: u32_at(b, 24),
                exp_cmd_sn: u32_at(b, 28),
                max_cmd_sn: u32_at(b, 32),
            }),
            op::LOGIN_REQ => Bhs::LoginReq(Login {
                max_cmd_sn: 0,
                status_class: 0,
                status_detail: 0,
                ..login()
            }),
            op::LOGIN_RESP => Bhs::LoginResp(Login { cid: 0, ..login() }),
            op::TEXT_REQ => Bhs::TextReq(Text {
                max_cmd_sn: 0,
                ..text()
            }),
            op::TEXT_RESP => Bhs::TextResp(text()),
            op::DATA_OUT => Bhs::DataOut(DataOut {
                final_: bit(f1, 0x80),
                lun: u64_at(b, 8),
                itt: u32_at(b, 16),
                ttt: u32_at(b, 20),
                exp_stat_sn: u32_at(b, 28),
                data_sn: u32_at(b, 36),
                offset: u32_at(b, 40),
            }),
            op::DATA_IN => {
                let has_status = bit(f1, 0x01);
                Bhs::DataIn(DataIn {
                    final_: bit(f1, 0x80),
                    ack: bit(f1, 0x40),
                    overflow: bit(f1, 0x04),
                    underflow: bit(f1, 0x02),
                    has_status,
                    status: if has_status { b[3] } else { 0 },
                    lun: u64_at(b, 8),
                    itt: u32_at(b, 16),
                    ttt: u32_at(b, 20),
                    stat_sn: if has_status { u32_at(b, 24) } else { 0 },
                    exp_cmd_sn: u32_at(b, 28),
                    max_cmd_sn: u32_at(b, 32),
                    data_sn: u32_at(b, 36),
                    offset: u32_at(b, 40),
                    residual: u32_at(b, 44),
                })
            }
            op::LOGOUT_REQ => Bhs::LogoutReq(Logout {
                reason: f1 & 0x7f,
                itt: u32_at(b, 16),
                cid: u16::from_be_bytes([b[20], b[21]]),
                cmd_sn: u32_at(b, 24),
                exp_stat_sn: u32_at(b, 28),
            }),
            op::LOGOUT_RESP => Bhs::LogoutResp(LogoutResp {
                response: b[2],
                itt: u32_at(b, 16),
                stat_sn: u32_at(b, 24),
                exp_cmd_sn: u32_at(b, 28),
                max_cmd_sn: u32_at(b, 32),
                time2wait: u16::from_be_bytes([b[40], b[41]]),
                time2retain: u16::from_be_bytes([b[42], b[43]]),
            }),
            op::R2T => Bhs::R2t(R2t {
                lun: u64_at(b, 8),
                itt: u32_at(b, 16),
                ttt: u32_at(b, 20),
                stat_sn: u32_at(b, 24),
                exp_cmd_sn: u32_at(b, 28),
                max_cmd_sn: u32_at(b, 32),
                r2t_sn: u32_at(b, 36),
                offset: u32_at(b, 40),
                length: u32_at(b, 44),
            }),
            op::REJECT => Bhs::Reject(Reject {
                reason: b[2],
                stat_sn: u32_at(b, 24),
                exp_cmd_sn: u32_at(b, 28),
                max_cmd_sn: u32_at(b, 32),
                data_sn: u32_at(b, 36),
            }),
            op::SNACK | op::ASYNC => {
                // Keep the opcode-specific bytes; flags and lengths live elsewhere in Pdu.
                let mut bytes = *b;
                bytes[0] = opcode;
                bytes[4..8].fill(0);
                Bhs::Other(Raw { opcode, bytes })
            }
            other => return Err(PduError::UnknownOpcode(other)),
        })
    }
}
