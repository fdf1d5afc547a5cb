//! Byte fixtures captured from ipmitool talking to ipmi_sim through a UDP proxy: our codec
//! must reproduce every RAKP auth code, derive the same keys, and decrypt and verify every
//! in-session packet of both sides. One capture is stored (tests/fixtures), one is taken live.

mod common;

use std::process::Command;

use common::Capture;
use ferrite_ipmi::codec::commands::ChassisStatus;
use ferrite_ipmi::codec::crypto::{key_from_password, RakpInputs, SessionKeys};
use ferrite_ipmi::codec::message::{Request, Response};
use ferrite_ipmi::codec::rakp::{self, Reply};
use ferrite_ipmi::codec::session::{self, PayloadType};
use ferrite_ipmi::sim::SimBmc;
use ferrite_ipmi::{CipherSuite, PowerState};

fn find(cap: &Capture, from_console: bool, ty: PayloadType) -> Vec<u8> {
    cap.iter()
        .filter(|(c, _)| *c == from_console)
        .filter_map(|(_, d)| session::decode(d, None).ok())
        .find(|p| p.payload_type == Some(ty))
        .unwrap_or_else(|| panic!("no {ty:?} in capture"))
        .payload
}

/// Checks a whole ipmitool session against our codec; returns the power state ipmitool saw.
fn verify(cap: &Capture, password: &str) -> PowerState {
    // The first datagram: IPMI 1.5 Get Channel Authentication Capabilities.
    let first = session::decode(&cap[0].1, None).unwrap();
    assert_eq!(first.payload_type, None);
    let (req, _) = Request::decode(&first.payload).unwrap();
    assert_eq!((req.netfn, req.cmd), (0x06, 0x38));

    let open_req = find(cap, true, PayloadType::OpenSessionRequest);
    assert_eq!(
        &open_req[8..16],
        &[0x00, 0, 0, 0x08, 0x01, 0, 0, 0],
        "RAKP-HMAC-SHA1"
    );
    let Reply::Ok(open) =
        rakp::decode_open_session_response(&find(cap, false, PayloadType::OpenSessionResponse))
            .unwrap()
    else {
        panic!("open session refused")
    };
    let r1 = find(cap, true, PayloadType::Rakp1);
    let Reply::Ok(r2) = rakp::decode_rakp2(&find(cap, false, PayloadType::Rakp2)).unwrap() else {
        panic!("RAKP 2 refused")
    };
    let r3 = find(cap, true, PayloadType::Rakp3);
    let Reply::Ok(r4) = rakp::decode_rakp4(&find(cap, false, PayloadType::Rakp4)).unwrap() else {
        panic!("RAKP 4 refused")
    };
    let name_len = r1[27] as usize;
    let inputs = RakpInputs {
        suite: CipherSuite::Suite3,
        console_session_id: open.console_session_id,
        bmc_session_id: open.bmc_session_id,
        console_random: r1[8..24].try_into().unwrap(),
        bmc_random: r2.bmc_random,
        bmc_guid: r2.bmc_guid,
        role: r1[24],
        username: &r1[28..28 + name_len],
        k_uid: key_from_password(password.as_bytes()),
        k_g: None,
    };
    assert_eq!(inputs.rakp2_auth_code(), r2.auth_code, "RAKP 2 auth code");
    assert_eq!(inputs.rakp3_auth_code(), r3[8..], "RAKP 3 auth code");
    let sik = inputs.sik();
    assert_eq!(inputs.rakp4_icv(&sik), r4.icv, "RAKP 4 ICV");
    let keys = SessionKeys::derive(CipherSuite::Suite3, &sik);

    // Every in-session packet, both ways, verifies and decrypts with our keys.
    let mut power = None;
    let mut in_session = 0;
    for (from_console, d) in cap {
        let Ok(p) = session::decode(d, Some(&keys)) else {
            panic!("undecodable datagram {d:02x?}")
        };
        if p.payload_type != Some(PayloadType::Ipmi) || !p.authenticated {
            continue;
        }
        in_session += 1;
        assert!(p.encrypted);
        if *from_console {
            assert_eq!(p.session_id, open.bmc_session_id);
            Request::decode(&p.payload).unwrap();
        } else {
            assert_eq!(p.session_id, open.console_session_id);
            let r = Response::decode(&p.payload).unwrap();
            if (r.netfn, r.cmd) == (0x01, 0x01) {
                power = Some(ChassisStatus::decode(&r.data).unwrap().power);
            }
        }
    }
    assert!(
        in_session >= 4,
        "status request/response and close at least"
    );
    power.expect("a Get Chassis Status response in the capture")
}

fn parse_fixture(text: &str) -> Capture {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (dir, hex) = l.split_once(' ').expect("direction and hex");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (dir == ">", bytes)
        })
        .collect()
}

#[test]
fn stored_ipmitool_capture_verifies() {
    let cap = parse_fixture(include_str!(
        "fixtures/ipmitool-lanplus-c3-power-status.txt"
    ));
    assert_eq!(verify(&cap, "password"), PowerState::Off);
}

#[tokio::test]
async fn live_ipmitool_capture_verifies() {
    let bmc = SimBmc::builder().start().unwrap();
    let proxy = common::start(bmc.addr(), None).await;
    let port = proxy.addr.port();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("ipmitool")
            .args(["-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(["-U", "admin", "-P", "password", "power", "status"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    let cap = proxy.capture.lock().unwrap().clone();
    if let Ok(path) = std::env::var("FERRITE_IPMI_WRITE_CAPTURE") {
        let mut s = String::from("# ipmitool -I lanplus -C 3 -U admin -P password power status against ipmi_sim\n# > console to BMC, < BMC to console\n");
        for (c, d) in &cap {
            let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
            s.push_str(&format!("{} {hex}\n", if *c { ">" } else { "<" }));
        }
        std::fs::write(path, s).unwrap();
    }
    let power = verify(&cap, "password");
    assert_eq!(text.contains("is on"), power == PowerState::On, "{text}");
}

/// Truncated, bit-flipped and spliced versions of real datagrams: decoders return errors,
/// never panic, and no tampered in-session packet passes the integrity check.
#[test]
fn mutated_capture_datagrams_never_panic_or_verify() {
    let cap = parse_fixture(include_str!(
        "fixtures/ipmitool-lanplus-c3-power-status.txt"
    ));
    let keys = SessionKeys::derive(CipherSuite::Suite3, &[0x11; 20]);
    let mut seed = 0x9e37_79b9_u32;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    for (_, d) in &cap {
        for cut in 0..d.len() {
            let _ = session::decode(&d[..cut], None);
            let _ = session::decode(&d[..cut], Some(&keys));
        }
        for _ in 0..200 {
            let mut m = d.clone();
            let i = next() as usize % m.len();
            m[i] ^= 1 << (next() % 8);
            if let Ok(p) = session::decode(&m, None) {
                let _ = Response::decode(&p.payload);
                let _ = Request::decode(&p.payload);
                let _ = rakp::decode_open_session_response(&p.payload);
                let _ = rakp::decode_rakp2(&p.payload);
                let _ = rakp::decode_rakp4(&p.payload);
            }
            let _ = session::decode(&m, Some(&keys));
        }
    }
    // With the right keys, any single bit flip in an in-session packet fails verification.
    let password_keys = {
        let r1 = find(&cap, true, PayloadType::Rakp1);
        let Reply::Ok(open) = rakp::decode_open_session_response(&find(
            &cap,
            false,
            PayloadType::OpenSessionResponse,
        ))
        .unwrap() else {
            panic!()
        };
        let Reply::Ok(r2) = rakp::decode_rakp2(&find(&cap, false, PayloadType::Rakp2)).unwrap()
        else {
            panic!()
        };
        let inputs = RakpInputs {
            suite: CipherSuite::Suite3,
            console_session_id: open.console_session_id,
            bmc_session_id: open.bmc_session_id,
            console_random: r1[8..24].try_into().unwrap(),
            bmc_random: r2.bmc_random,
            bmc_guid: r2.bmc_guid,
            role: r1[24],
            username: &r1[28..28 + r1[27] as usize],
            k_uid: key_from_password(b"password"),
            k_g: None,
        };
        SessionKeys::derive(CipherSuite::Suite3, &inputs.sik())
    };
    let (_, last) = cap.last().unwrap();
    assert!(session::decode(last, Some(&password_keys)).is_ok());
    for i in 4..last.len() {
        let mut m = last.clone();
        m[i] ^= 0x01;
        assert!(
            session::decode(&m, Some(&password_keys)).is_err(),
            "flip at byte {i} accepted"
        );
    }
}
