//! The SCSI block device behind LUN 0: decodes CDBs into plans (what data moves which way)
//! and finishes them against the backing store. iSCSI framing lives in `target`.

pub mod backing;
mod exec;
pub mod pages;
pub mod sense;

use std::sync::Mutex;

pub use backing::{Backing, BackingError};
pub use exec::DataOutOp;
pub use pages::Identity;
pub use sense::Sense;

/// A logical unit: the store plus what INQUIRY says about it.
#[derive(Debug)]
pub struct Lun {
    pub store: Backing,
    pub id: Identity,
    /// Serialises COMPARE AND WRITE against itself across sessions.
    caw: Mutex<()>,
}

/// What a command needs from the transport.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Completes with GOOD and no data.
    Good,
    /// Returns generated data (already cut to the allocation length).
    DataIn(Vec<u8>),
    /// Streams `blocks` blocks from `lba`.
    Read { lba: u64, blocks: u32 },
    /// Needs `len` bytes from the initiator, then runs `op`.
    DataOut { len: u32, op: DataOutOp },
    /// Flushes the store.
    Sync,
    /// Fails with CHECK CONDITION.
    Check(Sense),
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |a, &x| (a << 8) | x as u64)
}

fn alloc_cut(mut v: Vec<u8>, alloc: usize) -> Plan {
    v.truncate(alloc);
    Plan::DataIn(v)
}

impl Lun {
    pub fn new(store: Backing, serial: String, target_name: String) -> Lun {
        let id = Identity {
            blocks: store.blocks(),
            block_size: store.block_size(),
            serial,
            target_name,
        };
        Lun {
            store,
            id,
            caw: Mutex::new(()),
        }
    }

    pub fn block_size(&self) -> u32 {
        self.id.block_size
    }

    fn range(&self, lba: u64, blocks: u64) -> Result<(), Sense> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.id.blocks && lba < self.id.blocks => Ok(()),
            _ => Err(Sense::LBA_OUT_OF_RANGE),
        }
    }

    /// Decodes a CDB.
    pub fn plan(&self, cdb: &[u8; 16]) -> Plan {
        match self.plan_inner(cdb) {
            Ok(p) => p,
            Err(s) => Plan::Check(s),
        }
    }

    fn plan_inner(&self, c: &[u8; 16]) -> Result<Plan, Sense> {
        let bs = self.id.block_size as u64;
        // (lba, blocks, protect field) for the READ/WRITE/VERIFY families.
        let rw6 = || {
            (
                be(&c[1..4]) & 0x1f_ffff,
                if c[4] == 0 { 256 } else { c[4] as u64 },
                0,
            )
        };
        let rw10 = || (be(&c[2..6]), be(&c[7..9]), c[1] >> 5);
        let rw12 = || (be(&c[2..6]), be(&c[6..10]), c[1] >> 5);
        let rw16 = || (be(&c[2..10]), be(&c[10..14]), c[1] >> 5);
        let check_rw = |lba: u64, blocks: u64, prot: u8| -> Result<(), Sense> {
            if prot != 0 {
                return Err(Sense::INVALID_FIELD_IN_CDB);
            }
            if blocks > pages::MAX_TRANSFER_BLOCKS as u64 {
                return Err(Sense::INVALID_FIELD_IN_CDB);
            }
            self.range(lba, blocks)
        };
        Ok(match c[0] {
            0x00 => Plan::Good, // TEST UNIT READY
            0x03 => {
                // REQUEST SENSE: we keep no deferred sense, so report NO SENSE.
                if c[1] & 1 != 0 {
                    return Err(Sense::INVALID_FIELD_IN_CDB);
                }
                alloc_cut(Sense::new(0, 0, 0).fixed().to_vec(), c[4] as usize)
            }
            0x12 => {
                let alloc = be(&c[3..5]) as usize;
                if c[1] & 0x01 != 0 {
                    alloc_cut(pages::vpd(c[2], &self.id)?, alloc)
                } else if c[2] != 0 || c[1] & 0x02 != 0 {
                    return Err(Sense::INVALID_FIELD_IN_CDB);
                } else {
                    alloc_cut(pages::standard_inquiry(), alloc)
                }
            }
            0x25 => {
                if c[8] & 1 == 0 && be(&c[2..6]) != 0 {
                    return Err(Sense::INVALID_FIELD_IN_CDB);
                }
                Plan::DataIn(pages::read_capacity10(&self.id))
            }
            0x9e => match c[1] & 0x1f {
                0x10 => alloc_cut(pages::read_capacity16(&self.id), be(&c[10..14]) as usize),
                _ => return Err(Sense::INVALID_FIELD_IN_CDB),
            },
            0xa0 => {
                let alloc = be(&c[6..10]) as usize;
                if alloc < 16 || c[2] > 2 {
                    return Err(Sense::INVALID_FIELD_IN_CDB);
                }
                alloc_cut(pages::report_luns(), alloc)
            }
            0x1a => alloc_cut(pages::mode_sense(c, false, &self.id)?, c[4] as usize),
            0x5a => alloc_cut(pages::mode_sense(c, true, &self.id)?, be(&c[7..9]) as usize),
            0x08 | 0x28 | 0xa8 | 0x88 => {
                let (lba, blocks, prot) = match c[0] {
                    0x08 => rw6(),
                    0x28 => rw10(),
                    0xa8 => rw12(),
                    _ => rw16(),
                };
                check_rw(lba, blocks, prot)?;
                if blocks == 0 {
                    Plan::Good
                } else {
                    Plan::Read {
                        lba,
                        blocks: blocks as u32,
                    }
                }
            }
            0x0a | 0x2a | 0xaa | 0x8a | 0x2e | 0xae | 0x8e => {
                let (lba, blocks, prot) = match c[0] {
                    0x0a => rw6(),
                    0x2a | 0x2e => rw10(),
                    0xaa | 0xae => rw12(),
                    _ => rw16(),
                };
                check_rw(lba, blocks, prot)?;
                if blocks == 0 {
                    Plan::Good
                } else {
                    // FUA on WRITE; WRITE AND VERIFY always verifies from the medium.
                    let fua =
                        c[0] != 0x0a && (c[1] & 0x08 != 0 || matches!(c[0], 0x2e | 0xae | 0x8e));
                    Plan::DataOut {
                        len: (blocks * bs) as u32,
                        op: DataOutOp::Write { lba, fua },
                    }
                }
            }
            0x2f | 0xaf | 0x8f => {
                let (lba, blocks, prot) = match c[0] {
                    0x2f => rw10(),
                    0xaf => rw12(),
                    _ => rw16(),
                };
                check_rw(lba, blocks, prot)?;
                let bytchk = (c[1] >> 1) & 3;
                match (blocks, bytchk) {
                    (0, _) | (_, 0) => Plan::Good,
                    (_, 1) => Plan::DataOut {
                        len: (blocks * bs) as u32,
                        op: DataOutOp::Compare {
                            lba,
                            blocks: blocks as u32,
                            same: false,
                        },
                    },
                    (_, 3) => Plan::DataOut {
                        len: bs as u32,
                        op: DataOutOp::Compare {
                            lba,
                            blocks: blocks as u32,
                            same: true,
                        },
                    },
                    _ => return Err(Sense::INVALID_FIELD_IN_CDB),
                }
            }
            0x34 | 0x90 => {
                let (lba, blocks) = if c[0] == 0x34 {
                    (be(&c[2..6]), be(&c[7..9]))
                } else {
                    (be(&c[2..10]), be(&c[10..14]))
                };
                self.range(lba, blocks)?;
                Plan::Good
            }
            0x35 | 0x91 => {
                let (lba, blocks) = if c[0] == 0x35 {
                    (be(&c[2..6]), be(&c[7..9]))
                } else {
                    (be(&c[2..10]), be(&c[10..14]))
                };
                if lba > 0 || blocks > 0 {
                    self.range(lba, blocks)?;
                }
                Plan::Sync
            }
            0x41 | 0x93 => self.plan_write_same(c)?,
            0x42 => {
                if c[1] & 0x01 != 0 {
                    return Err(Sense::INVALID_FIELD_IN_CDB); // ANCHOR
                }
                let len = be(&c[7..9]) as u32;
                if len == 0 {
                    Plan::Good
                } else {
                    Plan::DataOut {
                        len,
                        op: DataOutOp::Unmap,
                    }
                }
            }
            0x89 => {
                let lba = be(&c[2..10]);
                let blocks = c[13] as u64;
                if c[1] >> 5 != 0 || blocks > pages::MAX_COMPARE_WRITE_BLOCKS as u64 {
                    return Err(Sense::INVALID_FIELD_IN_CDB);
                }
                self.range(lba, blocks)?;
                if blocks == 0 {
                    Plan::Good
                } else {
                    Plan::DataOut {
                        len: (2 * blocks * bs) as u32,
                        op: DataOutOp::CompareAndWrite {
                            lba,
                            blocks: blocks as u32,
                        },
                    }
                }
            }
            _ => return Err(Sense::INVALID_OPCODE),
        })
    }

    fn plan_write_same(&self, c: &[u8; 16]) -> Result<Plan, Sense> {
        let (lba, blocks) = if c[0] == 0x41 {
            (be(&c[2..6]), be(&c[7..9]))
        } else {
            (be(&c[2..10]), be(&c[10..14]))
        };
        let unmap = c[1] & 0x08 != 0;
        let anchor = c[1] & 0x10 != 0;
        let ndob = c[0] == 0x93 && c[1] & 0x01 != 0;
        if c[1] >> 5 != 0 || anchor || (c[0] == 0x41 && c[1] & 0x01 != 0) {
            return Err(Sense::INVALID_FIELD_IN_CDB);
        }
        if lba >= self.id.blocks {
            return Err(Sense::LBA_OUT_OF_RANGE);
        }
        // Zero blocks means "to the end of the medium" (WSNZ is 0 in our Block Limits page).
        let blocks = if blocks == 0 {
            self.id.blocks - lba
        } else {
            blocks
        };
        if blocks > pages::MAX_WRITE_SAME_BLOCKS {
            return Err(Sense::INVALID_FIELD_IN_CDB);
        }
        self.range(lba, blocks)?;
        let op = DataOutOp::WriteSame { lba, blocks, unmap };
        Ok(if ndob {
            Plan::DataOut { len: 0, op }
        } else {
            Plan::DataOut {
                len: self.id.block_size,
                op,
            }
        })
    }

    /// Completes a data-out command with the data the initiator sent.
    pub fn finish(&self, op: &DataOutOp, data: &[u8]) -> Result<(), Sense> {
        exec::finish(self, op, data)
    }

    /// Reads `buf.len()` bytes at block `lba` (+ byte offset `skip`).
    pub fn read(&self, lba: u64, skip: u64, buf: &mut [u8]) -> Result<(), Sense> {
        let off = lba * self.id.block_size as u64 + skip;
        self.store.read_at(buf, off).map_err(|e| {
            tracing::warn!(error = %e, "LUN read failed");
            Sense::READ_ERROR
        })
    }

    pub fn sync(&self) -> Result<(), Sense> {
        self.store.sync().map_err(|e| {
            tracing::warn!(error = %e, "LUN sync failed");
            Sense::WRITE_ERROR
        })
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
