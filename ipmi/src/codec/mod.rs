//! Pure IPMI-over-LAN codec: bytes in, typed values out, no sockets. Every decoder takes
//! untrusted bytes and returns a [`DecodeError`] naming what was wrong instead of panicking.

pub mod bmc;
pub mod commands;
pub mod completion;
pub mod crypto;
pub mod message;
pub mod rakp;
pub mod rmcp;
pub mod session;

use thiserror::Error;

/// Why a datagram or message could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("{what} is truncated: need {need} bytes, got {got}")]
    Truncated {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error("{what} has an invalid value {value:#x}")]
    Invalid { what: &'static str, value: u32 },
    #[error("unexpected {what}: expected {expected}")]
    Unexpected {
        what: &'static str,
        expected: &'static str,
    },
    #[error("{what} checksum mismatch")]
    Checksum { what: &'static str },
    #[error(
        "integrity check (auth code) of a session packet failed: wrong key or tampered packet"
    )]
    Integrity,
    #[error("cannot decrypt the payload: {reason}")]
    Decrypt { reason: &'static str },
}

/// Session privilege levels (IPMI 2.0 table 22-*, "privilege level").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    Callback = 1,
    User = 2,
    Operator = 3,
    Administrator = 4,
}

impl Privilege {
    pub fn from_byte(b: u8) -> Option<Privilege> {
        match b & 0x0f {
            1 => Some(Privilege::Callback),
            2 => Some(Privilege::User),
            3 => Some(Privilege::Operator),
            4 => Some(Privilege::Administrator),
            _ => None,
        }
    }

    /// Parses "user", "operator", "administrator"/"admin", "callback" (Ironic's
    /// `ipmi_priv_level` spellings, case-insensitive).
    pub fn parse(s: &str) -> Option<Privilege> {
        match s.to_ascii_lowercase().as_str() {
            "callback" => Some(Privilege::Callback),
            "user" => Some(Privilege::User),
            "operator" => Some(Privilege::Operator),
            "administrator" | "admin" => Some(Privilege::Administrator),
            _ => None,
        }
    }
}

/// The RMCP+ cipher suites this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128.
    Suite3,
    /// RAKP-HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128.
    Suite17,
}

impl CipherSuite {
    pub fn from_id(id: u8) -> Option<CipherSuite> {
        match id {
            3 => Some(CipherSuite::Suite3),
            17 => Some(CipherSuite::Suite17),
            _ => None,
        }
    }

    pub fn id(self) -> u8 {
        match self {
            CipherSuite::Suite3 => 3,
            CipherSuite::Suite17 => 17,
        }
    }

    /// Authentication algorithm number (RAKP-HMAC-SHA1 = 1, RAKP-HMAC-SHA256 = 3).
    pub fn auth_alg(self) -> u8 {
        match self {
            CipherSuite::Suite3 => 0x01,
            CipherSuite::Suite17 => 0x03,
        }
    }

    /// Integrity algorithm number (HMAC-SHA1-96 = 1, HMAC-SHA256-128 = 4).
    pub fn integrity_alg(self) -> u8 {
        match self {
            CipherSuite::Suite3 => 0x01,
            CipherSuite::Suite17 => 0x04,
        }
    }

    /// Confidentiality algorithm number (AES-CBC-128 = 1).
    pub fn confidentiality_alg(self) -> u8 {
        0x01
    }
}

/// Two's-complement checksum used by IPMI messages: the bytes plus it sum to 0 mod 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_makes_sum_zero() {
        // From the IPMI spec's LAN example: rsAddr 0x20, netFn/LUN 0x18 -> 0xc8.
        assert_eq!(checksum(&[0x20, 0x18]), 0xc8);
        let data = [0x81, 0x04, 0x38, 0x8e, 0x04];
        let c = checksum(&data);
        let sum = data.iter().fold(c, |a, b| a.wrapping_add(*b));
        assert_eq!(sum, 0);
        assert_eq!(checksum(&[]), 0);
    }

    #[test]
    fn privilege_parse_and_byte() {
        assert_eq!(
            Privilege::parse("ADMINISTRATOR"),
            Some(Privilege::Administrator)
        );
        assert_eq!(Privilege::parse("operator"), Some(Privilege::Operator));
        assert_eq!(Privilege::parse("root"), None);
        assert_eq!(Privilege::from_byte(0x14), Some(Privilege::Administrator));
        assert_eq!(Privilege::from_byte(0), None);
    }

    #[test]
    fn cipher_suites() {
        assert_eq!(CipherSuite::from_id(3), Some(CipherSuite::Suite3));
        assert_eq!(CipherSuite::from_id(17).map(|s| s.id()), Some(17));
        assert_eq!(CipherSuite::from_id(0), None);
    }
}
