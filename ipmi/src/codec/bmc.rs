//! The BMC's side of the codec (what a simulated BMC needs): ASF pong, decoding the
//! console's Open Session Request and RAKP 1/3, encoding Open Session Response and RAKP 2/4,
//! and the response data of the commands a BMC answers. The console side lives in
//! [`super::rakp`] and [`super::commands`]; each decoder here is the inverse of an encoder
//! there, and the tests check both directions against each other.

use super::commands::{BootOptions, ChassisControl, PowerState};
use super::rmcp::{self, RmcpClass, ASF_IANA};
use super::DecodeError;

fn need(b: &[u8], n: usize, what: &'static str) -> Result<(), DecodeError> {
    if b.len() < n {
        return Err(DecodeError::Truncated {
            what,
            need: n,
            got: b.len(),
        });
    }
    Ok(())
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The tag of an ASF presence ping datagram.
pub fn decode_ping(datagram: &[u8]) -> Result<u8, DecodeError> {
    let (class, body) = rmcp::split(datagram)?;
    if class != RmcpClass::Asf {
        return Err(DecodeError::Unexpected {
            what: "RMCP class",
            expected: "ASF",
        });
    }
    need(body, 8, "ASF ping")?;
    if body[4] != 0x80 {
        return Err(DecodeError::Invalid {
            what: "ASF message type (want ping 0x80)",
            value: body[4] as u32,
        });
    }
    Ok(body[5])
}

/// The presence pong answering a ping with `tag`: IPMI supported, ASF 1.0 entities.
pub fn encode_pong(tag: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(28);
    rmcp::write_header(&mut out, RmcpClass::Asf);
    out.extend_from_slice(&ASF_IANA);
    out.extend_from_slice(&[0x40, tag, 0x00, 0x10]);
    out.extend_from_slice(&ASF_IANA);
    out.extend_from_slice(&[0, 0, 0, 0, 0x81, 0x00, 0, 0, 0, 0, 0, 0]);
    out
}

/// An Open Session Request as the BMC reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionRequest {
    pub tag: u8,
    pub max_privilege: u8,
    pub console_session_id: u32,
    pub auth_alg: u8,
    pub integrity_alg: u8,
    pub confidentiality_alg: u8,
}

pub fn decode_open_session_request(b: &[u8]) -> Result<OpenSessionRequest, DecodeError> {
    need(b, 32, "Open Session Request")?;
    Ok(OpenSessionRequest {
        tag: b[0],
        max_privilege: b[1] & 0x0f,
        console_session_id: le32(&b[4..8]),
        auth_alg: b[12] & 0x3f,
        integrity_alg: b[20] & 0x3f,
        confidentiality_alg: b[28] & 0x3f,
    })
}

/// Open Session Response: `status` 0 with the session and the algorithms chosen, or an
/// RMCP+ status code (then only the first eight bytes are sent).
pub fn encode_open_session_response(
    req: &OpenSessionRequest,
    status: u8,
    bmc_session_id: u32,
) -> Vec<u8> {
    let mut out = vec![req.tag, status, req.max_privilege, 0];
    out.extend_from_slice(&req.console_session_id.to_le_bytes());
    if status != 0 {
        return out;
    }
    out.extend_from_slice(&bmc_session_id.to_le_bytes());
    for (kind, alg) in [
        (0x00, req.auth_alg),
        (0x01, req.integrity_alg),
        (0x02, req.confidentiality_alg),
    ] {
        out.extend_from_slice(&[kind, 0, 0, 0x08, alg, 0, 0, 0]);
    }
    out
}

/// RAKP Message 1 as the BMC reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp1 {
    pub tag: u8,
    pub bmc_session_id: u32,
    pub console_random: [u8; 16],
    /// The whole role byte (privilege and the name-only lookup bit).
    pub role: u8,
    pub username: Vec<u8>,
}

pub fn decode_rakp1(b: &[u8]) -> Result<Rakp1, DecodeError> {
    const WHAT: &str = "RAKP Message 1";
    need(b, 28, WHAT)?;
    let len = b[27] as usize;
    need(b, 28 + len, WHAT)?;
    Ok(Rakp1 {
        tag: b[0],
        bmc_session_id: le32(&b[4..8]),
        console_random: b[8..24].try_into().expect("16 bytes"),
        role: b[24],
        username: b[28..28 + len].to_vec(),
    })
}

/// RAKP Message 2 (status 0 with the BMC's random, GUID and auth code, or an error status).
pub fn encode_rakp2(
    tag: u8,
    status: u8,
    console_session_id: u32,
    bmc_random: &[u8; 16],
    bmc_guid: &[u8; 16],
    auth_code: &[u8],
) -> Vec<u8> {
    let mut out = vec![tag, status, 0, 0];
    out.extend_from_slice(&console_session_id.to_le_bytes());
    if status != 0 {
        return out;
    }
    out.extend_from_slice(bmc_random);
    out.extend_from_slice(bmc_guid);
    out.extend_from_slice(auth_code);
    out
}

/// RAKP Message 3 as the BMC reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp3 {
    pub tag: u8,
    pub status: u8,
    pub bmc_session_id: u32,
    pub auth_code: Vec<u8>,
}

pub fn decode_rakp3(b: &[u8]) -> Result<Rakp3, DecodeError> {
    need(b, 8, "RAKP Message 3")?;
    Ok(Rakp3 {
        tag: b[0],
        status: b[1],
        bmc_session_id: le32(&b[4..8]),
        auth_code: b[8..].to_vec(),
    })
}

/// RAKP Message 4 (status 0 with the integrity check value, or an error status).
pub fn encode_rakp4(tag: u8, status: u8, console_session_id: u32, icv: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, status, 0, 0];
    out.extend_from_slice(&console_session_id.to_le_bytes());
    if status == 0 {
        out.extend_from_slice(icv);
    }
    out
}

/// Get Channel Authentication Capabilities response data: channel 1, IPMI 2.0 extended
/// capabilities, password auth, non-null user names, RMCP+ supported.
pub fn auth_capabilities_data(channel: u8) -> Vec<u8> {
    vec![channel, 0x80 | 0x10, 0x04, 0x02, 0, 0, 0, 0]
}

/// Get Channel Cipher Suites response data for list index `index`: suites 3 and 17.
pub fn cipher_suites_data(channel: u8, index: u8) -> Vec<u8> {
    const RECORDS: [u8; 10] = [0xc0, 0x03, 0x01, 0x41, 0x81, 0xc0, 0x11, 0x03, 0x44, 0x81];
    let mut out = vec![channel];
    let start = (index as usize & 0x3f) * 16;
    if let Some(chunk) = RECORDS.get(start..) {
        out.extend_from_slice(&chunk[..chunk.len().min(16)]);
    }
    out
}

/// Get Device ID response data (IPMI 2.0, a made-up manufacturer and product).
pub fn device_id_data(device_id: u8, manufacturer_id: u32, product_id: u16) -> Vec<u8> {
    let m = manufacturer_id.to_le_bytes();
    let p = product_id.to_le_bytes();
    vec![
        device_id, 0x01, 0x01, 0x00, 0x02, 0x9f, m[0], m[1], m[2], p[0], p[1],
    ]
}

/// Get Chassis Status response data for `power`.
pub fn chassis_status_data(power: PowerState) -> Vec<u8> {
    let on = u8::from(power == PowerState::On);
    // Current power state (policy "always off"), last event, misc state.
    vec![on, 0x00, 0x40]
}

/// The action of a Chassis Control request's data.
pub fn decode_chassis_control(d: &[u8]) -> Result<ChassisControl, DecodeError> {
    need(d, 1, "Chassis Control request")?;
    Ok(match d[0] & 0x0f {
        0x00 => ChassisControl::PowerOff,
        0x01 => ChassisControl::PowerOn,
        0x02 => ChassisControl::PowerCycle,
        0x03 => ChassisControl::HardReset,
        0x04 => ChassisControl::DiagnosticInterrupt,
        0x05 => ChassisControl::SoftOff,
        other => {
            return Err(DecodeError::Invalid {
                what: "chassis control action",
                value: other as u32,
            })
        }
    })
}

/// What a Set System Boot Options request sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootOptionsSet {
    /// Parameter 5, boot flags.
    Flags(BootOptions),
    /// Another parameter (set-in-progress, boot info acknowledge…): accepted, no effect.
    Other(u8),
}

pub fn decode_set_boot_options(d: &[u8]) -> Result<BootOptionsSet, DecodeError> {
    need(d, 1, "Set System Boot Options request")?;
    let param = d[0] & 0x7f;
    if param != 5 {
        return Ok(BootOptionsSet::Other(param));
    }
    need(d, 3, "Set System Boot Options boot flags")?;
    // The same layout as the Get response after its version byte.
    let opts = BootOptions::decode(&[0x01, 0x05, d[1], d[2]])?;
    Ok(BootOptionsSet::Flags(opts))
}

/// Get System Boot Options (parameter 5) response data for `opts`.
pub fn boot_options_data(opts: BootOptions) -> Vec<u8> {
    let req = super::commands::set_system_boot_options(opts);
    let mut b1 = req.data[1];
    if !opts.valid {
        b1 &= 0x7f;
    }
    vec![0x01, 0x05, b1, req.data[2], 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::commands::{AuthCapabilities, BootDevice, ChassisStatus};
    use crate::codec::rakp;
    use crate::codec::CipherSuite;

    #[test]
    fn ping_and_pong_round_trip_with_the_console_side() {
        let ping = rmcp::encode_ping(9);
        assert_eq!(decode_ping(&ping).unwrap(), 9);
        let pong = rmcp::decode_pong(&encode_pong(9)).unwrap();
        assert_eq!(pong.tag, 9);
        assert_eq!(pong.iana, 4542);
        assert!(pong.ipmi_supported);
        assert!(
            decode_ping(&encode_pong(1)).is_err(),
            "a pong is not a ping"
        );
        assert!(decode_ping(&ping[..6]).is_err());
    }

    #[test]
    fn session_setup_messages_invert_the_console_encoders() {
        for suite in [CipherSuite::Suite3, CipherSuite::Suite17] {
            let req = rakp::encode_open_session(5, 4, 0xa1b2c3d4, suite);
            let r = decode_open_session_request(&req).unwrap();
            assert_eq!(
                (r.tag, r.max_privilege, r.console_session_id),
                (5, 4, 0xa1b2c3d4)
            );
            assert_eq!(
                (r.auth_alg, r.integrity_alg, r.confidentiality_alg),
                (
                    suite.auth_alg(),
                    suite.integrity_alg(),
                    suite.confidentiality_alg()
                )
            );
            let resp = encode_open_session_response(&r, 0, 0x77);
            let rakp::Reply::Ok(o) = rakp::decode_open_session_response(&resp).unwrap() else {
                panic!("status")
            };
            assert_eq!((o.bmc_session_id, o.console_session_id), (0x77, 0xa1b2c3d4));
            assert_eq!(o.auth_alg, suite.auth_alg());
            let refused = encode_open_session_response(&r, 0x11, 0);
            assert_eq!(
                rakp::decode_open_session_response(&refused).unwrap(),
                rakp::Reply::Status { tag: 5, code: 0x11 }
            );
        }
        assert!(decode_open_session_request(&[0; 31]).is_err());

        let m1 = rakp::encode_rakp1(3, 0x77, &[8; 16], 0x14, b"admin");
        let r1 = decode_rakp1(&m1).unwrap();
        assert_eq!(
            r1,
            Rakp1 {
                tag: 3,
                bmc_session_id: 0x77,
                console_random: [8; 16],
                role: 0x14,
                username: b"admin".to_vec()
            }
        );
        assert!(decode_rakp1(&m1[..30]).is_err(), "name cut short");
        let m2 = encode_rakp2(3, 0, 0xa1, &[1; 16], &[2; 16], &[3; 20]);
        let rakp::Reply::Ok(r2) = rakp::decode_rakp2(&m2).unwrap() else {
            panic!("status")
        };
        assert_eq!((r2.bmc_random, r2.bmc_guid), ([1; 16], [2; 16]));
        assert_eq!(r2.auth_code, [3; 20]);
        assert_eq!(
            rakp::decode_rakp2(&encode_rakp2(3, 0x0d, 0xa1, &[0; 16], &[0; 16], &[])).unwrap(),
            rakp::Reply::Status { tag: 3, code: 0x0d }
        );
        let m3 = rakp::encode_rakp3(3, 0, 0x77, &[4; 20]);
        let r3 = decode_rakp3(&m3).unwrap();
        assert_eq!((r3.status, r3.bmc_session_id), (0, 0x77));
        assert_eq!(r3.auth_code, [4; 20]);
        assert!(decode_rakp3(&m3[..7]).is_err());
        let m4 = encode_rakp4(3, 0, 0xa1, &[5; 12]);
        let rakp::Reply::Ok(r4) = rakp::decode_rakp4(&m4).unwrap() else {
            panic!("status")
        };
        assert_eq!(r4.icv, [5; 12]);
    }

    #[test]
    fn command_data_reads_back_with_the_console_parsers() {
        let caps = AuthCapabilities::decode(&auth_capabilities_data(1)).unwrap();
        assert!(caps.ipmi_v20);
        let suites =
            crate::codec::commands::parse_cipher_suite_records(&cipher_suites_data(1, 0)[1..]);
        assert_eq!(
            suites.iter().map(|s| s.id).collect::<Vec<_>>(),
            [3, 17],
            "{suites:?}"
        );
        assert_eq!(cipher_suites_data(1, 1), [1]);
        let id = crate::codec::commands::DeviceId::decode(&device_id_data(0x20, 4753, 7)).unwrap();
        assert_eq!((id.manufacturer_id, id.product_id), (4753, 7));
        for p in [PowerState::On, PowerState::Off] {
            assert_eq!(
                ChassisStatus::decode(&chassis_status_data(p))
                    .unwrap()
                    .power,
                p
            );
        }
        for action in [
            ChassisControl::PowerOff,
            ChassisControl::PowerOn,
            ChassisControl::PowerCycle,
            ChassisControl::HardReset,
            ChassisControl::SoftOff,
        ] {
            let req = crate::codec::commands::chassis_control(action);
            assert_eq!(decode_chassis_control(&req.data).unwrap(), action);
        }
        assert!(decode_chassis_control(&[0x0f]).is_err());
        let opts = BootOptions {
            device: BootDevice::Pxe,
            persistent: false,
            uefi: true,
            valid: true,
        };
        let req = crate::codec::commands::set_system_boot_options(opts);
        assert_eq!(
            decode_set_boot_options(&req.data).unwrap(),
            BootOptionsSet::Flags(opts)
        );
        assert_eq!(
            decode_set_boot_options(&[0x00, 0x01]).unwrap(),
            BootOptionsSet::Other(0)
        );
        assert_eq!(BootOptions::decode(&boot_options_data(opts)).unwrap(), opts);
    }
}
