//! IPMI messages as carried over LAN (IPMI 2.0 §13.8): addresses, netFn/LUN, sequence
//! number, command and the two checksums.

use super::{checksum, DecodeError};

/// The BMC's responder address.
pub const BMC_ADDR: u8 = 0x20;
/// Remote console software ID used as requester address.
pub const CONSOLE_SWID: u8 = 0x81;

/// A request to the BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub netfn: u8,
    pub cmd: u8,
    pub data: Vec<u8>,
}

impl Request {
    pub fn new(netfn: u8, cmd: u8, data: Vec<u8>) -> Request {
        Request { netfn, cmd, data }
    }

    /// Encodes with requester sequence number `rq_seq` (6 bits).
    pub fn encode(&self, rq_seq: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(7 + self.data.len());
        out.push(BMC_ADDR);
        out.push(self.netfn << 2);
        out.push(checksum(&out[0..2]));
        out.push(CONSOLE_SWID);
        out.push((rq_seq & 0x3f) << 2);
        out.push(self.cmd);
        out.extend_from_slice(&self.data);
        out.push(checksum(&out[3..]));
        out
    }

    /// Decodes a request (the BMC's side; used to check captures and by the fuzz target).
    /// Returns the request and its sequence number.
    pub fn decode(b: &[u8]) -> Result<(Request, u8), DecodeError> {
        if b.len() < 7 {
            return Err(DecodeError::Truncated {
                what: "IPMI request message",
                need: 7,
                got: b.len(),
            });
        }
        if checksum(&b[0..2]) != b[2] {
            return Err(DecodeError::Checksum {
                what: "IPMI message header",
            });
        }
        let last = b.len() - 1;
        if checksum(&b[3..last]) != b[last] {
            return Err(DecodeError::Checksum {
                what: "IPMI message body",
            });
        }
        Ok((
            Request::new(b[1] >> 2, b[5], b[6..last].to_vec()),
            b[4] >> 2,
        ))
    }
}

/// A response from the BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The response netFn (request netFn + 1).
    pub netfn: u8,
    pub rq_seq: u8,
    pub cmd: u8,
    pub completion_code: u8,
    pub data: Vec<u8>,
}

impl Response {
    pub fn decode(b: &[u8]) -> Result<Response, DecodeError> {
        if b.len() < 8 {
            return Err(DecodeError::Truncated {
                what: "IPMI response message",
                need: 8,
                got: b.len(),
            });
        }
        if checksum(&b[0..2]) != b[2] {
            return Err(DecodeError::Checksum {
                what: "IPMI message header",
            });
        }
        let last = b.len() - 1;
        if checksum(&b[3..last]) != b[last] {
            return Err(DecodeError::Checksum {
                what: "IPMI message body",
            });
        }
        Ok(Response {
            netfn: b[1] >> 2,
            rq_seq: b[4] >> 2,
            cmd: b[5],
            completion_code: b[6],
            data: b[7..last].to_vec(),
        })
    }

    /// Encodes a response (used by tests and the fuzz target's round trip).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![CONSOLE_SWID, self.netfn << 2];
        out.push(checksum(&out));
        out.extend_from_slice(&[BMC_ADDR, (self.rq_seq & 0x3f) << 2, self.cmd]);
        out.push(self.completion_code);
        out.extend_from_slice(&self.data);
        out.push(checksum(&out[3..]));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_channel_auth_caps_request_matches_capture() {
        let r = Request::new(0x06, 0x38, vec![0x8e, 0x04]);
        assert_eq!(
            r.encode(0),
            [0x20, 0x18, 0xc8, 0x81, 0x00, 0x38, 0x8e, 0x04, 0xb5]
        );
    }

    #[test]
    fn response_round_trip_and_bad_checksums() {
        let r = Response {
            netfn: 0x01,
            rq_seq: 5,
            cmd: 0x01,
            completion_code: 0,
            data: vec![0x41, 0x00, 0x40, 0x70],
        };
        let b = r.encode();
        assert_eq!(Response::decode(&b).unwrap(), r);
        let mut bad = b.clone();
        bad[2] ^= 1;
        assert!(matches!(
            Response::decode(&bad),
            Err(DecodeError::Checksum { .. })
        ));
        let mut bad = b.clone();
        bad[7] ^= 1;
        assert!(matches!(
            Response::decode(&bad),
            Err(DecodeError::Checksum { .. })
        ));
        assert!(Response::decode(&b[..5]).is_err());
    }
}
