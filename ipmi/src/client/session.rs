//! An established RMCP+ session: the RAKP handshake, then encrypted and authenticated
//! commands with sequence numbers, and Close Session.

use super::transport::{Retry, Transport};
use super::{ClientConfig, ClientError};
use crate::codec::completion::completion_text;
use crate::codec::crypto::{ct_eq, key_from_password, RakpInputs, SessionKeys};
use crate::codec::message::{Request, Response};
use crate::codec::rakp::{self, Reply};
use crate::codec::session::{self, PayloadType};
use crate::codec::{commands, CipherSuite, Privilege};

/// RAKP 1 role byte flag: look the user up by name only.
const NAME_ONLY_LOOKUP: u8 = 0x10;

/// A live session with one BMC. Close it with [`Session::close`]; dropping it leaves the
/// session on the BMC until the BMC times it out.
pub struct Session {
    transport: Transport,
    retry: Retry,
    keys: SessionKeys,
    bmc_session_id: u32,
    console_session_id: u32,
    out_seq: u32,
    last_in_seq: u32,
    rq_seq: u8,
    privilege: Privilege,
    max_privilege: Privilege,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("bmc", &self.transport.addr)
            .field("bmc_session_id", &self.bmc_session_id)
            .field("privilege", &self.privilege)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Opens a session with `cfg.cipher_suite`, or, when that is `None`, with suite 17 and
    /// then suite 3 if the BMC refuses 17. No Get Channel Cipher Suites is needed (some BMCs,
    /// ipmi_sim among them, never answer it).
    pub async fn open(cfg: &ClientConfig) -> Result<Session, ClientError> {
        match cfg.cipher_suite {
            Some(suite) => Session::open_with(cfg, suite).await,
            None => match Session::open_with(cfg, CipherSuite::Suite17).await {
                Err(e) if e.is_unsupported_suite() => {
                    tracing::debug!(bmc = %cfg.addr, "cipher suite 17 refused, using 3");
                    Session::open_with(cfg, CipherSuite::Suite3).await
                }
                other => other,
            },
        }
    }

    /// Opens a session with `suite`: Open Session, RAKP 1/2, RAKP 3/4 (two round trips).
    pub async fn open_with(cfg: &ClientConfig, suite: CipherSuite) -> Result<Session, ClientError> {
        let addr = cfg.addr;
        let username = cfg.username.as_bytes();
        if username.len() > 16 {
            return Err(ClientError::UserNameTooLong(cfg.username.clone()));
        }
        let mut transport = Transport::connect(addr).await?;
        let retry = cfg.retry();
        // No RNG handle lives across an await: the futures stay Send.
        let console_session_id = rand::random::<u32>() | 1;
        let tag = rand::random::<u8>() & 0x3f;

        let open = session::encode_v2(
            PayloadType::OpenSessionRequest,
            0,
            0,
            &rakp::encode_open_session(tag, cfg.privilege as u8, console_session_id, suite),
            None,
        );
        let reply = transport
            .exchange(
                "Open Session Request",
                retry,
                || open.clone(),
                |d| {
                    let p = session::decode(d, None).ok()?;
                    if p.payload_type != Some(PayloadType::OpenSessionResponse) {
                        return None;
                    }
                    let r = rakp::decode_open_session_response(&p.payload).ok()?;
                    match &r {
                        Reply::Ok(o)
                            if o.tag == tag && o.console_session_id == console_session_id =>
                        {
                            Some(r)
                        }
                        Reply::Status { tag: t, .. } if *t == tag => Some(r),
                        _ => None,
                    }
                },
            )
            .await?;
        let opened = accepted(reply, addr, "Open Session")?;
        if (
            opened.auth_alg,
            opened.integrity_alg,
            opened.confidentiality_alg,
        ) != (
            suite.auth_alg(),
            suite.integrity_alg(),
            suite.confidentiality_alg(),
        ) {
            return Err(ClientError::AlgorithmMismatch {
                addr,
                suite: suite.id(),
                auth: opened.auth_alg,
                integrity: opened.integrity_alg,
                confidentiality: opened.confidentiality_alg,
            });
        }
        let bmc_session_id = opened.bmc_session_id;

        let console_random: [u8; 16] = rand::random();
        let role = cfg.privilege as u8 | NAME_ONLY_LOOKUP;
        let rakp1 = session::encode_v2(
            PayloadType::Rakp1,
            0,
            0,
            &rakp::encode_rakp1(tag, bmc_session_id, &console_random, role, username),
            None,
        );
        let reply = transport
            .exchange(
                "RAKP Message 1",
                retry,
                || rakp1.clone(),
                |d| {
                    let p = session::decode(d, None).ok()?;
                    if p.payload_type != Some(PayloadType::Rakp2) {
                        return None;
                    }
                    let r = rakp::decode_rakp2(&p.payload).ok()?;
                    match &r {
                        Reply::Ok(m)
                            if m.tag == tag && m.console_session_id == console_session_id =>
                        {
                            Some(r)
                        }
                        Reply::Status { tag: t, .. } if *t == tag => Some(r),
                        _ => None,
                    }
                },
            )
            .await?;
        let rakp2 = accepted(reply, addr, "RAKP 1 (user authentication)")?;
        let inputs = RakpInputs {
            suite,
            console_session_id,
            bmc_session_id,
            console_random,
            bmc_random: rakp2.bmc_random,
            bmc_guid: rakp2.bmc_guid,
            role,
            username,
            k_uid: key_from_password(cfg.password.as_bytes()),
            k_g: cfg.kg.as_deref().map(key_from_password),
        };
        if !ct_eq(&inputs.rakp2_auth_code(), &rakp2.auth_code) {
            // Tell the BMC we are giving up so it frees the session slot.
            let abort = session::encode_v2(
                PayloadType::Rakp3,
                0,
                0,
                &rakp::encode_rakp3(tag, 0x0f, bmc_session_id, &[]),
                None,
            );
            let _ = transport.send(&abort).await;
            return Err(ClientError::WrongPassword {
                addr,
                user: cfg.username.clone(),
            });
        }
        let sik = inputs.sik();
        let rakp3 = session::encode_v2(
            PayloadType::Rakp3,
            0,
            0,
            &rakp::encode_rakp3(tag, 0, bmc_session_id, &inputs.rakp3_auth_code()),
            None,
        );
        let reply = transport
            .exchange(
                "RAKP Message 3",
                retry,
                || rakp3.clone(),
                |d| {
                    let p = session::decode(d, None).ok()?;
                    if p.payload_type != Some(PayloadType::Rakp4) {
                        return None;
                    }
                    let r = rakp::decode_rakp4(&p.payload).ok()?;
                    match &r {
                        Reply::Ok(m)
                            if m.tag == tag && m.console_session_id == console_session_id =>
                        {
                            Some(r)
                        }
                        Reply::Status { tag: t, .. } if *t == tag => Some(r),
                        _ => None,
                    }
                },
            )
            .await?;
        let rakp4 = accepted(reply, addr, "RAKP 3 (session activation)")?;
        if !ct_eq(&inputs.rakp4_icv(&sik), &rakp4.icv) {
            return Err(ClientError::BadRakp4 { addr });
        }
        Ok(Session {
            transport,
            retry,
            keys: SessionKeys::derive(suite, &sik),
            bmc_session_id,
            console_session_id,
            out_seq: 0,
            last_in_seq: 0,
            rq_seq: 0,
            // RMCP+ sessions start at User level until Set Session Privilege Level.
            privilege: Privilege::User,
            max_privilege: cfg.privilege,
        })
    }

    /// Sends `req` in the session and returns the response data (completion code 0), or a
    /// readable error for any other completion code.
    pub async fn call(
        &mut self,
        command: &'static str,
        req: &Request,
        cmd_specific: Option<&'static str>,
    ) -> Result<Vec<u8>, ClientError> {
        self.rq_seq = (self.rq_seq + 1) & 0x3f;
        let rq_seq = self.rq_seq;
        let message = req.encode(rq_seq);
        let keys = self.keys.clone();
        let bmc_session_id = self.bmc_session_id;
        let console_session_id = self.console_session_id;
        let mut out_seq = self.out_seq;
        let mut last_in = self.last_in_seq;
        let resp = self
            .transport
            .exchange(
                command,
                self.retry,
                || {
                    // Every (re)transmission gets a fresh session sequence number and IV.
                    out_seq = out_seq.wrapping_add(1).max(1);
                    let iv: [u8; 16] = rand::random();
                    session::encode_v2(
                        PayloadType::Ipmi,
                        bmc_session_id,
                        out_seq,
                        &message,
                        Some((&keys, iv)),
                    )
                },
                |d| {
                    // Anything not from our session, not authenticated with our keys, or
                    // replayed is dropped here (spoofed session IDs included).
                    let p = session::decode(d, Some(&keys)).ok()?;
                    if p.payload_type != Some(PayloadType::Ipmi)
                        || p.session_id != console_session_id
                        || !p.authenticated
                        || (last_in != 0 && p.seq <= last_in)
                    {
                        return None;
                    }
                    let r = Response::decode(&p.payload).ok()?;
                    if r.rq_seq != rq_seq || r.cmd != req.cmd || r.netfn != req.netfn + 1 {
                        return None;
                    }
                    last_in = p.seq;
                    Some(r)
                },
            )
            .await;
        self.out_seq = out_seq;
        self.last_in_seq = last_in;
        let resp = resp?;
        if resp.completion_code != 0 {
            return Err(ClientError::Completion {
                addr: self.transport.addr,
                command,
                code: resp.completion_code,
                reason: completion_text(resp.completion_code, cmd_specific),
            });
        }
        Ok(resp.data)
    }

    /// Raises the session to the configured privilege if `needed` is above the current one.
    pub async fn ensure_privilege(&mut self, needed: Privilege) -> Result<(), ClientError> {
        if self.privilege >= needed {
            return Ok(());
        }
        let target = self.max_privilege.max(needed);
        let req = commands::set_session_privilege(target);
        self.call("Set Session Privilege Level", &req, Some(PRIV_ERRORS))
            .await?;
        self.privilege = target;
        Ok(())
    }

    /// Closes another session on the BMC (needs administrator privilege).
    pub async fn close_other(&mut self, bmc_session_id: u32) -> Result<(), ClientError> {
        self.ensure_privilege(Privilege::Administrator).await?;
        let req = commands::close_session(bmc_session_id);
        self.call("Close Session", &req, None).await.map(|_| ())
    }

    /// Closes the session on the BMC.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let req = commands::close_session(self.bmc_session_id);
        self.call("Close Session", &req, None).await.map(|_| ())
    }

    /// The cipher suite this session runs with.
    pub fn cipher_suite(&self) -> CipherSuite {
        self.keys.suite
    }

    pub fn bmc_session_id(&self) -> u32 {
        self.bmc_session_id
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.transport.addr
    }
}

const PRIV_ERRORS: &str =
    "requested privilege level is above the user's limit (use an operator or administrator \
     account, or lower ipmi_priv_level)";

/// The payload of a session-setup reply, or the BMC's refusal at `stage` as an error.
fn accepted<T>(
    reply: Reply<T>,
    addr: std::net::SocketAddr,
    stage: &'static str,
) -> Result<T, ClientError> {
    match reply {
        Reply::Ok(payload) => Ok(payload),
        Reply::Status { code, .. } => Err(ClientError::SessionRefused {
            addr,
            stage,
            code,
            reason: rakp::status_text(code),
        }),
    }
}
