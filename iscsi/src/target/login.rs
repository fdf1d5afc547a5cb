//! Target side of the login phase (RFC 7143 §6.3): security negotiation (None or CHAP),
//! operational negotiation, session type. Pure: it consumes login request headers and
//! text and says what to answer; the connection loop does the I/O.

use crate::chap::{self, Credentials};
use crate::pdu::Login;
use crate::text::{self, Offer, Pairs, Params};

pub const STAGE_SECURITY: u8 = 0;
pub const STAGE_OPERATIONAL: u8 = 1;
pub const STAGE_FULL: u8 = 3;

/// Login status class/detail (RFC 7143 §11.13.5).
pub mod status {
    pub const SUCCESS: (u8, u8) = (0, 0);
    pub const INITIATOR_ERROR: (u8, u8) = (2, 0);
    pub const AUTH_FAILED: (u8, u8) = (2, 1);
    pub const NOT_FOUND: (u8, u8) = (2, 3);
    pub const UNSUPPORTED_VERSION: (u8, u8) = (2, 5);
    pub const MISSING_PARAMETER: (u8, u8) = (2, 7);
    pub const SESSION_TYPE_UNSUPPORTED: (u8, u8) = (2, 9);
    pub const NO_SESSION: (u8, u8) = (2, 0x0a);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Normal,
    Discovery,
}

#[derive(Debug)]
enum Chap {
    Idle,
    /// AuthMethod=CHAP agreed; waiting for CHAP_A.
    Chosen,
    Challenged {
        id: u8,
        challenge: Vec<u8>,
    },
}

/// Everything the target needs to decide on login requests.
#[derive(Debug)]
pub struct LoginState<'a> {
    pub target_name: &'a str,
    pub chap: Option<&'a Credentials>,
    pub mutual: Option<&'a Credentials>,
    pub offer: Offer,
    pub params: Params,
    pub kind: Option<SessionKind>,
    pub initiator_name: Option<String>,
    authenticated: bool,
    chap_state: Chap,
    declared: bool,
    first: bool,
}

/// The answer to one login request.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub keys: Pairs,
    pub transit: bool,
    pub csg: u8,
    pub nsg: u8,
    pub status: (u8, u8),
    /// Why the login failed, for the log (status is not SUCCESS).
    pub reason: Option<String>,
}

impl Answer {
    fn fail(req: &Login, status: (u8, u8), reason: impl Into<String>) -> Answer {
        Answer {
            keys: Pairs::new(),
            transit: false,
            csg: req.csg,
            nsg: 0,
            status,
            reason: Some(reason.into()),
        }
    }

    pub fn done(&self) -> bool {
        self.status == status::SUCCESS && self.transit && self.nsg == STAGE_FULL
    }
}

impl<'a> LoginState<'a> {
    pub fn new(
        target_name: &'a str,
        chap: Option<&'a Credentials>,
        mutual: Option<&'a Credentials>,
        offer: Offer,
    ) -> LoginState<'a> {
        LoginState {
            target_name,
            chap,
            mutual,
            offer,
            params: Params::default(),
            kind: None,
            initiator_name: None,
            authenticated: false,
            chap_state: Chap::Idle,
            declared: false,
            first: true,
        }
    }

    /// Handles one (complete, de-continued) login request.
    pub fn step(&mut self, req: &Login, data: &[u8]) -> Answer {
        if req.version > 0 {
            return Answer::fail(req, status::UNSUPPORTED_VERSION, "Version-min above 0");
        }
        let mut keys = match Pairs::parse(data) {
            Ok(k) => k,
            Err(e) => return Answer::fail(req, status::INITIATOR_ERROR, e.to_string()),
        };
        let mut out = Pairs::new();
        if self.first {
            self.first = false;
            if req.tsih != 0 {
                return Answer::fail(
                    req,
                    status::NO_SESSION,
                    "adding connections to a session is not supported",
                );
            }
            let Some(iname) = take(&mut keys, "InitiatorName") else {
                return Answer::fail(req, status::MISSING_PARAMETER, "InitiatorName missing");
            };
            self.initiator_name = Some(iname);
            let kind = match take(&mut keys, "SessionType").as_deref() {
                None | Some("Normal") => SessionKind::Normal,
                Some("Discovery") => SessionKind::Discovery,
                Some(other) => {
                    return Answer::fail(
                        req,
                        status::SESSION_TYPE_UNSUPPORTED,
                        format!("SessionType {other}"),
                    )
                }
            };
            self.kind = Some(kind);
            let tname = take(&mut keys, "TargetName");
            if kind == SessionKind::Normal {
                match tname {
                    None => {
                        return Answer::fail(req, status::MISSING_PARAMETER, "TargetName missing")
                    }
                    Some(n) if n != self.target_name => {
                        return Answer::fail(req, status::NOT_FOUND, format!("no target named {n}"))
                    }
                    Some(_) => out.push("TargetPortalGroupTag", "1"),
                }
            }
        } else {
            for k in ["InitiatorName", "SessionType", "TargetName"] {
                take(&mut keys, k);
            }
        }
        let auth_required = self.chap.is_some();
        match req.csg {
            STAGE_SECURITY => {
                if let Err(a) = self.security(req, &mut keys, &mut out) {
                    return a;
                }
            }
            STAGE_OPERATIONAL => {
                if auth_required && !self.authenticated {
                    return Answer::fail(
                        req,
                        status::AUTH_FAILED,
                        "CHAP is required but the initiator skipped the security stage",
                    );
                }
                if keys.get("AuthMethod").is_some()
                    || keys.0.iter().any(|(k, _)| k.starts_with("CHAP_"))
                {
                    return Answer::fail(
                        req,
                        status::INITIATOR_ERROR,
                        "security keys in the operational stage",
                    );
                }
            }
            _ => {
                return Answer::fail(
                    req,
                    status::INITIATOR_ERROR,
                    format!("invalid CSG {}", req.csg),
                )
            }
        }
        // Operational keys may arrive in either stage; answer what is left.
        let neg = text::negotiate_target(&keys, &self.offer, &mut self.params);
        out.0.extend(neg.0);
        let mut transit = req.transit;
        let nsg = req.nsg;
        if transit {
            if nsg <= req.csg || nsg == 2 {
                return Answer::fail(
                    req,
                    status::INITIATOR_ERROR,
                    format!("invalid transition {} -> {}", req.csg, nsg),
                );
            }
            if req.csg == STAGE_SECURITY && auth_required && !self.authenticated {
                // Still mid-CHAP: stay in the security stage.
                transit = false;
            }
        }
        if transit && nsg == STAGE_FULL && !self.declared {
            // Declarations go out before the last response at the latest.
            out.0
                .extend(text::target_declarations(&self.offer, &mut self.params).0);
            self.declared = true;
        }
        if req.csg == STAGE_OPERATIONAL && !self.declared {
            out.0
                .extend(text::target_declarations(&self.offer, &mut self.params).0);
            self.declared = true;
        }
        Answer {
            keys: out,
            transit,
            csg: req.csg,
            nsg: if transit { nsg } else { 0 },
            status: status::SUCCESS,
            reason: None,
        }
    }

    fn security(&mut self, req: &Login, keys: &mut Pairs, out: &mut Pairs) -> Result<(), Answer> {
        let fail = |r: String| Answer::fail(req, status::AUTH_FAILED, r);
        if let Some(methods) = take(keys, "AuthMethod") {
            let list: Vec<&str> = methods.split(',').collect();
            let pick = if self.chap.is_some() {
                list.contains(&"CHAP").then_some("CHAP")
            } else {
                list.contains(&"None").then_some("None")
            };
            match pick {
                Some("CHAP") => {
                    self.chap_state = Chap::Chosen;
                    out.push("AuthMethod", "CHAP");
                }
                Some(_) => {
                    self.authenticated = true;
                    out.push("AuthMethod", "None");
                }
                None => {
                    return Err(fail(format!(
                        "AuthMethod={methods} does not include {}",
                        if self.chap.is_some() {
                            "CHAP, which this target requires"
                        } else {
                            "None"
                        }
                    )))
                }
            }
        } else if self.chap.is_none() {
            self.authenticated = true;
        }
        if let Some(alg) = take(keys, "CHAP_A") {
            if !matches!(self.chap_state, Chap::Chosen) {
                return Err(fail("CHAP_A before AuthMethod=CHAP was agreed".into()));
            }
            chap::choose_algorithm(&alg).map_err(|e| fail(e.to_string()))?;
            let (id, challenge) = chap::new_challenge();
            out.push("CHAP_A", "5");
            out.push("CHAP_I", id.to_string());
            out.push("CHAP_C", chap::encode_hex(&challenge));
            self.chap_state = Chap::Challenged { id, challenge };
        }
        let n = take(keys, "CHAP_N");
        let r = take(keys, "CHAP_R");
        if n.is_some() || r.is_some() {
            let Chap::Challenged { id, challenge } = &self.chap_state else {
                return Err(fail("CHAP_N/CHAP_R before a challenge was sent".into()));
            };
            let (Some(n), Some(r), Some(cred)) = (n, r, self.chap) else {
                return Err(fail("CHAP_N and CHAP_R must come together".into()));
            };
            chap::verify(cred, *id, challenge, &n, &r).map_err(|e| fail(e.to_string()))?;
            let their_id = take(keys, "CHAP_I");
            let their_c = take(keys, "CHAP_C");
            if let (Some(i), Some(c)) = (their_id, their_c) {
                let Some(m) = self.mutual else {
                    return Err(fail(
                        "initiator asked for mutual CHAP, which is not configured".into(),
                    ));
                };
                let i = chap::parse_id(&i).map_err(|e| fail(e.to_string()))?;
                let c = chap::decode_binary(&c).map_err(|e| fail(e.to_string()))?;
                if c.len() < 16 || c.len() > 1024 || &c == challenge {
                    return Err(fail(
                        "mutual CHAP challenge is too short, too long or reflected".into(),
                    ));
                }
                out.push("CHAP_N", m.user.clone());
                out.push(
                    "CHAP_R",
                    chap::encode_hex(&chap::response(i, m.secret.as_bytes(), &c)),
                );
            }
            self.authenticated = true;
            self.chap_state = Chap::Idle;
        }
        Ok(())
    }
}

fn take(keys: &mut Pairs, k: &str) -> Option<String> {
    let i = keys.0.iter().position(|(kk, _)| kk == k)?;
    Some(keys.0.remove(i).1)
}

#[cfg(test)]
#[path = "login_tests.rs"]
mod tests;
