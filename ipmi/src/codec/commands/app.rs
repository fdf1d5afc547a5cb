//! App commands (netFn 0x06): device ID, channel authentication capabilities, cipher
//! suites, session privilege and close.

use super::{need, NETFN_APP};
use crate::codec::message::Request;
use crate::codec::{DecodeError, Privilege};

pub fn get_device_id() -> Request {
    Request::new(NETFN_APP, 0x01, vec![])
}

/// Get Device ID response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId {
    pub device_id: u8,
    pub device_revision: u8,
    pub firmware_major: u8,
    pub firmware_minor: u8,
    /// BCD, e.g. 0x51 for 1.5, 0x02 for 2.0 (as ipmi_sim reports "2.0").
    pub ipmi_version: u8,
    pub manufacturer_id: u32,
    pub product_id: u16,
}

impl DeviceId {
    pub fn decode(d: &[u8]) -> Result<DeviceId, DecodeError> {
        need(d, 11, "Get Device ID response")?;
        Ok(DeviceId {
            device_id: d[0],
            device_revision: d[1] & 0x0f,
            firmware_major: d[2] & 0x7f,
            firmware_minor: d[3],
            ipmi_version: d[4],
            manufacturer_id: u32::from_le_bytes([d[6], d[7], d[8], 0]),
            product_id: u16::from_le_bytes([d[9], d[10]]),
        })
    }

    /// "2.0" style text of the IPMI version.
    pub fn ipmi_version_text(&self) -> String {
        format!("{}.{}", self.ipmi_version & 0x0f, self.ipmi_version >> 4)
    }
}

pub fn get_channel_auth_capabilities(channel: u8, privilege: Privilege) -> Request {
    // Bit 7 asks for the IPMI 2.0 extended data.
    Request::new(
        NETFN_APP,
        0x38,
        vec![0x80 | (channel & 0x0f), privilege as u8],
    )
}

/// Get Channel Authentication Capabilities response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCapabilities {
    pub channel: u8,
    /// Bit mask of IPMI 1.5 auth types (none, MD2, MD5, straight password, OEM).
    pub auth_types: u8,
    pub ipmi_v20: bool,
    pub ipmi_v15: bool,
    pub per_message_auth_disabled: bool,
    pub anonymous_login: bool,
    pub kg_set: bool,
}

impl AuthCapabilities {
    pub fn decode(d: &[u8]) -> Result<AuthCapabilities, DecodeError> {
        need(d, 4, "Get Channel Authentication Capabilities response")?;
        let extended = d[1] & 0x80 != 0;
        Ok(AuthCapabilities {
            channel: d[0],
            auth_types: d[1] & 0x3f,
            ipmi_v20: extended && d[3] & 0x02 != 0,
            ipmi_v15: !extended || d[3] & 0x01 != 0,
            per_message_auth_disabled: d[2] & 0x10 != 0,
            anonymous_login: d[2] & 0x01 != 0,
            kg_set: d[2] & 0x20 != 0,
        })
    }
}

pub fn get_channel_cipher_suites(channel: u8, list_index: u8) -> Request {
    // Payload type 0 (IPMI); bit 7 of the index: list algorithms by cipher suite.
    Request::new(
        NETFN_APP,
        0x54,
        vec![channel & 0x0f, 0x00, 0x80 | (list_index & 0x3f)],
    )
}

/// One record of the Get Channel Cipher Suites list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherSuiteRecord {
    pub id: u8,
    pub auth_alg: u8,
    pub integrity_alg: u8,
    pub confidentiality_alg: u8,
}

/// Parses the concatenated record bytes of all Get Channel Cipher Suites responses (each
/// response's data minus its channel byte).
pub fn parse_cipher_suite_records(mut b: &[u8]) -> Vec<CipherSuiteRecord> {
    let mut out = Vec::new();
    while let Some(&start) = b.first() {
        let skip = match start {
            0xc0 => 2,
            0xc1 => 5,
            _ => {
                b = &b[1..];
                continue;
            }
        };
        if b.len() < skip {
            break;
        }
        let mut rec = CipherSuiteRecord {
            id: b[1],
            auth_alg: 0,
            integrity_alg: 0,
            confidentiality_alg: 0,
        };
        b = &b[skip..];
        while let Some(&alg) = b.first() {
            if alg & 0xc0 == 0xc0 {
                break;
            }
            match alg & 0xc0 {
                0x00 => rec.auth_alg = alg & 0x3f,
                0x40 => rec.integrity_alg = alg & 0x3f,
                _ => rec.confidentiality_alg = alg & 0x3f,
            }
            b = &b[1..];
        }
        out.push(rec);
    }
    out
}

pub fn set_session_privilege(privilege: Privilege) -> Request {
    Request::new(NETFN_APP, 0x3b, vec![privilege as u8])
}

pub fn close_session(bmc_session_id: u32) -> Request {
    Request::new(NETFN_APP, 0x3c, bmc_session_id.to_le_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::commands::CURRENT_CHANNEL;
    #[test]
    fn device_id_from_ipmi_sim() {
        // ipmi_sim's answer for `mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02`.
        let d = [
            0x00, 0x03, 0x09, 0x08, 0x02, 0x9f, 0x91, 0x12, 0x00, 0x02, 0x0f,
        ];
        let id = DeviceId::decode(&d).unwrap();
        assert_eq!(id.manufacturer_id, 4753);
        assert_eq!(id.product_id, 0x0f02);
        assert_eq!((id.firmware_major, id.firmware_minor), (9, 8));
        assert_eq!(id.ipmi_version_text(), "2.0");
        assert!(DeviceId::decode(&d[..10]).is_err());
    }

    #[test]
    fn auth_caps() {
        let r = get_channel_auth_capabilities(CURRENT_CHANNEL, Privilege::Administrator);
        assert_eq!(r.data, [0x8e, 0x04]);
        let c = AuthCapabilities::decode(&[0x01, 0x97, 0x04, 0x03, 0, 0, 0, 0]).unwrap();
        assert!(c.ipmi_v20 && c.ipmi_v15);
        assert_eq!(c.auth_types, 0x17);
        assert!(AuthCapabilities::decode(&[1, 2]).is_err());
    }

    #[test]
    fn cipher_suite_records() {
        // Suite 3 (SHA1/SHA1-96/AES) and 17 (SHA256/SHA256-128/AES), then an OEM one.
        let b = [
            0xc0, 0x03, 0x01, 0x41, 0x81, 0xc0, 0x11, 0x03, 0x44, 0x81, 0xc1, 0x80, 0, 0, 0, 0x01,
        ];
        let r = parse_cipher_suite_records(&b);
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            CipherSuiteRecord {
                id: 3,
                auth_alg: 1,
                integrity_alg: 1,
                confidentiality_alg: 1
            }
        );
        assert_eq!((r[1].id, r[1].auth_alg, r[1].integrity_alg), (17, 3, 4));
        assert_eq!(r[2].id, 0x80);
        assert!(parse_cipher_suite_records(&[0xc0]).is_empty());
    }
}
