//! TFTP packets (RFC 1350, RFC 2347 OACK): bytes ⇄ [`Packet`], no I/O.

use thiserror::Error;

/// Why a datagram is not a valid TFTP packet.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PacketError {
    #[error("TFTP packet too short ({0} bytes)")]
    Short(usize),
    #[error("unknown TFTP opcode {0}")]
    Opcode(u16),
    #[error("TFTP {0} is not NUL-terminated")]
    Unterminated(&'static str),
    #[error("TFTP {0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("TFTP {0} has an option name without a value")]
    OddOptions(&'static str),
}

/// TFTP error codes (RFC 1350 §5, RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    DiskFull = 3,
    IllegalOperation = 4,
    UnknownTid = 5,
    FileExists = 6,
    NoSuchUser = 7,
    OptionRefused = 8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Read request: file name, mode, options in the order sent (names lower-cased).
    Rrq {
        filename: String,
        mode: String,
        options: Vec<(String, String)>,
    },
    Wrq {
        filename: String,
        mode: String,
    },
    Data {
        block: u16,
        data: Vec<u8>,
    },
    Ack {
        block: u16,
    },
    Error {
        code: u16,
        message: String,
    },
    Oack {
        options: Vec<(String, String)>,
    },
}

fn strings(mut b: &[u8], what: &'static str) -> Result<Vec<String>, PacketError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let end = b
            .iter()
            .position(|c| *c == 0)
            .ok_or(PacketError::Unterminated(what))?;
        let s = std::str::from_utf8(&b[..end]).map_err(|_| PacketError::NotUtf8(what))?;
        out.push(s.to_string());
        b = &b[end + 1..];
    }
    Ok(out)
}

fn pairs(list: &[String], what: &'static str) -> Result<Vec<(String, String)>, PacketError> {
    if !list.len().is_multiple_of(2) {
        return Err(PacketError::OddOptions(what));
    }
    Ok(list
        .chunks(2)
        .map(|c| (c[0].to_ascii_lowercase(), c[1].clone()))
        .collect())
}

impl Packet {
    pub fn decode(b: &[u8]) -> Result<Packet, PacketError> {
        if b.len() < 4 {
            return Err(PacketError::Short(b.len()));
        }
        let op = u16::from_be_bytes([b[0], b[1]]);
        let rest = &b[2..];
        let num = u16::from_be_bytes([b[2], b[3]]);
        Ok(match op {
            1 | 2 => {
                let s = strings(rest, "request")?;
                if s.len() < 2 {
                    return Err(PacketError::Unterminated("request"));
                }
                let (filename, mode) = (s[0].clone(), s[1].to_ascii_lowercase());
                if op == 1 {
                    Packet::Rrq {
                        filename,
                        mode,
                        options: pairs(&s[2..], "request")?,
                    }
                } else {
                    Packet::Wrq { filename, mode }
                }
            }
            3 => Packet::Data {
                block: num,
                data: b[4..].to_vec(),
            },
            4 => Packet::Ack { block: num },
            5 => Packet::Error {
                code: num,
                message: strings(&b[4..], "error message")?
                    .into_iter()
                    .next()
                    .unwrap_or_default(),
            },
            6 => {
                const WHAT: &str = "option acknowledgment";
                Packet::Oack {
                    options: pairs(&strings(rest, WHAT)?, WHAT)?,
                }
            }
            other => return Err(PacketError::Opcode(other)),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let put = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        match self {
            Packet::Rrq {
                filename,
                mode,
                options,
            } => {
                out.extend_from_slice(&1u16.to_be_bytes());
                put(&mut out, filename);
                put(&mut out, mode);
                for (k, v) in options {
                    put(&mut out, k);
                    put(&mut out, v);
                }
            }
            Packet::Wrq { filename, mode } => {
                out.extend_from_slice(&2u16.to_be_bytes());
                put(&mut out, filename);
                put(&mut out, mode);
            }
            Packet::Data { block, data } => {
                out.extend_from_slice(&3u16.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
                out.extend_from_slice(data);
            }
            Packet::Ack { block } => {
                out.extend_from_slice(&4u16.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                out.extend_from_slice(&5u16.to_be_bytes());
                out.extend_from_slice(&code.to_be_bytes());
                put(&mut out, message);
            }
            Packet::Oack { options } => {
                out.extend_from_slice(&6u16.to_be_bytes());
                for (k, v) in options {
                    put(&mut out, k);
                    put(&mut out, v);
                }
            }
        }
        out
    }

    pub fn error(code: ErrorCode, message: &str) -> Packet {
        Packet::Error {
            code: code as u16,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrq_with_options_from_rfc2347_example() {
        let b = b"\x00\x01undionly.kpxe\x00octet\x00blksize\x001428\x00tsize\x000\x00";
        let p = Packet::decode(b).unwrap();
        assert_eq!(
            p,
            Packet::Rrq {
                filename: "undionly.kpxe".into(),
                mode: "octet".into(),
                options: vec![
                    ("blksize".into(), "1428".into()),
                    ("tsize".into(), "0".into())
                ],
            }
        );
        assert_eq!(p.encode(), b);
    }

    #[test]
    fn data_ack_error_oack_round_trip() {
        for p in [
            Packet::Data {
                block: 65535,
                data: vec![1, 2, 3],
            },
            Packet::Ack { block: 7 },
            Packet::error(ErrorCode::FileNotFound, "no such file"),
            Packet::Oack {
                options: vec![("blksize".into(), "8192".into())],
            },
        ] {
            assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
        }
        assert_eq!(Packet::Ack { block: 1 }.encode(), [0, 4, 0, 1]);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(Packet::decode(&[0, 1]), Err(PacketError::Short(2)));
        assert_eq!(Packet::decode(&[0, 9, 0, 0]), Err(PacketError::Opcode(9)));
        assert!(Packet::decode(b"\x00\x01file\x00octet").is_err());
        assert!(Packet::decode(b"\x00\x01file\x00").is_err());
        assert!(Packet::decode(b"\x00\x01\xff\xfe\x00octet\x00").is_err());
        // Found by the fuzz target: a lone option name (it re-encoded to a shorter packet).
        assert_eq!(
            Packet::decode(b"\x00\x01f\x00octet\x00blksize\x00"),
            Err(PacketError::OddOptions("request"))
        );
        assert_eq!(
            Packet::decode(b"\x00\x06a\x00"),
            Err(PacketError::OddOptions("option acknowledgment"))
        );
        for n in 0..40u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let _ = Packet::decode(&junk);
        }
    }
}
