//! The iSCSI initiator on tokio: login (None or CHAP, optionally mutual), SendTargets
//! discovery, one-command-at-a-time SCSI I/O on LUN 0 (read, write, sync, unmap), and
//! tagged writes with several in flight (see `initiator_tasks.rs`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[path = "initiator_login.rs"]
mod login;
#[path = "initiator_tasks.rs"]
mod tasks;

pub use tasks::Completion;

use bytes::Bytes;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::chap::{ChapError, Credentials};
use crate::io::{read_pdu_async, write_pdu_async, IoError};
use crate::pdu::{Bhs, Framing, Logout, Nop, Pdu, ScsiCmd, Text};
use crate::scsi::Sense;
use crate::text::{Offer, Pairs, Params};

#[derive(Debug, thiserror::Error)]
pub enum InitiatorError {
    #[error("cannot connect to the iSCSI target at {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("iSCSI connection failed")]
    Io(#[from] IoError),
    #[error("login rejected with status {class:#04x}/{detail:#04x} ({meaning}); check the target name and CHAP credentials")]
    LoginRejected {
        class: u8,
        detail: u8,
        meaning: &'static str,
    },
    #[error("CHAP authentication failed")]
    Chap(#[from] ChapError),
    #[error("the target did not prove its identity with mutual CHAP")]
    MutualChapFailed,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("SCSI command {opcode:#04x} failed: {sense}")]
    CheckCondition { opcode: u8, sense: Sense },
    #[error("SCSI command {opcode:#04x} failed with status {status:#04x}")]
    Status { opcode: u8, status: u8 },
    #[error("the target rejected a PDU (reason {0:#04x})")]
    Rejected(u8),
    #[error("the iSCSI target sent nothing for {0:?} while a response was due; it may be hung or the network is down")]
    Timeout(Duration),
    #[error("LBA range {lba}+{blocks} is outside the LUN of {capacity} blocks")]
    OutOfRange {
        lba: u64,
        blocks: u64,
        capacity: u64,
    },
    #[error("buffer of {len} bytes is not a whole number of {block}-byte blocks")]
    Unaligned { len: usize, block: u32 },
    /// The connection failed (socket error, malformed PDU, protocol violation); every
    /// command outstanding on it, and every later one, fails with this cause.
    #[error("the iSCSI session failed; log in again")]
    SessionFailed {
        #[source]
        cause: Arc<InitiatorError>,
    },
    #[error("{0} commands are still outstanding; collect their completions first")]
    Outstanding(usize),
}

impl InitiatorError {
    /// The target refused the login for authentication (status 0x02/0x01, RFC 7143
    /// §11.13.5): wrong or missing CHAP credentials, or an initiator it does not admit.
    pub fn is_authentication_failure(&self) -> bool {
        matches!(
            self,
            InitiatorError::LoginRejected {
                class: 2,
                detail: 1,
                ..
            }
        )
    }
}

fn login_meaning(class: u8, detail: u8) -> &'static str {
    match (class, detail) {
        (1, _) => "redirection",
        (2, 1) => "authentication failure",
        (2, 2) => "authorization failure",
        (2, 3) => "target not found",
        (2, 5) => "unsupported version",
        (2, 7) => "missing parameter",
        (2, _) => "initiator error",
        (3, _) => "target error",
        _ => "unknown",
    }
}

/// Who we are and where we log in.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    pub initiator_name: String,
    /// None for a discovery session.
    pub target_name: Option<String>,
    pub chap: Option<Credentials>,
    /// When set, we challenge the target and expect these credentials back.
    pub mutual_chap: Option<Credentials>,
    pub offer: Offer,
    /// How long to wait for the target's next PDU while one is due; a target silent for
    /// longer breaks the session instead of hanging the deploy.
    pub response_timeout: Duration,
}

/// Default of [`LoginOptions::response_timeout`]: room for a SYNCHRONIZE CACHE of a big,
/// slow disk.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);

impl LoginOptions {
    pub fn new(initiator_name: impl Into<String>, target_name: impl Into<String>) -> LoginOptions {
        LoginOptions {
            initiator_name: initiator_name.into(),
            target_name: Some(target_name.into()),
            chap: None,
            mutual_chap: None,
            offer: Offer::default(),
            response_timeout: RESPONSE_TIMEOUT,
        }
    }
}

/// One logged-in session with one connection.
#[derive(Debug)]
pub struct Initiator {
    r: BufReader<OwnedReadHalf>,
    w: BufWriter<OwnedWriteHalf>,
    rx: Framing,
    tx: Framing,
    params: Params,
    isid: [u8; 6],
    tsih: u16,
    itt: u32,
    cmd_sn: u32,
    exp_stat_sn: u32,
    block_size: u32,
    blocks: u64,
    /// READ CAPACITY(16) said LBPME and LBPRZ: unmapped blocks read back as zeros.
    unmap_zeroes: bool,
    /// The LUN field of our commands (SAM peripheral addressing).
    lun: u64,
    /// The target's command window (RFC 7143 §4.2.2.1): we may send CmdSN ≤ MaxCmdSN.
    exp_cmd_sn: u32,
    max_cmd_sn: u32,
    /// Tagged commands in flight, by ITT.
    tasks: HashMap<u32, tasks::Task>,
    /// Tagged commands to send again (after a UNIT ATTENTION).
    retry: VecDeque<tasks::Task>,
    /// Finished tagged commands not yet collected.
    done: VecDeque<Completion>,
    next_tag: u64,
    /// Set once the connection failed: everything after fails with this cause.
    broken: Option<Arc<InitiatorError>>,
    response_timeout: Duration,
}

impl Initiator {
    /// Connects, logs in, and reads LUN 0's capacity (for a normal session).
    pub async fn connect(
        addr: SocketAddr,
        opts: &LoginOptions,
    ) -> Result<Initiator, InitiatorError> {
        Initiator::connect_lun(addr, opts, 0).await
    }

    /// Like [`Initiator::connect`] for another LUN (0–255), e.g. tgtd's disks start at 1.
    pub async fn connect_lun(
        addr: SocketAddr,
        opts: &LoginOptions,
        lun: u8,
    ) -> Result<Initiator, InitiatorError> {
        let sock = TcpStream::connect(addr)
            .await
            .map_err(|source| InitiatorError::Connect { addr, source })?;
        sock.set_nodelay(true).map_err(IoError::Io)?;
        let (r, w) = sock.into_split();
        let mut isid = [0x80u8, 0, 0, 0, 0, 0];
        isid[2..6].copy_from_slice(&rand::random::<u32>().to_be_bytes());
        let mut s = Initiator {
            r: BufReader::with_capacity(256 * 1024, r),
            w: BufWriter::with_capacity(256 * 1024, w),
            rx: Framing::default(),
            tx: Framing::default(),
            params: Params::default(),
            isid,
            tsih: 0,
            itt: 1,
            cmd_sn: 1,
            exp_stat_sn: 0,
            block_size: 512,
            blocks: 0,
            unmap_zeroes: false,
            lun: (lun as u64) << 48,
            exp_cmd_sn: 1,
            max_cmd_sn: 1,
            tasks: HashMap::new(),
            retry: VecDeque::new(),
            done: VecDeque::new(),
            next_tag: 1,
            broken: None,
            response_timeout: opts.response_timeout,
        };
        s.login(opts).await?;
        if opts.target_name.is_some() {
            let cap = s.command(read_capacity16(), 32, None).await?;
            let cap = Capacity::parse16(&cap)?;
            s.blocks = cap.blocks;
            s.block_size = cap.block_size;
            s.unmap_zeroes = cap.unmap_zeroes;
        }
        Ok(s)
    }

    /// Runs a discovery session and returns (TargetName, TargetAddress) pairs.
    pub async fn discover(
        addr: SocketAddr,
        initiator_name: &str,
    ) -> Result<Vec<(String, String)>, InitiatorError> {
        let opts = LoginOptions {
            target_name: None,
            ..LoginOptions::new(initiator_name, "")
        };
        let mut s = Initiator::connect(addr, &opts).await?;
        let mut req = Pairs::new();
        req.push("SendTargets", "All");
        let itt = s.next_itt();
        let t = Text {
            final_: true,
            itt,
            ttt: 0xffff_ffff,
            sn: s.cmd_sn,
            exp_sn: s.exp_stat_sn,
            ..Default::default()
        };
        s.cmd_sn = s.cmd_sn.wrapping_add(1);
        s.send(Pdu::with_data(Bhs::TextReq(t), req.encode()))
            .await?;
        let resp = loop {
            let p = s.recv().await?;
            if let Bhs::TextResp(t) = p.bhs {
                s.exp_stat_sn = t.sn.wrapping_add(1);
                break p.data;
            }
            s.unexpected(p)?;
        };
        let mut out = Vec::new();
        let mut name: Option<String> = None;
        for item in resp.split(|&b| b == 0).filter(|i| !i.is_empty()) {
            let s = String::from_utf8_lossy(item);
            if let Some(n) = s.strip_prefix("TargetName=") {
                name = Some(n.to_string());
            } else if let (Some(a), Some(n)) = (s.strip_prefix("TargetAddress="), &name) {
                out.push((n.clone(), a.to_string()));
            }
        }
        s.logout().await?;
        Ok(out)
    }

    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Capacity in blocks.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// True when the LUN is thin-provisioned and unmapped blocks read back as zeros
    /// (READ CAPACITY(16) LBPME and LBPRZ), so UNMAP is a way to zero it.
    pub fn unmap_zeroes(&self) -> bool {
        self.unmap_zeroes
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    fn next_itt(&mut self) -> u32 {
        loop {
            let i = self.itt;
            self.itt = self.itt.wrapping_add(1);
            if self.itt == 0xffff_ffff {
                self.itt = 1;
            }
            if !self.tasks.contains_key(&i) {
                return i;
            }
        }
    }

    async fn send(&mut self, pdu: Pdu) -> Result<(), IoError> {
        write_pdu_async(&mut self.w, &pdu, &self.tx).await?;
        self.w.flush().await?;
        Ok(())
    }

    /// Sends a PDU; a failure breaks the session (failing every tagged command).
    async fn send_or_break(&mut self, pdu: Pdu) -> Result<(), InitiatorError> {
        self.check_session()?;
        match self.send(pdu).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.break_session(InitiatorError::Io(e))),
        }
    }

    /// Reads the next PDU and notes the command window it carries. A failure breaks the
    /// session: the stream cannot be trusted after it.
    async fn recv(&mut self) -> Result<Pdu, InitiatorError> {
        self.check_session()?;
        let read = read_pdu_async(&mut self.r, &self.rx);
        let p = match tokio::time::timeout(self.response_timeout, read).await {
            Ok(Ok(Ok(p))) => p,
            Ok(Ok(Err((e, _)))) => {
                return Err(self.break_session(InitiatorError::Io(IoError::Pdu(e))))
            }
            Ok(Err(e)) => return Err(self.break_session(InitiatorError::Io(e))),
            Err(_) => {
                let t = self.response_timeout;
                return Err(self.break_session(InitiatorError::Timeout(t)));
            }
        };
        if let Some((exp, max)) = tasks::window_of(&p.bhs) {
            self.note_window(exp, max);
        }
        Ok(p)
    }

    /// Handles PDUs that may arrive at any time; anything else is a protocol error.
    fn unexpected(&mut self, p: Pdu) -> Result<(), InitiatorError> {
        match p.bhs {
            Bhs::Reject(r) => Err(InitiatorError::Rejected(r.reason)),
            Bhs::NopIn(_) | Bhs::Other(_) => Ok(()),
            other => Err(InitiatorError::Protocol(format!(
                "unexpected PDU opcode {:#04x}",
                other.opcode()
            ))),
        }
    }

    /// Runs one SCSI command: up to `read_len` bytes in, or `write` out. A UNIT ATTENTION
    /// (reset, parameters changed) is reported once per event, so the command is retried.
    pub async fn command(
        &mut self,
        cdb: [u8; 16],
        read_len: u32,
        write: Option<&[u8]>,
    ) -> Result<Vec<u8>, InitiatorError> {
        let mut tries = 0;
        loop {
            match self.command_once(cdb, read_len, write).await {
                Err(InitiatorError::CheckCondition { sense, .. })
                    if sense.key == crate::scsi::sense::key::UNIT_ATTENTION && tries < 4 =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    async fn command_once(
        &mut self,
        cdb: [u8; 16],
        read_len: u32,
        write: Option<&[u8]>,
    ) -> Result<Vec<u8>, InitiatorError> {
        self.wait_window().await?;
        let itt = self.next_itt();
        let out = Bytes::copy_from_slice(write.unwrap_or(&[]));
        let edtl = if write.is_some() {
            out.len() as u32
        } else {
            read_len
        };
        let imm = self.immediate_len(out.len());
        let cmd = ScsiCmd {
            final_: true,
            read: read_len > 0 && write.is_none(),
            write: write.is_some() && !out.is_empty(),
            attr: 1, // simple
            lun: self.lun,
            itt,
            edtl,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            cdb,
        };
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        self.send_or_break(Pdu::with_data(Bhs::ScsiCmd(cmd), out.slice(..imm)))
            .await?;
        let mut result = vec![
            0u8;
            if write.is_some() {
                0
            } else {
                read_len as usize
            }
        ];
        let mut got = 0usize;
        loop {
            let p = self.recv().await?;
            match p.bhs {
                Bhs::DataIn(d) if d.itt == itt => {
                    let start = d.offset as usize;
                    let end = start + p.data.len();
                    if end > result.len() {
                        return Err(InitiatorError::Protocol(format!(
                            "Data-In beyond the buffer ({end} > {})",
                            result.len()
                        )));
                    }
                    result[start..end].copy_from_slice(&p.data);
                    got = got.max(end);
                    if d.has_status {
                        self.exp_stat_sn = d.stat_sn.wrapping_add(1);
                        if d.status != 0 {
                            return Err(InitiatorError::Status {
                                opcode: cdb[0],
                                status: d.status,
                            });
                        }
                        result.truncate(got);
                        return Ok(result);
                    }
                }
                Bhs::R2t(r) if r.itt == itt => self.answer_r2t(&r, &out).await?,
                Bhs::ScsiResp(r) if r.itt == itt => {
                    self.exp_stat_sn = r.stat_sn.wrapping_add(1);
                    tasks::response_result(cdb[0], &r, &p.data)?;
                    result.truncate(got);
                    return Ok(result);
                }
                _ => self.other_pdu(p).await?,
            }
        }
    }

    fn check_range(&self, lba: u64, blocks: u64) -> Result<(), InitiatorError> {
        match lba.checked_add(blocks) {
            Some(e) if e <= self.blocks => Ok(()),
            _ => Err(InitiatorError::OutOfRange {
                lba,
                blocks,
                capacity: self.blocks,
            }),
        }
    }

    /// Reads `blocks` blocks at `lba`.
    pub async fn read(&mut self, lba: u64, blocks: u32) -> Result<Vec<u8>, InitiatorError> {
        self.check_range(lba, blocks as u64)?;
        let len = blocks
            .checked_mul(self.block_size)
            .ok_or(InitiatorError::OutOfRange {
                lba,
                blocks: blocks as u64,
                capacity: self.blocks,
            })?;
        let data = self.command(rw16(0x88, lba, blocks), len, None).await?;
        if data.len() != len as usize {
            return Err(InitiatorError::Protocol(format!(
                "READ returned {} of {len} bytes",
                data.len()
            )));
        }
        Ok(data)
    }

    /// Writes whole blocks at `lba`.
    pub async fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), InitiatorError> {
        let bs = self.block_size as usize;
        if !data.len().is_multiple_of(bs) {
            return Err(InitiatorError::Unaligned {
                len: data.len(),
                block: self.block_size,
            });
        }
        let blocks = (data.len() / bs) as u32;
        self.check_range(lba, blocks as u64)?;
        if blocks == 0 {
            return Ok(());
        }
        self.command(rw16(0x8a, lba, blocks), 0, Some(data))
            .await
            .map(|_| ())
    }

    /// SYNCHRONIZE CACHE (16) over the whole LUN.
    pub async fn sync(&mut self) -> Result<(), InitiatorError> {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x91;
        self.command(cdb, 0, None).await.map(|_| ())
    }

    /// UNMAP one range.
    pub async fn unmap(&mut self, lba: u64, blocks: u32) -> Result<(), InitiatorError> {
        self.check_range(lba, blocks as u64)?;
        let mut p = vec![0u8; 24];
        p[0..2].copy_from_slice(&22u16.to_be_bytes());
        p[2..4].copy_from_slice(&16u16.to_be_bytes());
        p[8..16].copy_from_slice(&lba.to_be_bytes());
        p[16..20].copy_from_slice(&blocks.to_be_bytes());
        let mut cdb = [0u8; 16];
        cdb[0] = 0x42;
        cdb[7..9].copy_from_slice(&24u16.to_be_bytes());
        self.command(cdb, 0, Some(&p)).await.map(|_| ())
    }

    pub async fn test_unit_ready(&mut self) -> Result<(), InitiatorError> {
        self.command([0u8; 16], 0, None).await.map(|_| ())
    }

    /// NOP-Out ping; returns when the target echoes it.
    pub async fn ping(&mut self, payload: &[u8]) -> Result<Vec<u8>, InitiatorError> {
        let itt = self.next_itt();
        let n = Nop {
            lun: 0,
            itt,
            ttt: 0xffff_ffff,
            sn: self.cmd_sn,
            exp_sn: self.exp_stat_sn,
            max_cmd_sn: 0,
        };
        self.send(Pdu::with_data(Bhs::NopOut(n), Bytes::copy_from_slice(payload)).immediate())
            .await?;
        loop {
            let p = self.recv().await?;
            match p.bhs {
                Bhs::NopIn(r) if r.itt == itt => {
                    self.exp_stat_sn = r.sn.wrapping_add(1);
                    return Ok(p.data.to_vec());
                }
                _ => self.other_pdu(p).await?,
            }
        }
    }

    /// Logs the session out and closes the connection. Tagged commands must have been
    /// collected first ([`Initiator::next_completion`]).
    pub async fn logout(mut self) -> Result<(), InitiatorError> {
        let outstanding = self.in_flight() + self.done.len();
        if outstanding > 0 {
            return Err(InitiatorError::Outstanding(outstanding));
        }
        let itt = self.next_itt();
        let l = Logout {
            reason: 0,
            itt,
            cid: 0,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        };
        self.send(Pdu::new(Bhs::LogoutReq(l)).immediate()).await?;
        loop {
            let p = self.recv().await?;
            match p.bhs {
                Bhs::LogoutResp(r) if r.itt == itt => {
                    if r.response != 0 {
                        return Err(InitiatorError::Protocol(format!(
                            "logout response {}",
                            r.response
                        )));
                    }
                    let _ = self.w.shutdown().await;
                    return Ok(());
                }
                _ => self.other_pdu(p).await?,
            }
        }
    }
}

/// Largest logical block size we accept from a target. SBC allows any size, but real
/// disks use 512 or 4096 bytes; the block size sizes our buffers, so it is bounded.
pub const MAX_BLOCK_SIZE: u32 = 64 * 1024;

/// What READ CAPACITY(16) says about a LUN, checked: the numbers come from the network
/// and size buffers and LBA arithmetic, so none is taken unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub blocks: u64,
    pub block_size: u32,
    /// LBPME and LBPRZ: thin-provisioned, unmapped blocks read back as zeros.
    pub unmap_zeroes: bool,
}

impl Capacity {
    /// Parses READ CAPACITY(16) parameter data (SBC-4 §5.20.2). Bytes 0–11 (last LBA,
    /// block length) are required; the provisioning byte (14) only counts when sent.
    pub fn parse16(d: &[u8]) -> Result<Capacity, InitiatorError> {
        let bad = |what: String| InitiatorError::Protocol(format!("READ CAPACITY(16): {what}"));
        let (Some(last), Some(size)) = (d.get(0..8), d.get(8..12)) else {
            return Err(bad(format!(
                "the target returned {} bytes, at least 12 are needed",
                d.len()
            )));
        };
        let last = u64::from_be_bytes(last.try_into().expect("8 bytes"));
        let block_size = u32::from_be_bytes(size.try_into().expect("4 bytes"));
        if !block_size.is_power_of_two() || !(512..=MAX_BLOCK_SIZE).contains(&block_size) {
            return Err(bad(format!(
                "the target reports a block size of {block_size} bytes; \
                 a power of two from 512 to {MAX_BLOCK_SIZE} is required"
            )));
        }
        let blocks = last
            .checked_add(1)
            .filter(|b| b.checked_mul(u64::from(block_size)).is_some())
            .ok_or_else(|| {
                bad(format!(
                    "the target reports a last LBA of {last}, more than 2^64 bytes"
                ))
            })?;
        let unmap_zeroes = d.get(14).is_some_and(|b| b & 0xc0 == 0xc0);
        Ok(Capacity {
            blocks,
            block_size,
            unmap_zeroes,
        })
    }
}

pub(crate) fn rw16(op: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn read_capacity16() -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9e;
    c[1] = 0x10;
    c[13] = 32;
    c
}
