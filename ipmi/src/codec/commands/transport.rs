//! Transport commands (netFn 0x0c): LAN configuration parameters.

use std::net::Ipv4Addr;

use super::{need, NETFN_TRANSPORT};
use crate::codec::message::Request;
use crate::codec::DecodeError;

/// LAN configuration parameters we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanParam {
    IpAddress = 3,
    IpSource = 4,
    MacAddress = 5,
    SubnetMask = 6,
    DefaultGateway = 12,
}

pub fn get_lan_config(channel: u8, param: LanParam) -> Request {
    Request::new(
        NETFN_TRANSPORT,
        0x02,
        vec![channel & 0x0f, param as u8, 0, 0],
    )
}

/// Strips the parameter revision byte of a Get LAN Configuration Parameters response.
pub fn lan_config_data(d: &[u8]) -> Result<&[u8], DecodeError> {
    need(d, 1, "Get LAN Configuration Parameters response")?;
    Ok(&d[1..])
}

pub fn decode_ipv4(d: &[u8]) -> Result<Ipv4Addr, DecodeError> {
    let d = lan_config_data(d)?;
    need(d, 4, "IPv4 address parameter")?;
    Ok(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
}

pub fn decode_mac(d: &[u8]) -> Result<[u8; 6], DecodeError> {
    let d = lan_config_data(d)?;
    need(d, 6, "MAC address parameter")?;
    Ok(d[..6].try_into().expect("6 bytes"))
}

/// Formats a MAC as aa:bb:cc:dd:ee:ff.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn lan_config() {
        let r = get_lan_config(1, LanParam::MacAddress);
        assert_eq!(
            (r.netfn, r.cmd, r.data.clone()),
            (0x0c, 0x02, vec![1, 5, 0, 0])
        );
        assert_eq!(
            decode_ipv4(&[0x11, 10, 0, 0, 7]).unwrap(),
            Ipv4Addr::new(10, 0, 0, 7)
        );
        let mac = decode_mac(&[0x11, 0x52, 0x54, 0, 0x12, 0x34, 0x56]).unwrap();
        assert_eq!(mac_text(&mac), "52:54:00:12:34:56");
        assert!(decode_mac(&[0x11, 1, 2]).is_err());
        assert!(lan_config_data(&[]).is_err());
    }
}
