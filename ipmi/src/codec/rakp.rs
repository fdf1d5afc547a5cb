//! RMCP+ session establishment messages (IPMI 2.0 §13.17–13.23): Open Session
//! request/response and RAKP messages 1–4, with RMCP+ status codes made readable.

use super::{CipherSuite, DecodeError};

/// Open Session Request: proposes one algorithm of each kind.
pub fn encode_open_session(
    tag: u8,
    max_privilege: u8,
    console_session_id: u32,
    suite: CipherSuite,
) -> Vec<u8> {
    let mut out = vec![tag, max_privilege, 0, 0];
    out.extend_from_slice(&console_session_id.to_le_bytes());
    for (kind, alg) in [
        (0x00, suite.auth_alg()),
        (0x01, suite.integrity_alg()),
        (0x02, suite.confidentiality_alg()),
    ] {
        out.extend_from_slice(&[kind, 0, 0, 0x08, alg, 0, 0, 0]);
    }
    out
}

/// RMCP+ status code (IPMI 2.0 table 13-15) as a readable reason.
pub fn status_text(code: u8) -> &'static str {
    match code {
        0x00 => "no error",
        0x01 => "insufficient resources to create a session",
        0x02 => "invalid session ID",
        0x03 => "invalid payload type",
        0x04 => "invalid authentication algorithm (cipher suite not supported by the BMC)",
        0x05 => "invalid integrity algorithm (cipher suite not supported by the BMC)",
        0x06 => "no matching authentication payload",
        0x07 => "no matching integrity payload",
        0x08 => "inactive session ID",
        0x09 => "invalid role",
        0x0a => "unauthorized role or privilege level requested",
        0x0b => "insufficient resources to create a session at the requested role",
        0x0c => "invalid user name length",
        0x0d => "unauthorized name (unknown user name)",
        0x0e => "unauthorized GUID",
        0x0f => "invalid integrity check value (wrong password or BMC key)",
        0x10 => "invalid confidentiality algorithm (cipher suite not supported by the BMC)",
        0x11 => "no cipher suite match with proposed security algorithms",
        0x12 => "illegal or unrecognized parameter",
        _ => "unknown RMCP+ status code",
    }
}

/// What a session-setup reply carried: success with fields, or the BMC's status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    Ok(T),
    Status { tag: u8, code: u8 },
}

/// Open Session Response fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSessionResponse {
    pub tag: u8,
    pub max_privilege: u8,
    pub console_session_id: u32,
    pub bmc_session_id: u32,
    pub auth_alg: u8,
    pub integrity_alg: u8,
    pub confidentiality_alg: u8,
}

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

fn status_first(b: &[u8], what: &'static str) -> Result<Option<Reply<()>>, DecodeError> {
    need(b, 2, what)?;
    Ok((b[1] != 0).then_some(Reply::Status {
        tag: b[0],
        code: b[1],
    }))
}

pub fn decode_open_session_response(b: &[u8]) -> Result<Reply<OpenSessionResponse>, DecodeError> {
    const WHAT: &str = "Open Session Response";
    if let Some(Reply::Status { tag, code }) = status_first(b, WHAT)? {
        return Ok(Reply::Status { tag, code });
    }
    need(b, 36, WHAT)?;
    Ok(Reply::Ok(OpenSessionResponse {
        tag: b[0],
        max_privilege: b[2],
        console_session_id: le32(&b[4..8]),
        bmc_session_id: le32(&b[8..12]),
        auth_alg: b[16] & 0x3f,
        integrity_alg: b[24] & 0x3f,
        confidentiality_alg: b[32] & 0x3f,
    }))
}

/// RAKP Message 1.
pub fn encode_rakp1(
    tag: u8,
    bmc_session_id: u32,
    console_random: &[u8; 16],
    role: u8,
    username: &[u8],
) -> Vec<u8> {
    let mut out = vec![tag, 0, 0, 0];
    out.extend_from_slice(&bmc_session_id.to_le_bytes());
    out.extend_from_slice(console_random);
    out.extend_from_slice(&[role, 0, 0, username.len() as u8]);
    out.extend_from_slice(username);
    out
}

/// RAKP Message 2 fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp2 {
    pub tag: u8,
    pub console_session_id: u32,
    pub bmc_random: [u8; 16],
    pub bmc_guid: [u8; 16],
    pub auth_code: Vec<u8>,
}

pub fn decode_rakp2(b: &[u8]) -> Result<Reply<Rakp2>, DecodeError> {
    const WHAT: &str = "RAKP Message 2";
    if let Some(Reply::Status { tag, code }) = status_first(b, WHAT)? {
        return Ok(Reply::Status { tag, code });
    }
    need(b, 40, WHAT)?;
    Ok(Reply::Ok(Rakp2 {
        tag: b[0],
        console_session_id: le32(&b[4..8]),
        bmc_random: b[8..24].try_into().expect("16 bytes"),
        bmc_guid: b[24..40].try_into().expect("16 bytes"),
        auth_code: b[40..].to_vec(),
    }))
}

/// RAKP Message 3 (status 0 with our auth code, or an error status to abort).
pub fn encode_rakp3(tag: u8, status: u8, bmc_session_id: u32, auth_code: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, status, 0, 0];
    out.extend_from_slice(&bmc_session_id.to_le_bytes());
    out.extend_from_slice(auth_code);
    out
}

/// RAKP Message 4 fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rakp4 {
    pub tag: u8,
    pub console_session_id: u32,
    pub icv: Vec<u8>,
}

pub fn decode_rakp4(b: &[u8]) -> Result<Reply<Rakp4>, DecodeError> {
    const WHAT: &str = "RAKP Message 4";
    if let Some(Reply::Status { tag, code }) = status_first(b, WHAT)? {
        return Ok(Reply::Status { tag, code });
    }
    need(b, 8, WHAT)?;
    Ok(Reply::Ok(Rakp4 {
        tag: b[0],
        console_session_id: le32(&b[4..8]),
        icv: b[8..].to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_session_request_suite3_bytes() {
        let b = encode_open_session(0, 4, 0xa0a2a3a4, CipherSuite::Suite3);
        assert_eq!(
            b,
            [
                0x00, 0x04, 0x00, 0x00, 0xa4, 0xa3, 0xa2, 0xa0, // tag, priv, console SID
                0x00, 0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, // RAKP-HMAC-SHA1
                0x01, 0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, // HMAC-SHA1-96
                0x02, 0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, // AES-CBC-128
            ]
        );
        let b17 = encode_open_session(0, 4, 1, CipherSuite::Suite17);
        assert_eq!((b17[12], b17[20], b17[28]), (0x03, 0x04, 0x01));
    }

    #[test]
    fn open_session_response_decodes_ok_and_status() {
        let mut b = vec![
            0x00, 0x00, 0x04, 0x00, 0xa4, 0xa3, 0xa2, 0xa0, 0x01, 0x02, 0x03, 0x04,
        ];
        b.extend_from_slice(&[0x00, 0, 0, 0x08, 0x01, 0, 0, 0]);
        b.extend_from_slice(&[0x01, 0, 0, 0x08, 0x01, 0, 0, 0]);
        b.extend_from_slice(&[0x02, 0, 0, 0x08, 0x01, 0, 0, 0]);
        let Reply::Ok(r) = decode_open_session_response(&b).unwrap() else {
            panic!("status")
        };
        assert_eq!(r.console_session_id, 0xa0a2a3a4);
        assert_eq!(r.bmc_session_id, 0x04030201);
        assert_eq!(
            (r.auth_alg, r.integrity_alg, r.confidentiality_alg),
            (1, 1, 1)
        );
        // ipmi_sim refusing suite 17: status 0x04, short body.
        let refused = [0x00, 0x04, 0x00, 0x00, 0xa4, 0xa3, 0xa2, 0xa0];
        assert_eq!(
            decode_open_session_response(&refused).unwrap(),
            Reply::Status { tag: 0, code: 4 }
        );
        assert!(status_text(4).contains("cipher suite"));
        for cut in 0..b.len() {
            let _ = decode_open_session_response(&b[..cut]);
        }
        assert!(decode_open_session_response(&b[..20]).is_err());
    }

    #[test]
    fn rakp_messages() {
        let b = encode_rakp1(1, 0x11223344, &[7; 16], 0x14, b"admin");
        assert_eq!(&b[..8], &[1, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
        assert_eq!(&b[24..28], &[0x14, 0, 0, 5]);
        assert_eq!(&b[28..], b"admin");
        let mut r2 = vec![1, 0, 0, 0, 4, 3, 2, 1];
        r2.extend_from_slice(&[0xaa; 16]);
        r2.extend_from_slice(&[0xbb; 16]);
        r2.extend_from_slice(&[0xcc; 20]);
        let Reply::Ok(m) = decode_rakp2(&r2).unwrap() else {
            panic!()
        };
        assert_eq!(m.console_session_id, 0x01020304);
        assert_eq!(m.auth_code, [0xcc; 20]);
        assert_eq!(
            decode_rakp2(&[1, 0x0d, 0, 0, 4, 3, 2, 1]).unwrap(),
            Reply::Status { tag: 1, code: 0x0d }
        );
        assert!(decode_rakp2(&r2[..39]).is_err());
        assert_eq!(
            encode_rakp3(2, 0, 5, &[9; 3]),
            [2, 0, 0, 0, 5, 0, 0, 0, 9, 9, 9]
        );
        let Reply::Ok(m4) = decode_rakp4(&[2, 0, 0, 0, 4, 3, 2, 1, 5, 5]).unwrap() else {
            panic!()
        };
        assert_eq!(m4.icv, [5, 5]);
        assert!(decode_rakp4(&[2]).is_err());
    }
}
