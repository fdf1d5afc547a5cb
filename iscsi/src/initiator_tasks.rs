//! Tagged commands in flight on the one connection: each SCSI command gets its own ITT,
//! R2Ts are answered per task, SCSI Responses are matched by ITT in any order, and CmdSN
//! stays inside the target's window [ExpCmdSN, MaxCmdSN] (we wait while it is shut).
//!
//! The initiator is a single owner, not a set of tasks: [`Initiator::submit`] sends a
//! command and returns at once; [`Initiator::next_completion`] reads PDUs (answering R2Ts
//! of any task) until one finishes. The one-at-a-time calls work beside it: PDUs of
//! tagged commands that arrive while they wait are handled the same way.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::{rw16, Initiator, InitiatorError};
use crate::io::{write_pdu_async, IoError};
use crate::pdu::{Bhs, DataOut, Nop, Pdu, ScsiCmd, ScsiResp};
use crate::scsi::sense::{self, Sense};

/// UNIT ATTENTION is reported once per event; a command meeting it is sent again.
const UA_RETRIES: u8 = 4;

/// A tagged command: a write-direction (or no-data) CDB and its data, kept until the
/// response so R2Ts can be served from it and a UNIT ATTENTION can resend it.
#[derive(Debug)]
pub(super) struct Task {
    tag: u64,
    cdb: [u8; 16],
    data: Bytes,
    tries: u8,
}

/// A finished tagged command.
#[derive(Debug)]
pub struct Completion {
    /// What [`Initiator::submit`] returned for it.
    pub tag: u64,
    pub result: Result<(), InitiatorError>,
}

/// Serial-number arithmetic (RFC 1982, 32 bits): is `a` before `b`?
pub(super) fn serial_lt(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

/// The (ExpCmdSN, MaxCmdSN) a target PDU carries, if any.
pub(super) fn window_of(bhs: &Bhs) -> Option<(u32, u32)> {
    match bhs {
        Bhs::ScsiResp(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
        Bhs::DataIn(d) => Some((d.exp_cmd_sn, d.max_cmd_sn)),
        Bhs::R2t(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
        Bhs::NopIn(n) => Some((n.exp_sn, n.max_cmd_sn)),
        Bhs::TaskMgmtResp(t) => Some((t.exp_cmd_sn, t.max_cmd_sn)),
        Bhs::LogoutResp(l) => Some((l.exp_cmd_sn, l.max_cmd_sn)),
        Bhs::Reject(r) => Some((r.exp_cmd_sn, r.max_cmd_sn)),
        Bhs::TextResp(t) => Some((t.exp_sn, t.max_cmd_sn)),
        Bhs::LoginResp(l) => Some((l.exp_sn, l.max_cmd_sn)),
        _ => None,
    }
}

/// The outcome a SCSI Response reports.
pub(super) fn response_result(opcode: u8, r: &ScsiResp, data: &[u8]) -> Result<(), InitiatorError> {
    if r.response != 0 {
        return Err(InitiatorError::Protocol(format!(
            "target failure response {:#04x}",
            r.response
        )));
    }
    if r.status == sense::CHECK_CONDITION {
        let sense = Sense::from_response_data(data).unwrap_or(Sense::new(0, 0, 0));
        return Err(InitiatorError::CheckCondition { opcode, sense });
    }
    if r.status != 0 {
        return Err(InitiatorError::Status {
            opcode,
            status: r.status,
        });
    }
    Ok(())
}

/// The ITT in the header a Reject carries back (bytes 16..20 of the rejected BHS).
fn rejected_itt(data: &[u8]) -> Option<u32> {
    data.get(16..20)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
}

impl Initiator {
    /// Tagged commands sent and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.tasks.len() + self.retry.len()
    }

    /// Sends WRITE(16) of whole blocks at `lba` and returns its tag without waiting for
    /// the target; collect the outcome with [`Initiator::next_completion`]. Waits only
    /// while the target's command window is shut.
    pub async fn submit_write(&mut self, lba: u64, data: Bytes) -> Result<u64, InitiatorError> {
        let bs = self.block_size as usize;
        if data.is_empty() || !data.len().is_multiple_of(bs) {
            return Err(InitiatorError::Unaligned {
                len: data.len(),
                block: self.block_size,
            });
        }
        let blocks = (data.len() / bs) as u64;
        self.check_range(lba, blocks)?;
        let blocks = u32::try_from(blocks).map_err(|_| InitiatorError::OutOfRange {
            lba,
            blocks,
            capacity: self.blocks,
        })?;
        self.submit(rw16(0x8a, lba, blocks), data).await
    }

    /// Sends any write-direction (or no-data) CDB with `data` as a tagged command. The
    /// CDB is not checked: this is also how tests reach the target's own checks.
    pub async fn submit(&mut self, cdb: [u8; 16], data: Bytes) -> Result<u64, InitiatorError> {
        self.check_session()?;
        let tag = self.next_tag;
        self.next_tag += 1;
        self.start_task(Task {
            tag,
            cdb,
            data,
            tries: 0,
        })
        .await?;
        Ok(tag)
    }

    /// The next finished tagged command, reading from the target as needed; None when
    /// nothing is outstanding. After a connection failure every outstanding command
    /// finishes with [`InitiatorError::SessionFailed`].
    pub async fn next_completion(&mut self) -> Option<Completion> {
        loop {
            if let Some(c) = self.done.pop_front() {
                return Some(c);
            }
            if let Some(t) = self.retry.pop_front() {
                let tag = t.tag;
                if let Err(e) = self.start_task(t).await {
                    self.done.push_back(Completion {
                        tag,
                        result: Err(e),
                    });
                }
                continue;
            }
            if self.tasks.is_empty() {
                return None;
            }
            // An error here has already failed every task (break_session).
            let _ = self.pump().await;
        }
    }

    /// Waits for every outstanding tagged command; returns the first failure, if any
    /// (the others are dropped: a caller that wants each one uses `next_completion`).
    pub async fn wait_all(&mut self) -> Result<(), InitiatorError> {
        let mut first = None;
        while let Some(c) = self.next_completion().await {
            if let (Err(e), None) = (c.result, &first) {
                first = Some(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    async fn start_task(&mut self, task: Task) -> Result<(), InitiatorError> {
        self.wait_window().await?;
        let itt = self.next_itt();
        let imm = self.immediate_len(task.data.len());
        let cmd = ScsiCmd {
            final_: true,
            read: false,
            write: !task.data.is_empty(),
            attr: 1, // simple
            lun: self.lun,
            itt,
            edtl: task.data.len() as u32,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb: task.cdb,
        };
        let first = task.data.slice(..imm);
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.send_or_break(Pdu::with_data(Bhs::ScsiCmd(cmd), first))
            .await?;
        self.tasks.insert(itt, task);
        Ok(())
    }

    /// Immediate data that goes with a command of `len` bytes, as negotiated.
    pub(super) fn immediate_len(&self, len: usize) -> usize {
        if self.params.immediate_data {
            len.min(self.params.first_burst as usize)
                .min(self.params.peer_max_recv_data as usize)
        } else {
            0
        }
    }

    pub(super) fn check_session(&self) -> Result<(), InitiatorError> {
        match &self.broken {
            Some(cause) => Err(InitiatorError::SessionFailed {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records a connection failure: every outstanding tagged command fails with it, and
    /// so does everything after. Returns the error for the caller.
    pub(super) fn break_session(&mut self, e: InitiatorError) -> InitiatorError {
        let cause = match (&self.broken, e) {
            (Some(c), _) => c.clone(),
            (None, InitiatorError::SessionFailed { cause }) => cause,
            (None, e) => Arc::new(e),
        };
        self.broken = Some(cause.clone());
        let mut failed: Vec<Task> = self.tasks.drain().map(|(_, t)| t).collect();
        failed.sort_by_key(|t| t.tag);
        failed.extend(self.retry.drain(..));
        for t in failed {
            self.done.push_back(Completion {
                tag: t.tag,
                result: Err(InitiatorError::SessionFailed {
                    cause: cause.clone(),
                }),
            });
        }
        InitiatorError::SessionFailed { cause }
    }

    pub(super) fn note_window(&mut self, exp: u32, max: u32) {
        // RFC 7143 §4.2.2.1: a MaxCmdSN below ExpCmdSN − 1 is invalid; ignore both.
        if serial_lt(max, exp.wrapping_sub(1)) {
            return;
        }
        if serial_lt(self.exp_cmd_sn, exp) {
            self.exp_cmd_sn = exp;
        }
        if serial_lt(self.max_cmd_sn, max) {
            self.max_cmd_sn = max;
        }
    }

    fn window_open(&self) -> bool {
        !serial_lt(self.max_cmd_sn, self.cmd_sn)
    }

    /// Reads PDUs (serving tagged commands) until CmdSN fits in the target's window.
    pub(super) async fn wait_window(&mut self) -> Result<(), InitiatorError> {
        while !self.window_open() {
            self.pump().await?;
        }
        Ok(())
    }

    /// Reads one PDU and handles it; any failure breaks the session (at ERL 0 the
    /// connection cannot be trusted after an unexpected PDU).
    async fn pump(&mut self) -> Result<(), InitiatorError> {
        let p = self.recv().await?;
        match self.other_pdu(p).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.break_session(e)),
        }
    }

    /// Handles a PDU that is not for the one-at-a-time command being waited on: PDUs of
    /// tagged commands, target pings; anything else is a protocol error.
    pub(super) async fn other_pdu(&mut self, p: Pdu) -> Result<(), InitiatorError> {
        match p.bhs {
            Bhs::R2t(r) if self.tasks.contains_key(&r.itt) => {
                let data = self.tasks[&r.itt].data.clone();
                self.answer_r2t(&r, &data).await
            }
            Bhs::ScsiResp(r) if self.tasks.contains_key(&r.itt) => {
                self.exp_stat_sn = r.stat_sn.wrapping_add(1);
                let mut task = self.tasks.remove(&r.itt).expect("checked above");
                let result = response_result(task.cdb[0], &r, &p.data);
                match result {
                    Err(InitiatorError::CheckCondition { sense, .. })
                        if sense.key == sense::key::UNIT_ATTENTION && task.tries < UA_RETRIES =>
                    {
                        task.tries += 1;
                        self.retry.push_back(task);
                    }
                    result => self.done.push_back(Completion {
                        tag: task.tag,
                        result,
                    }),
                }
                Ok(())
            }
            Bhs::DataIn(d) if self.tasks.contains_key(&d.itt) => Err(InitiatorError::Protocol(
                "Data-In for a write command".into(),
            )),
            Bhs::Reject(r) => match rejected_itt(&p.data).and_then(|i| self.tasks.remove(&i)) {
                Some(task) => {
                    self.done.push_back(Completion {
                        tag: task.tag,
                        result: Err(InitiatorError::Rejected(r.reason)),
                    });
                    Ok(())
                }
                None => Err(InitiatorError::Rejected(r.reason)),
            },
            Bhs::NopIn(n) if n.ttt != 0xffff_ffff => {
                // The target pings us: answer with the same TTT.
                let o = Nop {
                    lun: n.lun,
                    itt: 0xffff_ffff,
                    ttt: n.ttt,
                    sn: self.cmd_sn,
                    exp_sn: self.exp_stat_sn,
                    max_cmd_sn: 0,
                };
                self.send_or_break(Pdu::new(Bhs::NopOut(o)).immediate())
                    .await
            }
            _ => self.unexpected(p),
        }
    }

    /// Sends the Data-Out PDUs an R2T asks for, from the command's buffer (no copies).
    pub(super) async fn answer_r2t(
        &mut self,
        r: &crate::pdu::R2t,
        out: &Bytes,
    ) -> Result<(), InitiatorError> {
        let start = r.offset as usize;
        let end = start
            .checked_add(r.length as usize)
            .filter(|&e| e <= out.len());
        let Some(end) = end else {
            return Err(InitiatorError::Protocol(
                "R2T beyond the write buffer".into(),
            ));
        };
        let chunk = self.params.peer_max_recv_data as usize;
        let mut at = start;
        let mut data_sn = 0;
        let sent: Result<(), IoError> = async {
            while at < end {
                let n = chunk.min(end - at);
                let d = DataOut {
                    final_: at + n == end,
                    lun: self.lun,
                    itt: r.itt,
                    ttt: r.ttt,
                    exp_stat_sn: self.exp_stat_sn,
                    data_sn,
                    offset: at as u32,
                };
                let pdu = Pdu::with_data(Bhs::DataOut(d), out.slice(at..at + n));
                write_pdu_async(&mut self.w, &pdu, &self.tx).await?;
                data_sn += 1;
                at += n;
            }
            self.w.flush().await?;
            Ok(())
        }
        .await;
        sent.map_err(|e| self.break_session(InitiatorError::Io(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::Reject;

    #[test]
    fn serial_order_wraps() {
        assert!(serial_lt(1, 2));
        assert!(!serial_lt(2, 2));
        assert!(serial_lt(0xffff_fff0, 3));
        assert!(!serial_lt(3, 0xffff_fff0));
    }

    #[test]
    fn window_comes_from_every_target_pdu_that_carries_it() {
        let r = Reject {
            exp_cmd_sn: 7,
            max_cmd_sn: 9,
            ..Default::default()
        };
        assert_eq!(window_of(&Bhs::Reject(r)), Some((7, 9)));
        let resp = ScsiResp {
            exp_cmd_sn: 3,
            max_cmd_sn: 130,
            ..Default::default()
        };
        assert_eq!(window_of(&Bhs::ScsiResp(resp)), Some((3, 130)));
        assert_eq!(window_of(&Bhs::ScsiCmd(ScsiCmd::default())), None);
    }

    #[test]
    fn responses_map_to_results() {
        let ok = ScsiResp::default();
        assert!(response_result(0x8a, &ok, &[]).is_ok());
        let busy = ScsiResp {
            status: 0x08,
            ..Default::default()
        };
        assert!(matches!(
            response_result(0x8a, &busy, &[]),
            Err(InitiatorError::Status {
                opcode: 0x8a,
                status: 0x08
            })
        ));
        let failed = ScsiResp {
            response: 1,
            ..Default::default()
        };
        assert!(matches!(
            response_result(0x8a, &failed, &[]),
            Err(InitiatorError::Protocol(_))
        ));
        let check = ScsiResp {
            status: sense::CHECK_CONDITION,
            ..Default::default()
        };
        let data = Sense::LBA_OUT_OF_RANGE.response_data();
        assert!(matches!(
            response_result(0x8a, &check, &data),
            Err(InitiatorError::CheckCondition { sense, .. }) if sense == Sense::LBA_OUT_OF_RANGE
        ));
    }

    #[test]
    fn rejected_itt_reads_the_returned_header() {
        let mut bhs = [0u8; 48];
        bhs[16..20].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        assert_eq!(rejected_itt(&bhs), Some(0x1234_5678));
        assert_eq!(rejected_itt(&bhs[..10]), None);
    }
}
