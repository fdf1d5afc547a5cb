//! Entry points shared by the cargo-fuzz targets (iscsi/fuzz) and a stable-Rust smoke test
//! that feeds them deterministic pseudo-random and mutated inputs.

use bytes::BytesMut;

use crate::pdu::{Framing, Pdu};
use crate::target::login::LoginState;
use crate::text::{Offer, Pairs};

/// Decodes `data` under several framings; a decoded PDU must round-trip.
pub fn pdu(data: &[u8]) {
    for f in [
        Framing::default(),
        Framing {
            header_digest: true,
            data_digest: true,
            max_recv_data: 1 << 20,
        },
    ] {
        if let Ok(p) = Pdu::decode(data, &f) {
            let mut out = BytesMut::new();
            if p.encode(&f, &mut out).is_ok() {
                let again = Pdu::decode(&out, &f).expect("re-encoded PDU decodes");
                assert_eq!(again.bhs, p.bhs);
                assert_eq!(again.data, p.data);
            }
        }
    }
}

/// Splits `data` into login requests (header byte + text) and runs them through the
/// target's login state machine, with and without CHAP.
pub fn login(data: &[u8]) {
    let _ = Pairs::parse(data);
    let cred = crate::chap::Credentials {
        user: "u".into(),
        secret: "secretsecret".into(),
    };
    for chap in [None, Some(&cred)] {
        let mut st = LoginState::new("iqn.2026-01.t:x", chap, None, Offer::default());
        for chunk in data.split(|&b| b == 0xff) {
            let Some((&h, text)) = chunk.split_first() else {
                continue;
            };
            let req = crate::pdu::Login {
                transit: h & 0x80 != 0,
                csg: (h >> 2) & 3,
                nsg: h & 3,
                version: (h >> 4) & 1,
                ..Default::default()
            };
            let a = st.step(&req, text);
            if a.status != (0, 0) {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic inputs without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[test]
    fn random_and_mutated_inputs_never_panic() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut seed = BytesMut::new();
        let nop = crate::pdu::Nop {
            itt: 1,
            ttt: 0xffff_ffff,
            ..Default::default()
        };
        Pdu::with_data(crate::pdu::Bhs::NopOut(nop), b"hello".to_vec())
            .encode(&Framing::default(), &mut seed)
            .unwrap();
        for i in 0..20_000 {
            let len = (r.next() % 120) as usize;
            let mut v: Vec<u8> = if i % 2 == 0 {
                (0..len).map(|_| r.next() as u8).collect()
            } else {
                let mut s = seed.to_vec();
                for _ in 0..(r.next() % 4 + 1) {
                    let at = (r.next() as usize) % s.len();
                    s[at] = r.next() as u8;
                }
                s
            };
            if i % 3 == 0 {
                v.truncate((r.next() as usize) % (v.len() + 1));
            }
            pdu(&v);
            login(&v);
        }
        login(b"\x87InitiatorName=iqn.a:b\0TargetName=iqn.2026-01.t:x\0AuthMethod=CHAP\0\xff\x07CHAP_A=5\0");
    }
}
