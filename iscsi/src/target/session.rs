//! One target connection: login, then the full feature phase (SCSI commands with Data-In,
//! R2T/Data-Out, NOP, task management, text/SendTargets, logout). Blocking I/O on a thread.

use std::collections::VecDeque;
use std::io::BufReader;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::login::{LoginState, SessionKind, STAGE_FULL};
use super::out::{Out, Pool};
use super::Target;
use crate::io::{read_pdu_buf, read_pdu_landing, IoError, Landed, Landing};
use crate::pdu::{self, Bhs, Framing, Login, Nop, Pdu, Reject};
use crate::text::{Pairs, Params};

/// PDUs we hold while a write waits for its data; more means a misbehaving initiator.
const MAX_PENDING: usize = 4096;
/// Bytes read from the store per step of a READ.
const READ_CHUNK: usize = 1 << 20;
/// The socket reader's buffer.
const READ_BUFFER: usize = 16 * 1024;

#[path = "scsi_io.rs"]
mod scsi_io;

/// Serves one connection; sets `logged_in` once its login completes.
pub(super) fn run(t: &Target, sock: TcpStream, logged_in: &AtomicBool) {
    let peer = sock.peer_addr().ok();
    let local = sock.local_addr().ok();
    let reader = match sock.try_clone() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot clone the connection socket");
            return;
        }
    };
    let out = match Out::new(sock) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the connection's writer");
            return;
        }
    };
    let mut c = Conn {
        t,
        logged_in,
        // Small: the data segments of large PDUs are read past it, straight to where
        // they go (Data-Out into the burst buffer, immediate data into `rbuf`).
        r: BufReader::with_capacity(READ_BUFFER, reader),
        out,
        rx: Framing::default(),
        tx: Framing::default(),
        params: Params::default(),
        kind: SessionKind::Normal,
        stat_sn: 0,
        exp_cmd_sn: 0,
        pending: VecDeque::new(),
        local,
        next_ttt: 1,
        pool: Arc::new(Pool::default()),
        data_sn: 0,
        rbuf: bytes::BytesMut::new(),
        burst: Vec::new(),
    };
    match c.run() {
        Ok(()) | Err(IoError::Closed) => tracing::debug!(?peer, "iSCSI connection ended"),
        Err(e) => tracing::info!(?peer, error = %e, "iSCSI connection closed"),
    }
}

enum Next {
    Continue,
    Close,
}

struct Conn<'t> {
    t: &'t Target,
    logged_in: &'t AtomicBool,
    r: BufReader<TcpStream>,
    out: Out,
    rx: Framing,
    tx: Framing,
    params: Params,
    kind: SessionKind,
    stat_sn: u32,
    exp_cmd_sn: u32,
    pending: VecDeque<Pdu>,
    local: Option<SocketAddr>,
    next_ttt: u32,
    pool: Arc<Pool>,
    /// Receive buffer, reused across PDUs.
    rbuf: bytes::BytesMut,
    /// Data-Out burst buffer, reused across commands.
    burst: Vec<u8>,
    /// DataSN of the next Data-In of the current command.
    data_sn: u32,
}

fn residual(edtl: u32, spdtl: u64) -> (bool, bool, u32) {
    let e = edtl as u64;
    if spdtl > e {
        (true, false, (spdtl - e).min(u32::MAX as u64) as u32)
    } else if spdtl < e {
        (false, true, (e - spdtl) as u32)
    } else {
        (false, false, 0)
    }
}

fn serial_lt(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}

impl Conn<'_> {
    fn run(&mut self) -> Result<(), IoError> {
        if !self.login()? {
            return Ok(());
        }
        self.logged_in.store(true, Ordering::SeqCst);
        // From now on an initiator that sends nothing, or reads nothing, for the idle
        // timeout makes the blocked read or write fail, which ends the connection.
        let sock = self.r.get_ref();
        sock.set_read_timeout(self.t.cfg.idle_timeout)
            .and_then(|()| sock.set_write_timeout(self.t.cfg.idle_timeout))
            .map_err(IoError::Io)?;
        loop {
            let pdu = match self.pending.pop_front() {
                Some(p) => p,
                None => match self.recv()? {
                    Some(p) => p,
                    None => continue,
                },
            };
            if let Next::Close = self.dispatch(pdu)? {
                return self.out.finish();
            }
        }
    }

    /// Reads the next PDU.
    /// Returns None for a PDU that was rejected.
    fn recv(&mut self) -> Result<Option<Pdu>, IoError> {
        let read = read_pdu_buf(&mut self.r, &self.rx, &mut self.rbuf);
        match self.checked(read.map(Landed::Pdu))? {
            Some(Landed::Pdu(Ok(p))) => Ok(Some(p)),
            _ => Ok(None),
        }
    }

    /// Like [`Conn::recv`], with a Data-Out matching `landing` read straight into its
    /// buffer; None (or a `Landed::Pdu(Err)`) for a PDU that was rejected.
    fn recv_landing(&mut self, landing: &mut Landing<'_>) -> Result<Option<Landed>, IoError> {
        let read = read_pdu_landing(&mut self.r, &self.rx, &mut self.rbuf, landing);
        self.checked(read)
    }

    /// Rejects a PDU that is framed but unparseable, and closes on a framing error.
    fn checked(&mut self, read: Result<Landed, IoError>) -> Result<Option<Landed>, IoError> {
        match read {
            Ok(Landed::Pdu(Err((e, bhs)))) => {
                tracing::info!(error = %e, "rejecting PDU");
                self.reject(0x05, bhs.map(|b| b.to_vec()).unwrap_or_default())?;
                Ok(None)
            }
            Ok(landed) => Ok(Some(landed)),
            Err(IoError::Pdu(e)) => {
                // The stream cannot be trusted past a framing error: say why, then close.
                tracing::info!(error = %e, "closing connection on a malformed PDU");
                let _ = self.reject(0x09, Vec::new());
                let _ = self.out.finish();
                Err(IoError::Pdu(e))
            }
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, pdu: &Pdu) -> Result<(), IoError> {
        let mut b = bytes::BytesMut::new();
        pdu.encode(&self.tx, &mut b)?;
        self.out.send(b.freeze())
    }

    fn max_cmd_sn(&self) -> u32 {
        self.exp_cmd_sn
            .wrapping_add(self.t.cfg.cmd_window.max(1) - 1)
    }

    fn next_stat_sn(&mut self) -> u32 {
        let s = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        s
    }

    fn reject(&mut self, reason: u8, bhs: Vec<u8>) -> Result<(), IoError> {
        let r = Reject {
            reason,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data_sn: 0,
        };
        self.send(&Pdu::with_data(Bhs::Reject(r), bhs))
    }

    /// Login phase. Returns false when the login failed (the answer has been sent).
    fn login(&mut self) -> Result<bool, IoError> {
        let cfg = &self.t.cfg;
        let mut st = LoginState::new(
            &cfg.iqn,
            cfg.chap.as_ref(),
            cfg.mutual_chap.as_ref(),
            cfg.offer,
        );
        let mut acc: Vec<u8> = Vec::new();
        let mut first = true;
        loop {
            let pdu = match read_pdu_buf(&mut self.r, &self.rx, &mut self.rbuf) {
                Err(IoError::Pdu(e)) => {
                    // Oversized or undecodable: "initiator error", then close.
                    tracing::info!(error = %e, "malformed PDU during login");
                    self.login_reply(&Login::default(), 0, 0, false, (2, 0), Vec::new())?;
                    self.out.finish()?;
                    return Ok(false);
                }
                other => other?,
            };
            let (l, data) = match pdu {
                Ok(Pdu {
                    bhs: Bhs::LoginReq(l),
                    data,
                    ..
                }) => (l, data),
                other => {
                    tracing::info!(?other, "non-login PDU during login");
                    let l = Login::default();
                    self.login_reply(&l, 0, 0, false, (2, 0x0b), Vec::new())?;
                    self.out.finish()?;
                    return Ok(false);
                }
            };
            if first {
                self.stat_sn = l.exp_sn;
                first = false;
            }
            self.exp_cmd_sn = l.sn;
            acc.extend_from_slice(&data);
            if acc.len() > 65536 {
                self.login_reply(&l, l.csg, 0, false, (2, 0), Vec::new())?;
                self.out.finish()?;
                return Ok(false);
            }
            if l.cont {
                self.login_reply(&l, l.csg, 0, false, (0, 0), Vec::new())?;
                continue;
            }
            let ans = st.step(&l, &acc);
            acc.clear();
            if let Some(why) = &ans.reason {
                tracing::info!(initiator = ?st.initiator_name, reason = %why, "login rejected");
            }
            let done = ans.done();
            let tsih = if done { self.t.new_tsih() } else { 0 };
            let mut l2 = l;
            l2.tsih = tsih;
            self.login_reply(
                &l2,
                ans.csg,
                ans.nsg,
                ans.transit,
                ans.status,
                ans.keys.encode(),
            )?;
            if ans.status != (0, 0) {
                self.out.finish()?;
                return Ok(false);
            }
            if done {
                self.params = st.params;
                self.kind = st.kind.unwrap_or(SessionKind::Normal);
                self.rx = Framing {
                    header_digest: self.params.header_digest,
                    data_digest: self.params.data_digest,
                    max_recv_data: self.params.max_recv_data,
                };
                self.tx = self.rx;
                debug_assert_eq!(ans.nsg, STAGE_FULL);
                tracing::info!(initiator = ?st.initiator_name, kind = ?self.kind, "login complete");
                return Ok(true);
            }
        }
    }

    fn login_reply(
        &mut self,
        req: &Login,
        csg: u8,
        nsg: u8,
        transit: bool,
        status: (u8, u8),
        data: Vec<u8>,
    ) -> Result<(), IoError> {
        let resp = Login {
            transit,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version: 0,
            isid: req.isid,
            tsih: req.tsih,
            itt: req.itt,
            cid: 0,
            sn: self.next_stat_sn(),
            exp_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            status_class: status.0,
            status_detail: status.1,
        };
        self.send(&Pdu::with_data(Bhs::LoginResp(resp), data))
    }

    /// CmdSN window check (RFC 7143 §4.2.2.1): out-of-window commands are silently ignored.
    fn accept_cmd_sn(&mut self, sn: u32, immediate: bool) -> bool {
        if immediate {
            return true;
        }
        if serial_lt(sn, self.exp_cmd_sn) || serial_lt(self.max_cmd_sn(), sn) {
            tracing::debug!(
                sn,
                exp = self.exp_cmd_sn,
                "ignoring command outside the CmdSN window"
            );
            return false;
        }
        self.exp_cmd_sn = sn.wrapping_add(1);
        true
    }

    fn dispatch(&mut self, pdu: Pdu) -> Result<Next, IoError> {
        let immediate = pdu.immediate;
        match pdu.bhs {
            Bhs::NopOut(n) => {
                if n.itt != 0xffff_ffff && !self.accept_cmd_sn(n.sn, immediate) {
                    return Ok(Next::Continue);
                }
                if n.itt != 0xffff_ffff {
                    let r = Nop {
                        lun: n.lun,
                        itt: n.itt,
                        ttt: 0xffff_ffff,
                        sn: self.next_stat_sn(),
                        exp_sn: self.exp_cmd_sn,
                        max_cmd_sn: self.max_cmd_sn(),
                    };
                    self.send(&Pdu::with_data(Bhs::NopIn(r), pdu.data))?;
                }
            }
            Bhs::ScsiCmd(c) => {
                if !self.accept_cmd_sn(c.cmd_sn, immediate) {
                    return Ok(Next::Continue);
                }
                if self.kind == SessionKind::Discovery {
                    self.reject(0x04, pdu.header().map(|h| h.to_vec()).unwrap_or_default())?;
                } else {
                    self.scsi(c, pdu.data)?;
                }
            }
            Bhs::TaskMgmt(t) => {
                if !self.accept_cmd_sn(t.cmd_sn, immediate) {
                    return Ok(Next::Continue);
                }
                let (resp, close) = self.task_mgmt(&t, None);
                self.tmf_reply(t.itt, resp)?;
                if close {
                    return Ok(Next::Close);
                }
            }
            Bhs::TextReq(t) => {
                if !self.accept_cmd_sn(t.sn, immediate) {
                    return Ok(Next::Continue);
                }
                self.text(t, &pdu.data)?;
            }
            Bhs::LogoutReq(l) => {
                self.accept_cmd_sn(l.cmd_sn, immediate);
                let r = pdu::LogoutResp {
                    response: if l.reason == 2 { 2 } else { 0 },
                    itt: l.itt,
                    stat_sn: self.next_stat_sn(),
                    exp_cmd_sn: self.exp_cmd_sn,
                    max_cmd_sn: self.max_cmd_sn(),
                    time2wait: 0,
                    time2retain: 0,
                };
                self.send(&Pdu::new(Bhs::LogoutResp(r)))?;
                return Ok(Next::Close);
            }
            // Data for a task that is no longer active (aborted, failed): drop it.
            Bhs::DataOut(_) => {}
            _ => {
                let h = pdu.header().map(|h| h.to_vec()).unwrap_or_default();
                self.reject(0x04, h)?;
            }
        }
        Ok(Next::Continue)
    }

    fn tmf_reply(&mut self, itt: u32, response: u8) -> Result<(), IoError> {
        let r = pdu::TaskMgmtResp {
            response,
            itt,
            stat_sn: self.next_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        };
        self.send(&Pdu::new(Bhs::TaskMgmtResp(r)))
    }

    /// Performs a task management function; `active` is the ITT of a command waiting for
    /// data. Returns the response code and whether the connection must close.
    fn task_mgmt(&mut self, t: &pdu::TaskMgmt, active: Option<u32>) -> (u8, bool) {
        let lun_based = matches!(t.function, 1..=5);
        if lun_based && t.lun != 0 {
            return (2, false);
        }
        let is_cmd = |p: &Pdu, itt: Option<u32>| match p.bhs {
            Bhs::ScsiCmd(c) => itt.is_none_or(|i| c.itt == i),
            _ => false,
        };
        match t.function {
            1 => {
                if active == Some(t.ref_itt) {
                    return (0, false);
                }
                let before = self.pending.len();
                self.pending.retain(|p| !is_cmd(p, Some(t.ref_itt)));
                // Already completed (or never seen): "task does not exist".
                (if self.pending.len() < before { 0 } else { 1 }, false)
            }
            2 | 3 | 5 | 6 => {
                self.pending.retain(|p| !is_cmd(p, None));
                (0, false)
            }
            7 => (0, true),
            8 => (4, false),
            _ => (5, false),
        }
    }

    fn text(&mut self, t: pdu::Text, data: &[u8]) -> Result<(), IoError> {
        let mut out = Pairs::new();
        match Pairs::parse(data) {
            Ok(req) => {
                for (k, v) in &req.0 {
                    if k == "SendTargets" {
                        let name = &self.t.cfg.iqn;
                        if v == "All"
                            || v == name
                            || (v.is_empty() && self.kind == SessionKind::Normal)
                        {
                            out.push("TargetName", name.clone());
                            if let Some(a) = self.local {
                                let host = match a {
                                    SocketAddr::V4(v4) => v4.ip().to_string(),
                                    SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
                                };
                                out.push("TargetAddress", format!("{host}:{},1", a.port()));
                            }
                        }
                    } else {
                        out.push(k, "NotUnderstood");
                    }
                }
            }
            Err(e) => {
                tracing::info!(error = %e, "bad text request");
                out.push("X-ferrite-error", "malformed");
            }
        }
        let r = pdu::Text {
            final_: true,
            cont: false,
            lun: t.lun,
            itt: t.itt,
            ttt: 0xffff_ffff,
            sn: self.next_stat_sn(),
            exp_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        };
        self.send(&Pdu::with_data(Bhs::TextResp(r), out.encode()))
    }
}
