//! RMCP framing (DMTF ASF 2.0 §3.2.2) and the ASF presence ping/pong used to probe a BMC.

use super::DecodeError;

/// RMCP version 1.0, the only one in use.
pub const RMCP_VERSION: u8 = 0x06;
/// Sequence number meaning "no RMCP ACK wanted"; IPMI always uses it.
pub const RMCP_SEQ_NO_ACK: u8 = 0xff;
/// The ASF IANA enterprise number (4542), big-endian on the wire.
pub const ASF_IANA: [u8; 4] = [0x00, 0x00, 0x11, 0xbe];

const ASF_PING: u8 = 0x80;
const ASF_PONG: u8 = 0x40;

/// The class byte of an RMCP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RmcpClass {
    Asf,
    Ipmi,
}

impl RmcpClass {
    fn byte(self) -> u8 {
        match self {
            RmcpClass::Asf => 0x06,
            RmcpClass::Ipmi => 0x07,
        }
    }
}

/// Writes the 4-byte RMCP header.
pub fn write_header(out: &mut Vec<u8>, class: RmcpClass) {
    out.extend_from_slice(&[RMCP_VERSION, 0x00, RMCP_SEQ_NO_ACK, class.byte()]);
}

/// Splits an RMCP datagram into its class and body.
pub fn split(datagram: &[u8]) -> Result<(RmcpClass, &[u8]), DecodeError> {
    let header = datagram.get(..4).ok_or(DecodeError::Truncated {
        what: "RMCP header",
        need: 4,
        got: datagram.len(),
    })?;
    if header[0] != RMCP_VERSION {
        return Err(DecodeError::Invalid {
            what: "RMCP version",
            value: header[0] as u32,
        });
    }
    // Bit 7 of the class marks an RMCP ACK; neither side of IPMI asks for them.
    let class = match header[3] & 0x1f {
        0x06 => RmcpClass::Asf,
        0x07 => RmcpClass::Ipmi,
        other => {
            return Err(DecodeError::Invalid {
                what: "RMCP message class",
                value: other as u32,
            })
        }
    };
    Ok((class, &datagram[4..]))
}

/// An ASF presence ping with `tag` (echoed by the pong).
pub fn encode_ping(tag: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    write_header(&mut out, RmcpClass::Asf);
    out.extend_from_slice(&ASF_IANA);
    out.extend_from_slice(&[ASF_PING, tag, 0x00, 0x00]);
    out
}

/// What a presence pong says about the managed system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pong {
    pub tag: u8,
    pub iana: u32,
    /// Bit 7 of "supported entities": the system speaks IPMI.
    pub ipmi_supported: bool,
}

/// Decodes an ASF presence pong datagram.
pub fn decode_pong(datagram: &[u8]) -> Result<Pong, DecodeError> {
    let (class, body) = split(datagram)?;
    if class != RmcpClass::Asf {
        return Err(DecodeError::Unexpected {
            what: "RMCP class",
            expected: "ASF",
        });
    }
    if body.len() < 8 + 16 {
        return Err(DecodeError::Truncated {
            what: "ASF pong",
            need: 24,
            got: body.len(),
        });
    }
    if body[4] != ASF_PONG {
        return Err(DecodeError::Invalid {
            what: "ASF message type (want pong 0x40)",
            value: body[4] as u32,
        });
    }
    let data = &body[8..];
    Ok(Pong {
        tag: body[5],
        iana: u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
        ipmi_supported: data[8] & 0x80 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_bytes_match_asf_spec() {
        assert_eq!(
            encode_ping(7),
            [0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x07, 0x00, 0x00]
        );
    }

    #[test]
    fn pong_captured_from_ipmi_sim_decodes() {
        // Captured from OpenIPMI ipmi_sim 2.0.x answering encode_ping(7).
        let pong = [
            0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x40, 0x07, 0x00, 0x10, 0x00, 0x00,
            0x11, 0xbe, 0x00, 0x00, 0x00, 0x00, 0x81, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        let p = decode_pong(&pong).unwrap();
        assert_eq!(p.tag, 7);
        assert_eq!(p.iana, 4542);
        assert!(p.ipmi_supported);
    }

    #[test]
    fn truncated_and_wrong_packets_are_errors() {
        assert!(matches!(
            decode_pong(&[0x06, 0x00]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode_pong(&[0x05, 0x00, 0xff, 0x06]),
            Err(DecodeError::Invalid { .. })
        ));
        let ping = encode_ping(1);
        assert!(decode_pong(&ping).is_err(), "a ping is not a pong");
    }
}
