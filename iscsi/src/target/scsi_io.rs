//! The SCSI half of a target connection: Data-In for reads and generated pages, R2T and
//! Data-Out collection for writes, SCSI Response with sense and residuals.

use bytes::Bytes;

use super::{residual, Conn, IoError, MAX_PENDING, READ_CHUNK};
use crate::crc32c::crc32c;
use crate::io::{Landed, Landing};
use crate::pdu::{self, Bhs, DataIn, DataOut, Pdu, R2t, ScsiCmd, ScsiResp};
use crate::scsi::{sense, DataOutOp, Plan, Sense};

impl Conn<'_> {
    fn respond(
        &mut self,
        c: &ScsiCmd,
        status: u8,
        sense: Option<Sense>,
        spdtl: u64,
    ) -> Result<(), IoError> {
        let (over, under, res) = residual(c.edtl, spdtl);
        let r = ScsiResp {
            overflow: over,
            underflow: under,
            status,
            itt: c.itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            residual: res,
            ..Default::default()
        };
        let data = sense.map(|s| s.response_data()).unwrap_or_default();
        self.send(&Pdu::with_data(Bhs::ScsiResp(r), data))
    }

    fn check(&mut self, c: &ScsiCmd, s: Sense, spdtl: u64) -> Result<(), IoError> {
        self.respond(c, sense::CHECK_CONDITION, Some(s), spdtl)
    }

    pub(super) fn scsi(&mut self, c: ScsiCmd, immediate: Bytes) -> Result<(), IoError> {
        self.data_sn = 0;
        if c.lun != 0 {
            return match c.cdb[0] {
                0x12 if c.cdb[1] & 1 == 0 => {
                    let mut v = crate::scsi::pages::standard_inquiry();
                    v[0] = 0x7f;
                    let alloc = u16::from_be_bytes([c.cdb[3], c.cdb[4]]) as usize;
                    v.truncate(alloc);
                    self.data_in_vec(&c, v)
                }
                0xa0 => self.scsi_lun0(c, immediate),
                _ => self.check(&c, Sense::LUN_NOT_SUPPORTED, 0),
            };
        }
        self.scsi_lun0(c, immediate)
    }

    fn scsi_lun0(&mut self, c: ScsiCmd, immediate: Bytes) -> Result<(), IoError> {
        let lun = &self.t.lun;
        match lun.plan(&c.cdb) {
            // A zero-block COMPARE AND WRITE that still carries data: CDB and transfer disagree.
            Plan::Good if c.cdb[0] == 0x89 && c.edtl > 0 => {
                self.check(&c, Sense::INVALID_FIELD_IN_CDB, 0)
            }
            Plan::Good => self.respond(&c, sense::GOOD, None, 0),
            Plan::Check(s) => self.check(&c, s, 0),
            Plan::Sync => match lun.sync() {
                Ok(()) => self.respond(&c, sense::GOOD, None, 0),
                Err(s) => self.check(&c, s, 0),
            },
            Plan::DataIn(v) => self.data_in_vec(&c, v),
            Plan::Read { lba, blocks } => self.read(&c, lba, blocks),
            Plan::DataOut { len, op } => {
                if c.edtl == len {
                    return self.data_out(&c, immediate, len, len, op);
                }
                if let DataOutOp::Write { .. } = op {
                    // FCP-4/SAM residual rules: transfer the smaller of EDTL and the CDB's
                    // length, write that much, and report the difference as a residual.
                    return self.data_out(&c, immediate, c.edtl.min(len), len, op);
                }
                self.check(&c, Sense::INVALID_FIELD_IN_IU, len as u64)
            }
        }
    }

    fn data_in_vec(&mut self, c: &ScsiCmd, v: Vec<u8>) -> Result<(), IoError> {
        let spdtl = v.len() as u64;
        let n = (c.edtl as usize).min(v.len());
        if n == 0 {
            return self.respond(c, sense::GOOD, None, spdtl);
        }
        let mut v = v;
        v.truncate(n);
        self.send_data_in(c, Bytes::from(v), 0, true, spdtl)
    }

    /// Sends `data` (at buffer offset `offset`) as Data-In PDUs; `last` puts the status in
    /// the final PDU.
    fn send_data_in(
        &mut self,
        c: &ScsiCmd,
        data: Bytes,
        offset: u32,
        last: bool,
        spdtl: u64,
    ) -> Result<(), IoError> {
        let mrdsl = self.params.peer_max_recv_data as usize;
        let burst = self.params.max_burst as usize;
        let mut at = 0usize;
        while at < data.len() {
            let abs = offset as usize + at;
            // A PDU never crosses a MaxBurstLength boundary; F ends each burst.
            let to_boundary = burst - abs % burst;
            let n = mrdsl.min(data.len() - at).min(to_boundary);
            let end_of_all = last && at + n == data.len();
            let end_of_burst = n == to_boundary;
            let (over, under, res) = residual(c.edtl, spdtl);
            let d = DataIn {
                final_: end_of_all || end_of_burst,
                has_status: end_of_all,
                status: sense::GOOD,
                overflow: end_of_all && over,
                underflow: end_of_all && under,
                residual: if end_of_all { res } else { 0 },
                lun: 0,
                itt: c.itt,
                ttt: 0xffff_ffff,
                stat_sn: if end_of_all { self.next_stat_sn() } else { 0 },
                exp_cmd_sn: self.exp_cmd_sn,
                max_cmd_sn: self.max_cmd_sn(),
                data_sn: self.data_sn,
                offset: abs as u32,
                ack: false,
            };
            self.data_sn = self.data_sn.wrapping_add(1);
            self.send_raw(&Bhs::DataIn(d), data.slice(at..at + n))?;
            at += n;
        }
        Ok(())
    }

    /// Queues a PDU whose data is a shared slice of a read buffer (the READ hot path).
    fn send_raw(&mut self, bhs: &Bhs, data: Bytes) -> Result<(), IoError> {
        let h = pdu::header_for(bhs, data.len());
        let mut head = Vec::with_capacity(52);
        head.extend_from_slice(&h);
        if self.tx.header_digest {
            head.extend_from_slice(&crc32c(&h).to_le_bytes());
        }
        let pad = pdu::pad4(data.len()) - data.len();
        let digest = (self.tx.data_digest && !data.is_empty()).then(|| {
            let mut cr = crate::crc32c::Crc32c::new();
            cr.update(&data);
            cr.update(&[0u8; 3][..pad]);
            cr.finish()
        });
        self.out.send(Bytes::from(head))?;
        self.out.send(data)?;
        self.out.send(Bytes::from_static(&[0u8; 3][..pad]))?;
        if let Some(d) = digest {
            self.out.send(Bytes::copy_from_slice(&d.to_le_bytes()))?;
        }
        Ok(())
    }

    fn read(&mut self, c: &ScsiCmd, lba: u64, blocks: u32) -> Result<(), IoError> {
        let lun = &self.t.lun;
        let bs = lun.block_size() as u64;
        let spdtl = blocks as u64 * bs;
        let total = spdtl.min(c.edtl as u64) as usize;
        if total == 0 {
            return self.respond(c, sense::GOOD, None, spdtl);
        }
        let mut done = 0usize;
        while done < total {
            let n = (total - done).min(READ_CHUNK);
            let mut buf = self.pool.get(n);
            if let Err(s) = lun.read(lba, done as u64, &mut buf.as_mut()[..n]) {
                return self.check(c, s, spdtl);
            }
            let data = self.pool.freeze(buf, n);
            self.send_data_in(c, data, done as u32, done + n == total, spdtl)?;
            done += n;
        }
        Ok(())
    }

    /// Collects `len` bytes of data-out (of the `spdtl` the CDB describes) and runs `op`.
    fn data_out(
        &mut self,
        c: &ScsiCmd,
        immediate: Bytes,
        len: u32,
        spdtl: u32,
        op: DataOutOp,
    ) -> Result<(), IoError> {
        let lun = &self.t.lun;
        if immediate.len() > c.edtl as usize || immediate.len() > self.params.first_burst as usize {
            return self.check(c, Sense::INVALID_FIELD_IN_IU, spdtl as u64);
        }
        let immediate = immediate.slice(..immediate.len().min(len as usize));
        let streaming = matches!(op, DataOutOp::Write { .. });
        let mut whole: Vec<u8> = if streaming {
            Vec::new()
        } else {
            Vec::with_capacity(len as usize)
        };
        let mut received = 0u32;
        let mut burst_buf: Vec<u8> = std::mem::take(&mut self.burst);
        // Immediate data of a streamed WRITE is written after the first R2T goes out, so
        // the store works while the initiator sends the rest.
        let mut deferred: Option<Bytes> = None;
        if !immediate.is_empty() {
            received = immediate.len() as u32;
            if !streaming {
                whole.extend_from_slice(&immediate);
            } else if received < len {
                deferred = Some(immediate);
            } else if let Err(s) = self.write_part(&op, 0, &immediate) {
                return self.check(c, s, spdtl as u64);
            }
        }
        let mut r2t_sn = 0u32;
        while received < len {
            let n = (len - received).min(self.params.max_burst);
            // No need to clear it: a burst is written out only when its Data-Outs covered
            // every byte in order (`Burst::take`).
            burst_buf.resize(n as usize, 0);
            let early = deferred.take().map(|d| (op, d));
            match self.solicit(c, received, &mut burst_buf, r2t_sn, early)? {
                Solicit::Done => {}
                Solicit::Aborted => return Ok(()),
                Solicit::Failed(s) => return self.check(c, s, spdtl as u64),
            }
            r2t_sn += 1;
            if streaming {
                if let Err(s) = self.write_part(&op, received, &burst_buf) {
                    return self.check(c, s, spdtl as u64);
                }
            } else {
                whole.extend_from_slice(&burst_buf);
            }
            received += n;
        }
        self.burst = burst_buf;
        let res = if streaming {
            match op {
                DataOutOp::Write { fua: true, .. } => lun.sync(),
                _ => Ok(()),
            }
        } else {
            lun.finish(&op, &whole)
        };
        match res {
            Ok(()) => self.respond(c, sense::GOOD, None, spdtl as u64),
            Err(s) => self.check(c, s, spdtl as u64),
        }
    }

    fn write_part(&self, op: &DataOutOp, at: u32, data: &[u8]) -> Result<(), Sense> {
        let DataOutOp::Write { lba, .. } = *op else {
            return Ok(());
        };
        let bs = self.t.lun.block_size() as u64;
        // Immediate data may end mid-block; Backing handles any byte range inside the LUN.
        let off = lba * bs + at as u64;
        self.t.lun.store.write_at(data, off).map_err(|e| {
            tracing::warn!(error = %e, "LUN write failed");
            Sense::WRITE_ERROR
        })
    }

    /// Sends one R2T for `buf.len()` bytes at `offset` and collects the Data-Out PDUs.
    fn solicit(
        &mut self,
        c: &ScsiCmd,
        offset: u32,
        buf: &mut [u8],
        r2t_sn: u32,
        early: Option<(DataOutOp, Bytes)>,
    ) -> Result<Solicit, IoError> {
        let ttt = self.next_ttt;
        // 0xffffffff is the reserved "no tag" value; 0 is left unused too.
        self.next_ttt = match self.next_ttt.wrapping_add(1) {
            0 | 0xffff_ffff => 1,
            n => n,
        };
        let r = R2t {
            lun: c.lun,
            itt: c.itt,
            ttt,
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            r2t_sn,
            offset,
            length: buf.len() as u32,
        };
        self.send(&Pdu::new(Bhs::R2t(r)))?;
        let mut burst = Burst {
            offset,
            len: buf.len(),
            got: 0,
            data_sn: 0,
            failed: None,
        };
        if let Some((op, data)) = early {
            if let Err(s) = self.write_part(&op, 0, &data) {
                burst.failed = Some(s);
            }
        }
        loop {
            let mut landing = Landing {
                itt: c.itt,
                ttt,
                offset,
                buf: &mut *buf,
            };
            let p = match self.recv_landing(&mut landing)? {
                None => continue,
                Some(Landed::DataOut(d, n)) => match burst.take(&d, n) {
                    Some(done) => return Ok(done),
                    None => continue,
                },
                Some(Landed::Pdu(Ok(p))) => p,
                // recv_landing has rejected it.
                Some(Landed::Pdu(Err(_))) => continue,
            };
            match p.bhs {
                // Ours but not landed: no data, or data outside the burst.
                Bhs::DataOut(d) if d.itt == c.itt && d.ttt == ttt => {
                    if !p.data.is_empty() {
                        burst.failed.get_or_insert(Sense::new(
                            sense::key::ABORTED_COMMAND,
                            0x0c,
                            0x0d,
                        ));
                    }
                    if let Some(done) = burst.take(&d, 0) {
                        return Ok(done);
                    }
                }
                Bhs::DataOut(_) => {}
                Bhs::TaskMgmt(t) if p.immediate || t.cmd_sn == self.exp_cmd_sn => {
                    let aborts_us = match t.function {
                        1 => t.ref_itt == c.itt,
                        2 | 3 | 5 | 6 | 7 => true,
                        _ => false,
                    };
                    if aborts_us {
                        self.accept_cmd_sn(t.cmd_sn, p.immediate);
                        let (resp, _close) = self.task_mgmt(&t, Some(c.itt));
                        self.tmf_reply(t.itt, resp)?;
                        return Ok(Solicit::Aborted);
                    }
                    self.queue(p)?;
                }
                Bhs::NopOut(_) if p.immediate => {
                    self.dispatch(p)?;
                }
                _ => self.queue(p)?,
            }
        }
    }

    fn queue(&mut self, p: Pdu) -> Result<(), IoError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(IoError::TooManyPending(MAX_PENDING));
        }
        self.pending.push_back(p);
        Ok(())
    }
}

enum Solicit {
    Done,
    Aborted,
    Failed(Sense),
}

/// The Data-Out PDUs of one R2T as they arrive.
struct Burst {
    /// Buffer offset and bytes the R2T asked for.
    offset: u32,
    len: usize,
    got: usize,
    /// DataSN the next Data-Out must carry.
    data_sn: u32,
    failed: Option<Sense>,
}

impl Burst {
    /// Counts a Data-Out that delivered `n` bytes in place; the outcome once it is the
    /// final one.
    fn take(&mut self, d: &DataOut, n: usize) -> Option<Solicit> {
        if d.data_sn != self.data_sn {
            // ERL 0 cannot recover a lost or reordered Data-Out: fail the task.
            self.failed
                .get_or_insert(Sense::new(sense::key::ABORTED_COMMAND, 0x4b, 0x00));
        }
        self.data_sn = self.data_sn.wrapping_add(1);
        // DataPDUInOrder=Yes: each PDU continues where the last one ended, so a burst
        // whose count adds up has every byte of the buffer written.
        if d.offset as usize != self.offset as usize + self.got {
            self.failed
                .get_or_insert(Sense::new(sense::key::ABORTED_COMMAND, 0x0c, 0x0d));
        }
        self.got += n;
        if !d.final_ {
            return None;
        }
        if self.got != self.len && self.failed.is_none() {
            self.failed = Some(Sense::new(sense::key::ABORTED_COMMAND, 0x0c, 0x0d));
        }
        Some(match self.failed.take() {
            Some(s) => Solicit::Failed(s),
            None => Solicit::Done,
        })
    }
}
