//! Initiator side of the login phase: security (None or CHAP, optionally mutual), then
//! operational negotiation until the full feature phase.

use super::{login_meaning, Initiator, InitiatorError, LoginOptions};
use crate::chap::{self, ChapError};
use crate::pdu::{Bhs, Framing, Login, Pdu};
use crate::text::{self, Pairs};

impl Initiator {
    pub(super) async fn login(&mut self, opts: &LoginOptions) -> Result<(), InitiatorError> {
        let itt = self.next_itt();
        let mut keys = Pairs::new();
        keys.push("InitiatorName", opts.initiator_name.clone());
        match &opts.target_name {
            Some(t) => {
                keys.push("SessionType", "Normal");
                keys.push("TargetName", t.clone());
            }
            None => keys.push("SessionType", "Discovery"),
        }
        keys.push(
            "AuthMethod",
            if opts.chap.is_some() {
                "CHAP,None"
            } else {
                "None"
            },
        );
        let mut csg = 0u8;
        let mut mutual_challenge: Option<(u8, Vec<u8>)> = None;
        let mut sent_offer = false;
        for _round in 0..16 {
            let transit = true;
            let nsg = if csg == 0 { 1 } else { 3 };
            let resp = self.login_round(itt, csg, nsg, transit, &keys).await?;
            let (l, ans) = resp;
            keys = Pairs::new();
            if csg == 0 {
                if let Some(m) = ans.get("AuthMethod") {
                    if m == "CHAP" {
                        if opts.chap.is_none() {
                            return Err(InitiatorError::Protocol(
                                "target demands CHAP but no credentials were given".into(),
                            ));
                        }
                        keys.push("CHAP_A", "5");
                    }
                }
                if let (Some(i), Some(c)) = (ans.get("CHAP_I"), ans.get("CHAP_C")) {
                    if ans.get("CHAP_A") != Some("5") {
                        return Err(
                            ChapError::NoAlgorithm(ans.get("CHAP_A").unwrap_or("").into()).into(),
                        );
                    }
                    let cred = opts.chap.as_ref().ok_or(InitiatorError::Protocol(
                        "CHAP challenge without credentials".into(),
                    ))?;
                    let id = chap::parse_id(i)?;
                    let ch = chap::decode_binary(c)?;
                    keys.push("CHAP_N", cred.user.clone());
                    keys.push(
                        "CHAP_R",
                        chap::encode_hex(&chap::response(id, cred.secret.as_bytes(), &ch)),
                    );
                    if opts.mutual_chap.is_some() {
                        let (mid, mch) = chap::new_challenge();
                        keys.push("CHAP_I", mid.to_string());
                        keys.push("CHAP_C", chap::encode_hex(&mch));
                        mutual_challenge = Some((mid, mch));
                    }
                }
                if let (Some(m), Some((id, ch))) = (&opts.mutual_chap, &mutual_challenge) {
                    if let (Some(n), Some(r)) = (ans.get("CHAP_N"), ans.get("CHAP_R")) {
                        chap::verify(m, *id, ch, n, r)
                            .map_err(|_| InitiatorError::MutualChapFailed)?;
                        mutual_challenge = None;
                    }
                }
                if l.transit {
                    if mutual_challenge.is_some() {
                        return Err(InitiatorError::MutualChapFailed);
                    }
                    csg = l.nsg;
                }
            } else {
                text::apply_target_answers(&ans, &opts.offer, &mut self.params);
                if l.transit && l.nsg == 3 {
                    break;
                }
            }
            if csg == 1 && !sent_offer {
                keys.0.extend(text::initiator_offer(&opts.offer).0);
                sent_offer = true;
            }
            if csg == 3 {
                break;
            }
        }
        if self.tsih == 0 {
            return Err(InitiatorError::Protocol(
                "login did not reach the full feature phase".into(),
            ));
        }
        self.rx = Framing {
            header_digest: self.params.header_digest,
            data_digest: self.params.data_digest,
            max_recv_data: self.params.max_recv_data,
        };
        self.tx = self.rx;
        Ok(())
    }

    async fn login_round(
        &mut self,
        itt: u32,
        csg: u8,
        nsg: u8,
        transit: bool,
        keys: &Pairs,
    ) -> Result<(Login, Pairs), InitiatorError> {
        let l = Login {
            transit,
            csg,
            nsg,
            isid: self.isid,
            itt,
            sn: self.cmd_sn,
            exp_sn: self.exp_stat_sn,
            ..Default::default()
        };
        self.send(Pdu::with_data(Bhs::LoginReq(l), keys.encode()).immediate())
            .await?;
        let p = self.recv().await?;
        let Bhs::LoginResp(r) = p.bhs else {
            return Err(InitiatorError::Protocol(format!(
                "expected a login response, got opcode {:#04x}",
                p.bhs.opcode()
            )));
        };
        if r.status_class != 0 {
            return Err(InitiatorError::LoginRejected {
                class: r.status_class,
                detail: r.status_detail,
                meaning: login_meaning(r.status_class, r.status_detail),
            });
        }
        self.exp_stat_sn = r.sn.wrapping_add(1);
        if r.transit && r.nsg == 3 {
            self.tsih = r.tsih;
        }
        let ans = Pairs::parse(&p.data).map_err(|e| InitiatorError::Protocol(e.to_string()))?;
        Ok((r, ans))
    }
}
