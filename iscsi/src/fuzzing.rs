//! Entry points shared by the cargo-fuzz targets (iscsi/fuzz) and a stable-Rust smoke test
//! that feeds them deterministic pseudo-random and mutated inputs; and a scripted target
//! (a fixed reply stream on a loopback socket) for testing the initiator against a
//! target that lies.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::time::Duration;

use bytes::BytesMut;

use crate::initiator::{Initiator, LoginOptions, MAX_BLOCK_SIZE};
use crate::pdu::{Bhs, DataIn, Framing, Login, LogoutResp, Nop, Pdu, ScsiResp, Text};
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

/// A "target" on a free loopback port that, once one initiator connects, sends `replies`
/// verbatim and half-closes, draining whatever the initiator sends until it hangs up.
/// The replies do not depend on the requests, so a session is a pure function of the
/// bytes (the initiator's ITTs are deterministic: 1 for login, then 2, 3, …).
pub fn scripted_target(replies: Vec<u8>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = l.local_addr().expect("local address");
    let t = std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let Ok(mut r) = s.try_clone() else { return };
        let drain = std::thread::spawn(move || {
            let mut b = [0u8; 16 * 1024];
            while let Ok(1..) = r.read(&mut b) {}
        });
        let _ = s.write_all(&replies);
        let _ = s.shutdown(Shutdown::Write);
        let _ = drain.join();
    });
    (addr, t)
}

/// Encodes PDUs without digests, as a scripted target sends them.
pub fn encode(pdus: &[Pdu]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for p in pdus {
        p.encode(&Framing::default(), &mut out)
            .expect("scripted PDU encodes");
    }
    out.to_vec()
}

/// The two login responses that take our initiator (no CHAP) to the full feature phase.
pub fn login_replies() -> Vec<Pdu> {
    let resp = |csg, nsg, keys: &[u8]| {
        let l = Login {
            transit: true,
            csg,
            nsg,
            tsih: if nsg == 3 { 1 } else { 0 },
            itt: 1,
            sn: 0,
            exp_sn: 1,
            max_cmd_sn: 64,
            ..Default::default()
        };
        Pdu::with_data(Bhs::LoginResp(l), keys.to_vec())
    };
    vec![resp(0, 1, b"AuthMethod=None\0"), resp(1, 3, b"")]
}

/// A Data-In carrying `data` and good status for the command with `itt`.
pub fn data_in_with_status(itt: u32, stat_sn: u32, data: &[u8]) -> Pdu {
    let d = DataIn {
        final_: true,
        has_status: true,
        itt,
        ttt: 0xffff_ffff,
        stat_sn,
        exp_cmd_sn: 2,
        max_cmd_sn: 64,
        ..Default::default()
    };
    Pdu::with_data(Bhs::DataIn(d), data.to_vec())
}

fn scsi_ok(itt: u32, stat_sn: u32) -> Pdu {
    Pdu::new(Bhs::ScsiResp(ScsiResp {
        itt,
        stat_sn,
        exp_cmd_sn: stat_sn + 1,
        max_cmd_sn: 64,
        ..Default::default()
    }))
}

/// Well-formed sessions for [`initiator`] (first byte, then the target's bytes): the
/// seeds of its fuzz corpus and of the stable smoke test.
pub fn initiator_seeds() -> Vec<Vec<u8>> {
    let mut cap = vec![0u8; 32];
    cap[7] = 15; // last LBA 15: 16 blocks
    cap[10] = 2; // 512-byte blocks
    cap[14] = 0xc0;
    let seed = |how: u8, pdus: Vec<Pdu>| {
        let mut v = vec![how];
        v.extend(encode(&pdus));
        v
    };
    let mut all = Vec::new();
    // Normal session: READ CAPACITY (ITT 2), READ (3), WRITE (4), SYNC (5), UNMAP (6),
    // ping (7), logout (8).
    let mut pdus = login_replies();
    pdus.push(data_in_with_status(2, 1, &cap));
    pdus.push(data_in_with_status(3, 2, &[7u8; 1024]));
    pdus.push(scsi_ok(4, 3));
    pdus.push(scsi_ok(5, 4));
    pdus.push(scsi_ok(6, 5));
    pdus.push(Pdu::with_data(
        Bhs::NopIn(Nop {
            itt: 7,
            ttt: 0xffff_ffff,
            sn: 6,
            exp_sn: 7,
            max_cmd_sn: 64,
            ..Default::default()
        }),
        b"ping".to_vec(),
    ));
    pdus.push(Pdu::new(Bhs::LogoutResp(LogoutResp {
        itt: 8,
        stat_sn: 7,
        exp_cmd_sn: 8,
        max_cmd_sn: 64,
        ..Default::default()
    })));
    all.push(seed(4 | 8 | 32 | 64 | 128, pdus.clone()));
    all.push(seed(4, pdus[..4].to_vec()));
    // Tagged writes: three SCSI responses, out of order.
    let mut tagged = login_replies();
    tagged.push(data_in_with_status(2, 1, &cap));
    for (itt, sn) in [(4, 2), (3, 3), (5, 4)] {
        tagged.push(scsi_ok(itt, sn));
    }
    all.push(seed(16, tagged));
    // Discovery: SendTargets (ITT 2), logout (3).
    let mut disc = login_replies();
    disc.push(Pdu::with_data(
        Bhs::TextResp(Text {
            final_: true,
            itt: 2,
            ttt: 0xffff_ffff,
            sn: 1,
            exp_sn: 2,
            max_cmd_sn: 64,
            ..Default::default()
        }),
        b"TargetName=iqn.2026-01.fuzz:t\0TargetAddress=127.0.0.1:3260,1\0".to_vec(),
    ));
    disc.push(Pdu::new(Bhs::LogoutResp(LogoutResp {
        itt: 3,
        stat_sn: 2,
        exp_cmd_sn: 3,
        max_cmd_sn: 64,
        ..Default::default()
    })));
    all.push(seed(2, disc));
    // CHAP: the target picks CHAP, then challenges.
    let login = |csg, nsg, transit, keys: &[u8]| {
        Pdu::with_data(
            Bhs::LoginResp(Login {
                transit,
                csg,
                nsg,
                tsih: if nsg == 3 { 1 } else { 0 },
                itt: 1,
                exp_sn: 1,
                max_cmd_sn: 64,
                ..Default::default()
            }),
            keys.to_vec(),
        )
    };
    let chap = vec![
        login(0, 1, false, b"AuthMethod=CHAP\0"),
        login(
            0,
            1,
            false,
            b"CHAP_A=5\0CHAP_I=7\0CHAP_C=0x0123456789abcdef\0",
        ),
        login(0, 1, true, b""),
        login(
            1,
            3,
            true,
            b"HeaderDigest=None\0MaxRecvDataSegmentLength=65536\0",
        ),
        data_in_with_status(2, 1, &cap),
    ];
    all.push(seed(1 | 4, chap));
    all
}

/// One initiator session against [`scripted_target`]: `data[0]` picks the session kind
/// and which commands to run, the rest is what the target sends. Nothing the target
/// sends may make the initiator panic, and what it accepts must be within bounds.
/// Returns how many steps succeeded (login and each command), so tests can tell a seed
/// that gets deep from one that stops at login.
pub fn initiator(data: &[u8]) -> usize {
    let Some((&how, replies)) = data.split_first() else {
        return 0;
    };
    let (addr, target) = scripted_target(replies.to_vec());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ok = rt.block_on(async {
        let mut opts = LoginOptions::new("iqn.2026-01.fuzz:i", "iqn.2026-01.fuzz:t");
        // The target half-closes after its script, so nothing should wait this long.
        opts.response_timeout = Duration::from_secs(10);
        if how & 1 != 0 {
            opts.chap = Some(crate::chap::Credentials {
                user: "u".into(),
                secret: "secretsecret".into(),
            });
        }
        if how & 2 != 0 {
            return usize::from(
                Initiator::discover(addr, "iqn.2026-01.fuzz:i")
                    .await
                    .is_ok(),
            );
        }
        let Ok(mut s) = Initiator::connect(addr, &opts).await else {
            return 0;
        };
        let bs = s.block_size();
        assert!(bs.is_power_of_two() && (512..=MAX_BLOCK_SIZE).contains(&bs));
        assert!(s.blocks().checked_mul(u64::from(bs)).is_some());
        let block = vec![0xa5u8; bs as usize];
        let mut ok = 1;
        if how & 4 != 0 {
            ok += usize::from(s.read(0, 2).await.is_ok());
        }
        if how & 8 != 0 {
            ok += usize::from(s.write(1, &block).await.is_ok());
        }
        if how & 16 != 0 {
            for lba in 0..3 {
                let _ = s.submit_write(lba, block.clone().into()).await;
            }
            while let Some(c) = s.next_completion().await {
                ok += usize::from(c.result.is_ok());
            }
        }
        if how & 32 != 0 {
            ok += usize::from(s.sync().await.is_ok());
            ok += usize::from(s.unmap(0, 1).await.is_ok());
        }
        if how & 64 != 0 {
            ok += usize::from(s.ping(b"ping").await.is_ok());
        }
        if how & 128 != 0 {
            ok += usize::from(s.logout().await.is_ok());
        }
        ok
    });
    drop(rt);
    target.join().expect("scripted target thread");
    ok
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

    #[test]
    fn initiator_against_mutated_scripts_never_panics() {
        let seeds = initiator_seeds();
        let deep: Vec<usize> = seeds.iter().map(|s| initiator(s)).collect();
        // Every seed gets through its whole session.
        assert_eq!(deep, [7, 2, 4, 1, 1]);
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        for i in 0..300 {
            let mut v = seeds[i % seeds.len()].clone();
            for _ in 0..(r.next() % 6 + 1) {
                let at = 1 + (r.next() as usize) % (v.len() - 1);
                v[at] = r.next() as u8;
            }
            v[0] = r.next() as u8;
            if i % 4 == 0 {
                v.truncate(1 + (r.next() as usize) % (v.len() - 1));
            }
            initiator(&v);
        }
    }

    /// Replays the committed seeds and every past finding (fuzz/regressions/<target>/,
    /// where `cargo xtask fuzz` says to put a crash once it is fixed).
    #[test]
    fn seeds_and_past_findings_replay_without_panics() {
        let counts = ferrite_testkit::fuzz::replay_corpus(
            env!("CARGO_MANIFEST_DIR"),
            &[
                ("pdu", pdu),
                ("login", login),
                ("initiator", |d| {
                    initiator(d);
                }),
            ],
        );
        let n: usize = counts.iter().map(|(_, n)| n).sum();
        assert!(
            n >= initiator_seeds().len(),
            "replayed {n} inputs: {counts:?}"
        );
    }

    /// Writes [`initiator_seeds`] as the fuzz target's seed corpus:
    /// `FERRITE_FUZZ_SEEDS=iscsi/fuzz/seeds/initiator cargo test -p ferrite-iscsi -- --ignored`.
    #[test]
    #[ignore = "writes files; run by hand to refresh the seed corpus"]
    fn write_initiator_seeds() {
        let dir = std::env::var("FERRITE_FUZZ_SEEDS").expect("FERRITE_FUZZ_SEEDS=<dir>");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in initiator_seeds().iter().enumerate() {
            std::fs::write(format!("{dir}/seed-{i}"), s).unwrap();
        }
    }
}
