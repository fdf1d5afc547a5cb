//! Transport commands (netFn 0x0c): Get LAN Configuration Parameters (IPMI 2.0 §23.2) and
//! the parameters Ferrite reads from it. Every decoder takes the response data after the
//! completion code (parameter revision first), whether it came over LAN or `/dev/ipmi0`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{need, NETFN_TRANSPORT};
use crate::codec::message::Request;
use crate::codec::DecodeError;

/// Get LAN Configuration Parameters.
pub const CMD_GET_LAN_CONFIG: u8 = 0x02;

/// LAN configuration parameters we read (IPMI 2.0 table 23-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanParam {
    IpAddress = 3,
    IpSource = 4,
    MacAddress = 5,
    SubnetMask = 6,
    DefaultGateway = 12,
    IpFamilyEnables = 51,
    Ipv6Status = 55,
    Ipv6StaticAddress = 56,
    Ipv6DynamicAddress = 59,
}

/// Get LAN Configuration Parameters for set selector 0.
pub fn get_lan_config(channel: u8, param: LanParam) -> Request {
    get_lan_config_set(channel, param, 0)
}

/// Get LAN Configuration Parameters for one set selector (IPv6 address slots).
pub fn get_lan_config_set(channel: u8, param: LanParam, set: u8) -> Request {
    Request::new(
        NETFN_TRANSPORT,
        CMD_GET_LAN_CONFIG,
        vec![channel & 0x0f, param as u8, set, 0],
    )
}

/// Strips the parameter revision byte of a Get LAN Configuration Parameters response.
pub fn lan_config_data(d: &[u8]) -> Result<&[u8], DecodeError> {
    need(d, 1, "Get LAN Configuration Parameters response")?;
    Ok(&d[1..])
}

/// Parameter 3: the IPv4 address (0.0.0.0 when not configured).
pub fn decode_ipv4(d: &[u8]) -> Result<Ipv4Addr, DecodeError> {
    let d = lan_config_data(d)?;
    need(d, 4, "IPv4 address parameter")?;
    Ok(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
}

/// Parameter 5: the MAC address (all zero when not configured).
pub fn decode_mac(d: &[u8]) -> Result<[u8; 6], DecodeError> {
    let d = lan_config_data(d)?;
    need(d, 6, "MAC address parameter")?;
    Ok(d[..6].try_into().expect("6 bytes"))
}

/// Parameter 51: whether IPv6 addressing is enabled (1 = IPv6 only, 2 = both).
pub fn decode_ipv6_enabled(d: &[u8]) -> Result<bool, DecodeError> {
    let d = lan_config_data(d)?;
    need(d, 1, "IP addressing enables parameter")?;
    Ok(matches!(d[0], 1 | 2))
}

/// Parameter 55: how many (static, dynamic) IPv6 address slots the BMC has.
pub fn decode_ipv6_slots(d: &[u8]) -> Result<(u8, u8), DecodeError> {
    let d = lan_config_data(d)?;
    need(d, 2, "IPv6 status parameter")?;
    Ok((d[0], d[1]))
}

/// Parameters 56 (static) and 59 (dynamic): one address slot — set selector, source/type,
/// 16 address bytes, prefix length, status. Returns the address when it is in use: status
/// active, and for static slots the enable bit, for dynamic ones SLAAC or DHCPv6 as source.
pub fn decode_ipv6_address(d: &[u8], dynamic: bool) -> Result<Option<Ipv6Addr>, DecodeError> {
    let d = lan_config_data(d)?;
    need(d, 20, "IPv6 address parameter")?;
    let source = d[1];
    let octets: [u8; 16] = d[2..18].try_into().expect("16 bytes");
    let addr = Ipv6Addr::from(octets);
    let status = d[19];
    let in_use = if dynamic {
        matches!(source & 0x0F, 1 | 2)
    } else {
        source & 0x80 != 0
    };
    Ok((in_use && status == 0 && !addr.is_unspecified()).then_some(addr))
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

    fn v6_slot(set: u8, source: u8, addr: &str, status: u8) -> Vec<u8> {
        let mut d = vec![0x11, set, source];
        d.extend_from_slice(&addr.parse::<Ipv6Addr>().unwrap().octets());
        d.extend_from_slice(&[64, status]);
        d
    }

    #[test]
    fn lan_config() {
        let r = get_lan_config(1, LanParam::MacAddress);
        assert_eq!(
            (r.netfn, r.cmd, r.data.clone()),
            (0x0c, 0x02, vec![1, 5, 0, 0])
        );
        let r = get_lan_config_set(0x13, LanParam::Ipv6StaticAddress, 2);
        assert_eq!(r.data, vec![3, 56, 2, 0]);
        assert_eq!(
            decode_ipv4(&[0x11, 10, 0, 0, 7]).unwrap(),
            Ipv4Addr::new(10, 0, 0, 7)
        );
        let mac = decode_mac(&[0x11, 0x52, 0x54, 0, 0x12, 0x34, 0x56]).unwrap();
        assert_eq!(mac_text(&mac), "52:54:00:12:34:56");
        assert!(decode_mac(&[0x11, 1, 2]).is_err());
        assert!(lan_config_data(&[]).is_err());
    }

    #[test]
    fn decodes_ipv6_slots() {
        let dyn_slaac = v6_slot(0, 0x01, "2001:db8::10", 0);
        assert_eq!(
            decode_ipv6_address(&dyn_slaac, true).unwrap(),
            Some("2001:db8::10".parse().unwrap())
        );
        // Static slot without the enable bit, or not active, or ::.
        for slot in [
            v6_slot(0, 0x00, "2001:db8::1", 0),
            v6_slot(0, 0x80, "2001:db8::1", 1),
            v6_slot(0, 0x80, "::", 0),
        ] {
            assert_eq!(decode_ipv6_address(&slot, false).unwrap(), None);
        }
        assert_eq!(
            decode_ipv6_address(&v6_slot(0, 0x80, "2001:db8::1", 0), false).unwrap(),
            Some("2001:db8::1".parse().unwrap())
        );
        assert!(decode_ipv6_address(&[0x11, 0, 0, 0, 0], true).is_err());
        assert!(decode_ipv6_enabled(&[0x11, 2]).unwrap());
        assert!(!decode_ipv6_enabled(&[0x11, 0]).unwrap());
        assert!(decode_ipv6_enabled(&[0x11]).is_err());
        assert_eq!(decode_ipv6_slots(&[0x11, 4, 2, 3]).unwrap(), (4, 2));
    }
}
