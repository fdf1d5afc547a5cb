//! Session wrappers (IPMI 2.0 §13.6): the IPMI 1.5 header (auth type none, for pre-session
//! Get Channel Authentication Capabilities) and the IPMI 2.0 / RMCP+ header with its
//! integrity trailer and AES-CBC-128 confidentiality.

use super::crypto::{ct_eq, integrity_len, SessionKeys};
use super::rmcp::{self, RmcpClass};
use super::DecodeError;

/// Auth type byte that marks an RMCP+ (IPMI 2.0) session header.
pub const AUTH_TYPE_RMCP_PLUS: u8 = 0x06;
/// "Next header" byte of the integrity trailer.
const NEXT_HEADER: u8 = 0x07;

/// RMCP+ payload types (IPMI 2.0 table 13-16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadType {
    Ipmi,
    OpenSessionRequest,
    OpenSessionResponse,
    Rakp1,
    Rakp2,
    Rakp3,
    Rakp4,
}

impl PayloadType {
    pub fn byte(self) -> u8 {
        match self {
            PayloadType::Ipmi => 0x00,
            PayloadType::OpenSessionRequest => 0x10,
            PayloadType::OpenSessionResponse => 0x11,
            PayloadType::Rakp1 => 0x12,
            PayloadType::Rakp2 => 0x13,
            PayloadType::Rakp3 => 0x14,
            PayloadType::Rakp4 => 0x15,
        }
    }

    pub fn from_byte(b: u8) -> Result<PayloadType, DecodeError> {
        Ok(match b & 0x3f {
            0x00 => PayloadType::Ipmi,
            0x10 => PayloadType::OpenSessionRequest,
            0x11 => PayloadType::OpenSessionResponse,
            0x12 => PayloadType::Rakp1,
            0x13 => PayloadType::Rakp2,
            0x14 => PayloadType::Rakp3,
            0x15 => PayloadType::Rakp4,
            other => {
                return Err(DecodeError::Invalid {
                    what: "RMCP+ payload type",
                    value: other as u32,
                })
            }
        })
    }
}

/// A decoded session packet (either version), payload in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// `None` for an IPMI 1.5 packet (always an IPMI message).
    pub payload_type: Option<PayloadType>,
    pub session_id: u32,
    pub seq: u32,
    pub encrypted: bool,
    pub authenticated: bool,
    pub payload: Vec<u8>,
}

/// An IPMI 1.5 packet with auth type none (used before a session exists).
pub fn encode_v15(seq: u32, session_id: u32, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(14 + message.len());
    rmcp::write_header(&mut out, RmcpClass::Ipmi);
    out.push(0x00);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&session_id.to_le_bytes());
    out.push(message.len() as u8);
    out.extend_from_slice(message);
    out
}

/// An IPMI 2.0 packet. With `keys`, the payload is encrypted with `iv` and the packet
/// carries an integrity trailer; without, it goes in clear (session setup).
pub fn encode_v2(
    payload_type: PayloadType,
    session_id: u32,
    seq: u32,
    payload: &[u8],
    keys: Option<(&SessionKeys, [u8; 16])>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + payload.len());
    rmcp::write_header(&mut out, RmcpClass::Ipmi);
    let body = match keys {
        Some((k, iv)) => k.encrypt(iv, payload),
        None => payload.to_vec(),
    };
    let flags = if keys.is_some() { 0xc0 } else { 0x00 };
    out.push(AUTH_TYPE_RMCP_PLUS);
    out.push(flags | payload_type.byte());
    out.extend_from_slice(&session_id.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    if let Some((k, _)) = keys {
        // Pad so that auth type … next header is a multiple of 4 bytes.
        let covered = out.len() - 4 + 2;
        let pad = (4 - covered % 4) % 4;
        out.extend(std::iter::repeat_n(0xff, pad));
        out.push(pad as u8);
        out.push(NEXT_HEADER);
        let code = k.integrity(&out[4..]);
        out.extend_from_slice(&code);
    }
    out
}

fn take<'a>(b: &'a [u8], at: usize, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
    b.get(at..at + n).ok_or(DecodeError::Truncated {
        what,
        need: at + n,
        got: b.len(),
    })
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes an RMCP datagram carrying an IPMI session packet. `keys` verify the integrity
/// trailer and decrypt; an authenticated or encrypted packet without keys is an error.
pub fn decode(datagram: &[u8], keys: Option<&SessionKeys>) -> Result<Packet, DecodeError> {
    let (class, body) = rmcp::split(datagram)?;
    if class != RmcpClass::Ipmi {
        return Err(DecodeError::Unexpected {
            what: "RMCP class",
            expected: "IPMI",
        });
    }
    let auth_type = *take(body, 0, 1, "IPMI session header")?
        .first()
        .unwrap_or(&0);
    if auth_type != AUTH_TYPE_RMCP_PLUS {
        return decode_v15(body);
    }
    let h = take(body, 0, 12, "IPMI 2.0 session header")?;
    let flags = h[1];
    let payload_type = PayloadType::from_byte(flags)?;
    let encrypted = flags & 0x80 != 0;
    let authenticated = flags & 0x40 != 0;
    let session_id = le32(&h[2..6]);
    let seq = le32(&h[6..10]);
    let len = u16::from_le_bytes([h[10], h[11]]) as usize;
    let raw = take(body, 12, len, "IPMI 2.0 payload")?;
    if (encrypted || authenticated) && keys.is_none() {
        return Err(DecodeError::Unexpected {
            what: "authenticated or encrypted packet",
            expected: "no session keys yet (spoofed or stray packet)",
        });
    }
    if authenticated {
        let k = keys.expect("checked above");
        let code_len = integrity_len(k.suite);
        let trailer = &body[12 + len..];
        if trailer.len() < 2 + code_len {
            return Err(DecodeError::Truncated {
                what: "integrity trailer",
                need: 12 + len + 2 + code_len,
                got: body.len(),
            });
        }
        let covered = body.len() - code_len;
        let pad = body[covered - 2] as usize;
        if body[covered - 1] != NEXT_HEADER || 12 + len + pad + 2 != covered {
            return Err(DecodeError::Invalid {
                what: "integrity pad/next header",
                value: body[covered - 1] as u32,
            });
        }
        if !ct_eq(&k.integrity(&body[..covered]), &body[covered..]) {
            return Err(DecodeError::Integrity);
        }
    }
    let payload = if encrypted {
        keys.expect("checked above").decrypt(raw)?
    } else {
        raw.to_vec()
    };
    Ok(Packet {
        payload_type: Some(payload_type),
        session_id,
        seq,
        encrypted,
        authenticated,
        payload,
    })
}

fn decode_v15(body: &[u8]) -> Result<Packet, DecodeError> {
    let auth_type = body[0];
    let h = take(body, 0, 9, "IPMI 1.5 session header")?;
    let seq = le32(&h[1..5]);
    let session_id = le32(&h[5..9]);
    // Auth types other than none carry a 16-byte auth code before the length.
    let at = if auth_type == 0 { 9 } else { 25 };
    let len = *take(body, at, 1, "IPMI 1.5 message length")?
        .first()
        .unwrap_or(&0) as usize;
    let payload = take(body, at + 1, len, "IPMI 1.5 message")?.to_vec();
    Ok(Packet {
        payload_type: None,
        session_id,
        seq,
        encrypted: false,
        authenticated: auth_type != 0,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CipherSuite;

    #[test]
    fn v15_get_channel_auth_caps_matches_capture() {
        // ipmitool -I lanplus's first packet, captured against ipmi_sim.
        let msg = [0x20, 0x18, 0xc8, 0x81, 0x00, 0x38, 0x8e, 0x04, 0xb5];
        let p = encode_v15(0, 0, &msg);
        assert_eq!(
            p,
            [
                0x06, 0x00, 0xff, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09,
                0x20, 0x18, 0xc8, 0x81, 0x00, 0x38, 0x8e, 0x04, 0xb5
            ]
        );
        let d = decode(&p, None).unwrap();
        assert_eq!(d.payload_type, None);
        assert_eq!(d.payload, msg);
    }

    #[test]
    fn v2_clear_round_trip() {
        let p = encode_v2(PayloadType::OpenSessionRequest, 0, 0, &[1, 2, 3], None);
        assert_eq!(&p[4..10], &[0x06, 0x10, 0, 0, 0, 0]);
        let d = decode(&p, None).unwrap();
        assert_eq!(d.payload_type, Some(PayloadType::OpenSessionRequest));
        assert_eq!(d.payload, [1, 2, 3]);
        assert!(!d.authenticated && !d.encrypted);
    }

    #[test]
    fn v2_secure_round_trip_both_suites_and_tamper_detection() {
        for suite in [CipherSuite::Suite3, CipherSuite::Suite17] {
            let keys = SessionKeys::derive(suite, &[0x42; 20]);
            let msg = [0x20u8, 0x00, 0xe0, 0x81, 0x04, 0x01, 0x7a];
            let p = encode_v2(PayloadType::Ipmi, 0x1234, 7, &msg, Some((&keys, [9; 16])));
            // auth type … next header is a multiple of four.
            assert_eq!((p.len() - 4 - integrity_len(suite)) % 4, 0);
            let d = decode(&p, Some(&keys)).unwrap();
            assert_eq!(d.payload, msg);
            assert_eq!((d.session_id, d.seq), (0x1234, 7));
            assert!(d.authenticated && d.encrypted);
            let mut bad = p.clone();
            bad[20] ^= 1;
            assert_eq!(decode(&bad, Some(&keys)), Err(DecodeError::Integrity));
            let other = SessionKeys::derive(suite, &[0x43; 20]);
            assert_eq!(decode(&p, Some(&other)), Err(DecodeError::Integrity));
            assert!(decode(&p, None).is_err(), "no keys: refuse");
            for cut in 0..p.len() {
                assert!(decode(&p[..cut], Some(&keys)).is_err(), "cut at {cut}");
            }
        }
    }
}
