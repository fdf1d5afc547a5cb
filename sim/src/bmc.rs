//! A simulated BMC: IPMI 2.0 RMCP+ ("lanplus") on one UDP socket, built on ferrite-ipmi's
//! codec (its BMC side, `codec::bmc`). It answers ASF ping, Get Channel Authentication
//! Capabilities and Get Channel Cipher Suites outside a session, the RMCP+ Open Session and
//! RAKP 1–4 exchange (cipher suites 3 and 17, one user), and inside a session Get Device
//! ID, Set Session Privilege Level, Close Session, Get Chassis Status, Chassis Control and
//! Get/Set System Boot Options. Power and boot-device changes act on the [`Machine`].

use std::collections::HashMap;
use std::sync::Arc;

use ferrite_ipmi::codec::bmc::{self as wire, BootOptionsSet};
use ferrite_ipmi::codec::commands::{NETFN_APP, NETFN_CHASSIS};
use ferrite_ipmi::codec::crypto::{ct_eq, key_from_password, RakpInputs, SessionKeys};
use ferrite_ipmi::codec::message::{Request, Response};
use ferrite_ipmi::codec::rmcp::{self, RmcpClass};
use ferrite_ipmi::codec::session::{self, PayloadType, AUTH_TYPE_RMCP_PLUS};
use ferrite_ipmi::codec::CipherSuite;
use ferrite_ipmi::{BootOptions, ChassisControl};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;

use crate::machine::Machine;
use crate::Fleet;

/// Sessions one BMC keeps; the least recently used goes when a new one needs room.
const MAX_SESSIONS: usize = 32;
/// Completion codes.
const CC_OK: u8 = 0x00;
const CC_PARAM_UNSUPPORTED: u8 = 0x80;
const CC_INVALID_COMMAND: u8 = 0xc1;
const CC_INVALID_DATA: u8 = 0xcc;
/// RMCP+ status codes.
const ST_INSUFFICIENT_RESOURCES: u8 = 0x01;
const ST_INVALID_SESSION: u8 = 0x02;
const ST_UNAUTHORIZED_NAME: u8 = 0x0d;
const ST_INVALID_ICV: u8 = 0x0f;
const ST_NO_CIPHER_SUITE: u8 = 0x11;

#[derive(Clone)]
struct Handshake {
    tag: u8,
    console_random: [u8; 16],
    bmc_random: [u8; 16],
    role: u8,
    username: Vec<u8>,
}

struct Session {
    console_session_id: u32,
    suite: CipherSuite,
    max_privilege: u8,
    privilege: u8,
    handshake: Option<Handshake>,
    keys: Option<SessionKeys>,
    out_seq: u32,
    last_used: u64,
}

/// One BMC's protocol state.
pub struct Bmc {
    sessions: HashMap<u32, Session>,
    guid: [u8; 16],
    rng: StdRng,
    clock: u64,
}

impl Bmc {
    pub fn new(seed: u64) -> Bmc {
        let mut rng = StdRng::seed_from_u64(seed);
        Bmc {
            sessions: HashMap::new(),
            guid: rng.random(),
            rng,
            clock: 0,
        }
    }

    /// Active and half-open sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// Serves the BMC of node `index` on `sock` until the fleet stops.
pub async fn serve(fleet: Arc<Fleet>, index: usize, sock: UdpSocket) {
    let Some(machine) = fleet.machine(index).cloned() else {
        return;
    };
    let seed = fleet.cfg.seed ^ 0xb3c0_0000_0000_0000 ^ index as u64;
    let mut bmc = Bmc::new(seed);
    let mut drops = StdRng::seed_from_u64(seed ^ 0xd509);
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, peer) = tokio::select! {
            _ = fleet.stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(index, error = %e, "BMC receive");
                    continue;
                }
            },
        };
        let Some(reply) = bmc.handle(&fleet, &machine, &buf[..n]) else {
            continue;
        };
        if fleet.cfg.bmc_drop_probability > 0.0
            && drops.random::<f64>() < fleet.cfg.bmc_drop_probability
        {
            fleet.stats.bmc_dropped();
            continue;
        }
        fleet.stats.bmc_answered();
        if let Err(e) = sock.send_to(&reply, peer).await {
            tracing::debug!(index, %peer, error = %e, "BMC send");
        }
    }
}

fn suite_of(auth: u8, integrity: u8, confidentiality: u8) -> Option<CipherSuite> {
    [CipherSuite::Suite3, CipherSuite::Suite17]
        .into_iter()
        .find(|s| {
            (s.auth_alg(), s.integrity_alg(), s.confidentiality_alg())
                == (auth, integrity, confidentiality)
        })
}

impl Bmc {
    /// The answer to one datagram, or nothing (garbage, a stray or forged packet).
    pub fn handle(&mut self, fleet: &Arc<Fleet>, m: &Arc<Machine>, d: &[u8]) -> Option<Vec<u8>> {
        self.clock += 1;
        let (class, body) = rmcp::split(d).ok()?;
        if class == RmcpClass::Asf {
            return wire::decode_ping(d).ok().map(wire::encode_pong);
        }
        if *body.first()? != AUTH_TYPE_RMCP_PLUS {
            // IPMI 1.5 wrapper: only the sessionless discovery commands.
            let p = session::decode(d, None).ok()?;
            let (req, rq_seq) = Request::decode(&p.payload).ok()?;
            let (cc, data) = self.sessionless(&req);
            return Some(session::encode_v15(0, 0, &response(&req, rq_seq, cc, data)));
        }
        let header = body.get(..10)?;
        let payload_type = PayloadType::from_byte(header[1]).ok()?;
        let session_id = u32::from_le_bytes(header[2..6].try_into().ok()?);
        match payload_type {
            PayloadType::OpenSessionRequest => {
                let p = session::decode(d, None).ok()?;
                Some(self.open_session(&p.payload))
            }
            PayloadType::Rakp1 => {
                let p = session::decode(d, None).ok()?;
                Some(self.rakp1(&p.payload, fleet))
            }
            PayloadType::Rakp3 => {
                let p = session::decode(d, None).ok()?;
                self.rakp3(&p.payload, fleet)
            }
            PayloadType::Ipmi if session_id == 0 => {
                let p = session::decode(d, None).ok()?;
                let (req, rq_seq) = Request::decode(&p.payload).ok()?;
                let (cc, data) = self.sessionless(&req);
                let resp = response(&req, rq_seq, cc, data);
                Some(session::encode_v2(PayloadType::Ipmi, 0, 0, &resp, None))
            }
            PayloadType::Ipmi => self.in_session(session_id, d, fleet, m),
            _ => None,
        }
    }

    fn sessionless(&self, req: &Request) -> (u8, Vec<u8>) {
        match (req.netfn, req.cmd) {
            (NETFN_APP, 0x38) => (CC_OK, wire::auth_capabilities_data(1)),
            (NETFN_APP, 0x54) => {
                let index = req.data.get(2).copied().unwrap_or(0x80);
                (CC_OK, wire::cipher_suites_data(1, index))
            }
            (NETFN_APP, 0x01) => (CC_OK, wire::device_id_data(0x20, 0xb3c, 1)),
            _ => (CC_INVALID_COMMAND, vec![]),
        }
    }

    fn open_session(&mut self, payload: &[u8]) -> Vec<u8> {
        let clear =
            |b: Vec<u8>| session::encode_v2(PayloadType::OpenSessionResponse, 0, 0, &b, None);
        let Ok(mut req) = wire::decode_open_session_request(payload) else {
            return clear(vec![
                payload.first().copied().unwrap_or(0),
                0x12,
                0,
                0,
                0,
                0,
                0,
                0,
            ]);
        };
        let Some(suite) = suite_of(req.auth_alg, req.integrity_alg, req.confidentiality_alg) else {
            return clear(wire::encode_open_session_response(
                &req,
                ST_NO_CIPHER_SUITE,
                0,
            ));
        };
        if self.sessions.len() >= MAX_SESSIONS {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    self.sessions.remove(&id);
                }
                None => {
                    return clear(wire::encode_open_session_response(
                        &req,
                        ST_INSUFFICIENT_RESOURCES,
                        0,
                    ))
                }
            }
        }
        if req.max_privilege == 0 {
            req.max_privilege = 4; // "the highest the user may have": administrator
        }
        let mut bmc_session_id = 0;
        while bmc_session_id == 0 || self.sessions.contains_key(&bmc_session_id) {
            bmc_session_id = self.rng.random();
        }
        self.sessions.insert(
            bmc_session_id,
            Session {
                console_session_id: req.console_session_id,
                suite,
                max_privilege: req.max_privilege,
                privilege: 2,
                handshake: None,
                keys: None,
                out_seq: 0,
                last_used: self.clock,
            },
        );
        clear(wire::encode_open_session_response(&req, 0, bmc_session_id))
    }

    fn rakp1(&mut self, payload: &[u8], fleet: &Fleet) -> Vec<u8> {
        let clear = |b: Vec<u8>| session::encode_v2(PayloadType::Rakp2, 0, 0, &b, None);
        let Ok(r1) = wire::decode_rakp1(payload) else {
            return clear(vec![
                payload.first().copied().unwrap_or(0),
                0x12,
                0,
                0,
                0,
                0,
                0,
                0,
            ]);
        };
        let fresh: [u8; 16] = self.rng.random();
        let guid = self.guid;
        let Some(s) = self.sessions.get_mut(&r1.bmc_session_id) else {
            return clear(wire::encode_rakp2(
                r1.tag,
                ST_INVALID_SESSION,
                0,
                &[0; 16],
                &[0; 16],
                &[],
            ));
        };
        if r1.username != fleet.cfg.username.as_bytes() {
            let console = s.console_session_id;
            self.sessions.remove(&r1.bmc_session_id);
            return clear(wire::encode_rakp2(
                r1.tag,
                ST_UNAUTHORIZED_NAME,
                console,
                &[0; 16],
                &[0; 16],
                &[],
            ));
        }
        // A retransmitted RAKP 1 (its RAKP 2 was lost or late) gets the same random, so
        // that whichever RAKP 2 the console takes matches the session.
        let bmc_random = match &s.handshake {
            Some(h) if h.console_random == r1.console_random => h.bmc_random,
            _ => fresh,
        };
        let inputs = RakpInputs {
            suite: s.suite,
            console_session_id: s.console_session_id,
            bmc_session_id: r1.bmc_session_id,
            console_random: r1.console_random,
            bmc_random,
            bmc_guid: guid,
            role: r1.role,
            username: &r1.username,
            k_uid: key_from_password(fleet.cfg.password.as_bytes()),
            k_g: None,
        };
        let code = inputs.rakp2_auth_code();
        s.handshake = Some(Handshake {
            tag: r1.tag,
            console_random: r1.console_random,
            bmc_random,
            role: r1.role,
            username: r1.username.clone(),
        });
        s.last_used = self.clock;
        clear(wire::encode_rakp2(
            r1.tag,
            0,
            s.console_session_id,
            &bmc_random,
            &guid,
            &code,
        ))
    }

    fn rakp3(&mut self, payload: &[u8], fleet: &Fleet) -> Option<Vec<u8>> {
        let clear = |b: Vec<u8>| session::encode_v2(PayloadType::Rakp4, 0, 0, &b, None);
        let r3 = wire::decode_rakp3(payload).ok()?;
        let guid = self.guid;
        let Some(s) = self.sessions.get_mut(&r3.bmc_session_id) else {
            return Some(clear(wire::encode_rakp4(
                r3.tag,
                ST_INVALID_SESSION,
                0,
                &[],
            )));
        };
        let console = s.console_session_id;
        // Kept after activation: a console whose RAKP 4 was lost sends RAKP 3 again and
        // gets the same answer.
        let Some(h) = s.handshake.clone() else {
            return Some(clear(wire::encode_rakp4(
                r3.tag,
                ST_INVALID_SESSION,
                console,
                &[],
            )));
        };
        if r3.status != 0 {
            // The console gave up (it did not like our RAKP 2): forget the session.
            self.sessions.remove(&r3.bmc_session_id);
            return None;
        }
        let inputs = RakpInputs {
            suite: s.suite,
            console_session_id: console,
            bmc_session_id: r3.bmc_session_id,
            console_random: h.console_random,
            bmc_random: h.bmc_random,
            bmc_guid: guid,
            role: h.role,
            username: &h.username,
            k_uid: key_from_password(fleet.cfg.password.as_bytes()),
            k_g: None,
        };
        if !ct_eq(&inputs.rakp3_auth_code(), &r3.auth_code) {
            self.sessions.remove(&r3.bmc_session_id);
            return Some(clear(wire::encode_rakp4(
                h.tag,
                ST_INVALID_ICV,
                console,
                &[],
            )));
        }
        let sik = inputs.sik();
        let icv = inputs.rakp4_icv(&sik);
        s.keys = Some(SessionKeys::derive(s.suite, &sik));
        s.last_used = self.clock;
        Some(clear(wire::encode_rakp4(h.tag, 0, console, &icv)))
    }

    fn in_session(
        &mut self,
        session_id: u32,
        d: &[u8],
        fleet: &Arc<Fleet>,
        m: &Arc<Machine>,
    ) -> Option<Vec<u8>> {
        let s = self.sessions.get_mut(&session_id)?;
        let keys = s.keys.clone()?;
        let p = session::decode(d, Some(&keys)).ok()?;
        if !p.authenticated {
            return None;
        }
        s.last_used = self.clock;
        let (req, rq_seq) = Request::decode(&p.payload).ok()?;
        let mut close = None;
        let (cc, data) = match (req.netfn, req.cmd) {
            (NETFN_APP, 0x3b) => {
                let wanted = req.data.first().copied().unwrap_or(0) & 0x0f;
                if wanted == 0 {
                    (CC_OK, vec![s.privilege])
                } else if wanted > s.max_privilege.max(4) || wanted < 1 {
                    (CC_INVALID_DATA, vec![])
                } else {
                    s.privilege = wanted;
                    (CC_OK, vec![wanted])
                }
            }
            (NETFN_APP, 0x3c) => match req.data.get(..4) {
                Some(id) => {
                    close = Some(u32::from_le_bytes(id.try_into().ok()?));
                    (CC_OK, vec![])
                }
                None => (CC_INVALID_DATA, vec![]),
            },
            (NETFN_APP, _) => self.sessionless(&req),
            (NETFN_CHASSIS, 0x01) => (CC_OK, wire::chassis_status_data(m.power())),
            (NETFN_CHASSIS, 0x02) => match wire::decode_chassis_control(&req.data) {
                Ok(action) => {
                    control(fleet, m, action);
                    (CC_OK, vec![])
                }
                Err(_) => (CC_INVALID_DATA, vec![]),
            },
            (NETFN_CHASSIS, 0x08) => match wire::decode_set_boot_options(&req.data) {
                Ok(BootOptionsSet::Flags(opts)) => {
                    m.set_boot(opts);
                    (CC_OK, vec![])
                }
                Ok(BootOptionsSet::Other(_)) => (CC_OK, vec![]),
                Err(_) => (CC_INVALID_DATA, vec![]),
            },
            (NETFN_CHASSIS, 0x09) => match req.data.first().map(|p| p & 0x7f) {
                Some(5) => {
                    let opts: BootOptions = m.state().boot;
                    (CC_OK, wire::boot_options_data(opts))
                }
                _ => (CC_PARAM_UNSUPPORTED, vec![]),
            },
            _ => (CC_INVALID_COMMAND, vec![]),
        };
        let s = self.sessions.get_mut(&session_id)?;
        s.out_seq = s.out_seq.wrapping_add(1).max(1);
        let iv: [u8; 16] = self.rng.random();
        let resp = response(&req, rq_seq, cc, data);
        let out = session::encode_v2(
            PayloadType::Ipmi,
            s.console_session_id,
            s.out_seq,
            &resp,
            Some((&keys, iv)),
        );
        if let Some(id) = close {
            self.sessions.remove(&id);
        }
        Some(out)
    }
}

fn response(req: &Request, rq_seq: u8, completion_code: u8, data: Vec<u8>) -> Vec<u8> {
    Response {
        netfn: req.netfn + 1,
        rq_seq,
        cmd: req.cmd,
        completion_code,
        data,
    }
    .encode()
}

fn control(fleet: &Arc<Fleet>, m: &Arc<Machine>, action: ChassisControl) {
    fleet.stats.power_action();
    match action {
        ChassisControl::PowerOn => m.power_on(fleet),
        ChassisControl::PowerOff | ChassisControl::SoftOff => m.power_off(),
        ChassisControl::PowerCycle | ChassisControl::HardReset => m.reset(fleet),
        ChassisControl::DiagnosticInterrupt => {}
    }
}
