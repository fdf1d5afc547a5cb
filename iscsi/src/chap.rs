//! CHAP with MD5 (RFC 1994 as used by RFC 7143 §12.1.3): challenge encoding and response check. No I/O.

use md5::{Digest, Md5};

/// A user name and secret pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("secret", &"******")
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChapError {
    #[error("CHAP value {0:?} is not 0x-hex or 0b-base64")]
    BadEncoding(String),
    #[error("CHAP_A {0:?} offers no algorithm we support (only 5, MD5)")]
    NoAlgorithm(String),
    #[error("CHAP_I {0:?} is not a number 0-255")]
    BadIdentifier(String),
    #[error("CHAP key {0} is missing")]
    Missing(&'static str),
    #[error("CHAP response has {0} bytes, MD5 needs 16")]
    BadLength(usize),
    #[error("CHAP user {0:?} is not known")]
    UnknownUser(String),
    #[error("CHAP response does not match the secret")]
    WrongResponse,
    #[error("CHAP challenge of {0} bytes is too short or too long (16 to 1024)")]
    BadChallenge(usize),
}

/// MD5(id ‖ secret ‖ challenge).
pub fn response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

pub fn encode_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Decodes a CHAP binary value: `0x…` hex or `0b…` base64 (RFC 7143 §6.1).
pub fn decode_binary(v: &str) -> Result<Vec<u8>, ChapError> {
    let bad = || ChapError::BadEncoding(v.chars().take(40).collect());
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        // Bytes, not str slices: a peer's non-ASCII text must not split a character.
        let h = h.as_bytes();
        if h.is_empty() || h.len() % 2 != 0 {
            return Err(bad());
        }
        let nibble = |c: u8| char::from(c).to_digit(16);
        h.chunks(2)
            .map(|p| Some((nibble(p[0])? << 4 | nibble(p[1])?) as u8))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)
    } else if let Some(b) = v.strip_prefix("0b").or_else(|| v.strip_prefix("0B")) {
        base64(b).ok_or_else(bad)
    } else {
        Err(bad())
    }
}

fn base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in s {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Picks MD5 (5) from a CHAP_A list.
pub fn choose_algorithm(list: &str) -> Result<(), ChapError> {
    if list.split(',').any(|a| a.trim() == "5") {
        Ok(())
    } else {
        Err(ChapError::NoAlgorithm(list.chars().take(40).collect()))
    }
}

pub fn parse_id(v: &str) -> Result<u8, ChapError> {
    v.parse::<u8>()
        .map_err(|_| ChapError::BadIdentifier(v.chars().take(10).collect()))
}

/// Checks a peer's CHAP_N/CHAP_R against the expected credentials.
pub fn verify(
    expected: &Credentials,
    id: u8,
    challenge: &[u8],
    name: &str,
    resp: &str,
) -> Result<(), ChapError> {
    let got = decode_binary(resp)?;
    if got.len() != 16 {
        return Err(ChapError::BadLength(got.len()));
    }
    if name != expected.user {
        return Err(ChapError::UnknownUser(name.chars().take(64).collect()));
    }
    let want = response(id, expected.secret.as_bytes(), challenge);
    // Constant-time compare.
    let diff = got
        .iter()
        .zip(want.iter())
        .fold(0u8, |a, (x, y)| a | (x ^ y));
    if diff == 0 {
        Ok(())
    } else {
        Err(ChapError::WrongResponse)
    }
}

/// A fresh challenge (id, 16 random bytes).
pub fn new_challenge() -> (u8, Vec<u8>) {
    use rand::Rng;
    let mut rng = rand::rng();
    let id: u8 = rng.random();
    let mut c = vec![0u8; 16];
    rng.fill(&mut c[..]);
    (id, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the initiator fuzz target: a target's CHAP_C with a multi-byte character
    /// after `0x` split it mid-character and panicked (both ends decode peers' values).
    #[test]
    fn non_ascii_hex_is_refused_not_a_panic() {
        for v in [
            "0x\u{fffd}a",
            "0xa\u{e9}",
            "0x\u{1f600}00",
            "0b\u{e9}\u{e9}",
        ] {
            assert!(
                matches!(decode_binary(v), Err(ChapError::BadEncoding(_))),
                "{v:?}"
            );
        }
        assert_eq!(decode_binary("0x0aFf").unwrap(), [0x0a, 0xff]);
    }

    #[test]
    fn md5_response_matches_fixture() {
        // md5(0x01 ‖ "secret" ‖ 00 01 02 03), computed independently with Python hashlib.
        let r = response(1, b"secret", &[0, 1, 2, 3]);
        assert_eq!(encode_hex(&r), "0xe82cb2ed1efe04893c9cf73d4dd12e2d");
    }

    #[test]
    fn decodes_hex_and_base64() {
        assert_eq!(decode_binary("0x00ff10").unwrap(), vec![0, 255, 16]);
        assert_eq!(decode_binary("0bAP8Q").unwrap(), vec![0, 255, 16]);
        assert!(decode_binary("00ff").is_err());
        assert!(decode_binary("0xabc").is_err());
        assert!(decode_binary("0xzz").is_err());
    }

    #[test]
    fn verify_accepts_right_and_rejects_wrong() {
        let cred = Credentials {
            user: "u".into(),
            secret: "s3cr3t-secret".into(),
        };
        let ch = [9u8; 16];
        let good = encode_hex(&response(7, b"s3cr3t-secret", &ch));
        assert_eq!(verify(&cred, 7, &ch, "u", &good), Ok(()));
        assert_eq!(
            verify(&cred, 8, &ch, "u", &good),
            Err(ChapError::WrongResponse)
        );
        assert_eq!(
            verify(&cred, 7, &ch, "x", &good),
            Err(ChapError::UnknownUser("x".into()))
        );
        assert_eq!(
            verify(&cred, 7, &ch, "u", "0x00"),
            Err(ChapError::BadLength(1))
        );
        assert!(choose_algorithm("7,5").is_ok());
        assert!(choose_algorithm("6").is_err());
        assert!(parse_id("256").is_err());
    }
}
