//! BMC addresses: IPv4, IPv6 and MAC of the BMC's LAN channel, read with "Get LAN
//! Configuration Parameters" (IPMI 2.0 §23.2) through the local system interface.
//!
//! The decoding of each parameter is pure ([`decode_ip4`], [`decode_mac`],
//! [`decode_ip6_address`]); [`query`] walks channels over any [`LanConfigSource`]; the real
//! source is `/dev/ipmi0` ([`super::ipmi_dev`]) and is used only on the live root. A fixture
//! root may hold `ferrite-fixture/bmc.json` with the three values instead.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{ipmi_dev, Root, FIXTURE_DIR};

/// Transport network function and its Get LAN Configuration Parameters command.
pub const NETFN_TRANSPORT: u8 = 0x0C;
pub const CMD_GET_LAN_CONFIG: u8 = 0x02;

/// LAN configuration parameter numbers (IPMI 2.0 table 23-4).
pub const PARAM_IP_ADDRESS: u8 = 3;
pub const PARAM_MAC_ADDRESS: u8 = 5;
pub const PARAM_IP_FAMILY_ENABLES: u8 = 51;
pub const PARAM_IPV6_STATUS: u8 = 55;
pub const PARAM_IPV6_STATIC_ADDRESS: u8 = 56;
pub const PARAM_IPV6_DYNAMIC_ADDRESS: u8 = 59;

/// Channels 1–11 are the ones that can be LAN channels (IPA scans the same range).
const LAN_CHANNELS: std::ops::RangeInclusive<u8> = 1..=11;
/// Upper bound on IPv6 address slots read per channel, whatever the BMC claims.
const MAX_V6_SLOTS: u8 = 16;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BmcError {
    #[error("BMC answered with completion code {0:#04x}")]
    Completion(u8),
    #[error("BMC response to parameter {param} is {len} bytes, too short")]
    Short { param: u8, len: usize },
    #[error("IPMI device: {0}")]
    Device(String),
}

/// The BMC's addresses as the inventory reports them; `None` when unknown or unconfigured.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcAddresses {
    #[serde(rename = "bmc_address")]
    pub address: Option<String>,
    #[serde(rename = "bmc_v6address")]
    pub v6address: Option<String>,
    #[serde(rename = "bmc_mac")]
    pub mac: Option<String>,
}

/// Something that answers Get LAN Configuration Parameters: the response bytes, completion
/// code first.
pub trait LanConfigSource {
    fn get_lan_config(&mut self, channel: u8, param: u8, set: u8) -> Result<Vec<u8>, BmcError>;
}

/// Request data of Get LAN Configuration Parameters for one parameter and set selector.
pub fn lan_config_request(channel: u8, param: u8, set: u8) -> [u8; 4] {
    [channel & 0x0F, param, set, 0]
}

/// The parameter data of a response: completion code checked, revision byte skipped.
fn param_data(param: u8, resp: &[u8], min: usize) -> Result<&[u8], BmcError> {
    match resp.first() {
        None => return Err(BmcError::Short { param, len: 0 }),
        Some(&0) => {}
        Some(&cc) => return Err(BmcError::Completion(cc)),
    }
    if resp.len() < 2 + min {
        return Err(BmcError::Short {
            param,
            len: resp.len(),
        });
    }
    Ok(&resp[2..])
}

/// Parameter 3: the IPv4 address; `None` for 0.0.0.0 (not configured).
pub fn decode_ip4(resp: &[u8]) -> Result<Option<Ipv4Addr>, BmcError> {
    let d = param_data(PARAM_IP_ADDRESS, resp, 4)?;
    let ip = Ipv4Addr::new(d[0], d[1], d[2], d[3]);
    Ok((!ip.is_unspecified()).then_some(ip))
}

/// Parameter 5: the MAC address as `aa:bb:cc:dd:ee:ff`; `None` when all zero.
pub fn decode_mac(resp: &[u8]) -> Result<Option<String>, BmcError> {
    let d = &param_data(PARAM_MAC_ADDRESS, resp, 6)?[..6];
    if d.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let hex: Vec<String> = d.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some(hex.join(":")))
}

/// Parameter 51: whether IPv6 addressing is enabled (1 = IPv6 only, 2 = both).
pub fn decode_ipv6_enabled(resp: &[u8]) -> Result<bool, BmcError> {
    let d = param_data(PARAM_IP_FAMILY_ENABLES, resp, 1)?;
    Ok(matches!(d[0], 1 | 2))
}

/// Parameter 55: how many static and dynamic IPv6 address slots the BMC has.
pub fn decode_ipv6_slots(resp: &[u8]) -> Result<(u8, u8), BmcError> {
    let d = param_data(PARAM_IPV6_STATUS, resp, 2)?;
    Ok((d[0], d[1]))
}

/// Parameters 56 (static) and 59 (dynamic): one address slot — set selector, source/type,
/// 16 address bytes, prefix length, status. Returns the address when it is in use: status
/// active, and for static slots the enable bit, for dynamic ones SLAAC or DHCPv6 as source.
pub fn decode_ip6_address(resp: &[u8], dynamic: bool) -> Result<Option<Ipv6Addr>, BmcError> {
    let param = if dynamic {
        PARAM_IPV6_DYNAMIC_ADDRESS
    } else {
        PARAM_IPV6_STATIC_ADDRESS
    };
    let d = param_data(param, resp, 20)?;
    let source = d[1];
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&d[2..18]);
    let addr = Ipv6Addr::from(octets);
    let status = d[19];
    let in_use = if dynamic {
        matches!(source & 0x0F, 1 | 2)
    } else {
        source & 0x80 != 0
    };
    Ok((in_use && status == 0 && !addr.is_unspecified()).then_some(addr))
}

/// Walks LAN channels 1–11: the first configured IPv4 address, the first active IPv6 address
/// (dynamic before static, as IPA does), and the MAC of the first channel with either.
pub fn query(src: &mut dyn LanConfigSource) -> BmcAddresses {
    let mut out = BmcAddresses::default();
    for channel in LAN_CHANNELS {
        // A channel that does not answer parameter 3 is not a LAN channel.
        let Ok(ip4) = src
            .get_lan_config(channel, PARAM_IP_ADDRESS, 0)
            .and_then(|r| decode_ip4(&r))
        else {
            continue;
        };
        let ip6 = if out.v6address.is_none() {
            channel_ip6(src, channel)
        } else {
            None
        };
        if ip4.is_none() && ip6.is_none() {
            continue;
        }
        if out.mac.is_none() {
            out.mac = src
                .get_lan_config(channel, PARAM_MAC_ADDRESS, 0)
                .and_then(|r| decode_mac(&r))
                .ok()
                .flatten();
        }
        if out.address.is_none() {
            out.address = ip4.map(|a| a.to_string());
        }
        if out.v6address.is_none() {
            out.v6address = ip6.map(|a| a.to_string());
        }
        if out.address.is_some() && out.v6address.is_some() && out.mac.is_some() {
            break;
        }
    }
    out
}

fn channel_ip6(src: &mut dyn LanConfigSource, channel: u8) -> Option<Ipv6Addr> {
    let enabled = src
        .get_lan_config(channel, PARAM_IP_FAMILY_ENABLES, 0)
        .and_then(|r| decode_ipv6_enabled(&r))
        .unwrap_or(false);
    if !enabled {
        return None;
    }
    let (statics, dynamics) = src
        .get_lan_config(channel, PARAM_IPV6_STATUS, 0)
        .and_then(|r| decode_ipv6_slots(&r))
        .ok()?;
    for (param, slots, dynamic) in [
        (PARAM_IPV6_DYNAMIC_ADDRESS, dynamics, true),
        (PARAM_IPV6_STATIC_ADDRESS, statics, false),
    ] {
        for set in 0..slots.min(MAX_V6_SLOTS) {
            let found = src
                .get_lan_config(channel, param, set)
                .and_then(|r| decode_ip6_address(&r, dynamic));
            if let Ok(Some(addr)) = found {
                return Some(addr);
            }
        }
    }
    None
}

pub(crate) fn collect(root: &Root) -> BmcAddresses {
    if !root.is_live() {
        let path = root.path(&format!("/{FIXTURE_DIR}/bmc.json"));
        return std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    }
    let dev = root.path("/dev/ipmi0");
    if !dev.exists() {
        return BmcAddresses::default();
    }
    match ipmi_dev::IpmiDevice::open(&dev) {
        Ok(mut device) => query(&mut device),
        Err(e) => {
            tracing::warn!("cannot read BMC addresses from {}: {e}", dev.display());
            BmcAddresses::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn ok(data: &[u8]) -> Vec<u8> {
        let mut r = vec![0, 0x11];
        r.extend_from_slice(data);
        r
    }

    fn v6_slot(set: u8, source: u8, addr: &str, status: u8) -> Vec<u8> {
        let mut d = vec![set, source];
        d.extend_from_slice(&addr.parse::<Ipv6Addr>().unwrap().octets());
        d.extend_from_slice(&[64, status]);
        ok(&d)
    }

    #[test]
    fn decodes_ipv4_and_mac() {
        assert_eq!(
            decode_ip4(&ok(&[10, 0, 0, 7])).unwrap(),
            Some(Ipv4Addr::new(10, 0, 0, 7))
        );
        assert_eq!(decode_ip4(&ok(&[0, 0, 0, 0])).unwrap(), None);
        assert_eq!(
            decode_mac(&ok(&[0x52, 0x54, 0, 0xab, 0xcd, 0xef]))
                .unwrap()
                .as_deref(),
            Some("52:54:00:ab:cd:ef")
        );
        assert_eq!(decode_mac(&ok(&[0; 6])).unwrap(), None);
    }

    #[test]
    fn errors_are_reported_not_panics() {
        assert_eq!(decode_ip4(&[0xCC]), Err(BmcError::Completion(0xCC)));
        assert_eq!(
            decode_ip4(&ok(&[10, 0])),
            Err(BmcError::Short { param: 3, len: 4 })
        );
        assert_eq!(decode_mac(&[]), Err(BmcError::Short { param: 5, len: 0 }));
        assert!(decode_ip6_address(&ok(&[0; 5]), true).is_err());
        assert!(decode_ipv6_enabled(&[0x80]).is_err());
    }

    #[test]
    fn decodes_ipv6_slots() {
        let dyn_slaac = v6_slot(0, 0x01, "2001:db8::10", 0);
        assert_eq!(
            decode_ip6_address(&dyn_slaac, true).unwrap(),
            Some("2001:db8::10".parse().unwrap())
        );
        // Static slot without the enable bit, or not active, or ::.
        assert_eq!(
            decode_ip6_address(&v6_slot(0, 0x00, "2001:db8::1", 0), false).unwrap(),
            None
        );
        assert_eq!(
            decode_ip6_address(&v6_slot(0, 0x80, "2001:db8::1", 1), false).unwrap(),
            None
        );
        assert_eq!(
            decode_ip6_address(&v6_slot(0, 0x80, "::", 0), false).unwrap(),
            None
        );
        assert_eq!(
            decode_ip6_address(&v6_slot(0, 0x80, "2001:db8::1", 0), false).unwrap(),
            Some("2001:db8::1".parse().unwrap())
        );
        assert!(decode_ipv6_enabled(&ok(&[2])).unwrap());
        assert!(!decode_ipv6_enabled(&ok(&[0])).unwrap());
        assert_eq!(decode_ipv6_slots(&ok(&[4, 2, 3])).unwrap(), (4, 2));
    }

    /// A fake BMC: answers from a table, 0xCC (invalid data field) for anything else.
    struct FakeBmc(HashMap<(u8, u8, u8), Vec<u8>>, usize);

    impl LanConfigSource for FakeBmc {
        fn get_lan_config(&mut self, ch: u8, param: u8, set: u8) -> Result<Vec<u8>, BmcError> {
            self.1 += 1;
            Ok(self.0.get(&(ch, param, set)).cloned().unwrap_or(vec![0xCC]))
        }
    }

    #[test]
    fn query_skips_non_lan_and_unconfigured_channels() {
        let mut t = HashMap::new();
        // Channel 1: LAN but unconfigured; channel 3: configured with IPv4 and IPv6.
        t.insert((1, 3, 0), ok(&[0, 0, 0, 0]));
        t.insert((1, 51, 0), ok(&[0]));
        t.insert((3, 3, 0), ok(&[192, 168, 1, 20]));
        t.insert((3, 5, 0), ok(&[0x0c, 0xc4, 0x7a, 1, 2, 3]));
        t.insert((3, 51, 0), ok(&[2]));
        t.insert((3, 55, 0), ok(&[2, 1, 0]));
        t.insert((3, 59, 0), v6_slot(0, 0x02, "::", 0));
        t.insert((3, 56, 0), v6_slot(0, 0x80, "fe80::1", 3));
        t.insert((3, 56, 1), v6_slot(1, 0x80, "2001:db8::20", 0));
        let mut bmc = FakeBmc(t, 0);
        let got = query(&mut bmc);
        assert_eq!(got.address.as_deref(), Some("192.168.1.20"));
        assert_eq!(got.v6address.as_deref(), Some("2001:db8::20"));
        assert_eq!(got.mac.as_deref(), Some("0c:c4:7a:01:02:03"));
        // Stops at channel 3 once everything is known.
        assert!(bmc.1 < 20, "{} requests", bmc.1);
    }

    #[test]
    fn query_without_any_lan_channel_is_all_null() {
        let mut bmc = FakeBmc(HashMap::new(), 0);
        assert_eq!(query(&mut bmc), BmcAddresses::default());
        assert_eq!(bmc.1, 11);
    }

    #[test]
    fn fixture_json_rejects_unknown_fields() {
        let good: BmcAddresses = serde_json::from_str(
            r#"{"bmc_address":"10.0.0.1","bmc_v6address":null,"bmc_mac":null}"#,
        )
        .unwrap();
        assert_eq!(good.address.as_deref(), Some("10.0.0.1"));
        assert!(serde_json::from_str::<BmcAddresses>(r#"{"bmc_addr":"x"}"#).is_err());
    }
}
