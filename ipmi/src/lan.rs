//! The BMC's own addresses (IPv4, IPv6, MAC of its LAN channel), found by walking the LAN
//! channels with Get LAN Configuration Parameters over any [`LanConfigSource`]: the local
//! `/dev/ipmi0` in the ramdisk ([`crate::dev`]) or a fake in tests.

use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::codec::commands::{self, LanParam};
use crate::codec::DecodeError;

/// Channels 1–11 are the ones that can be LAN channels (IPA scans the same range).
const LAN_CHANNELS: std::ops::RangeInclusive<u8> = 1..=11;
/// Upper bound on IPv6 address slots read per channel, whatever the BMC claims.
const MAX_V6_SLOTS: u8 = 16;

#[derive(Debug, Error)]
pub enum LanError {
    #[error("BMC answered with completion code {0:#04x}")]
    Completion(u8),
    #[error("BMC sent an empty response")]
    Empty,
    #[error("malformed LAN configuration parameter")]
    Decode(#[from] DecodeError),
    #[error("{what}")]
    Device {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no answer from the BMC within {0:?}")]
    Timeout(std::time::Duration),
}

/// Something that answers Get LAN Configuration Parameters with the response data after
/// the completion code (which it has checked).
pub trait LanConfigSource {
    fn get_lan_config(
        &mut self,
        channel: u8,
        param: LanParam,
        set: u8,
    ) -> Result<Vec<u8>, LanError>;
}

/// Splits a response as a BMC sends it (completion code first) into its data.
pub fn completed(resp: &[u8]) -> Result<&[u8], LanError> {
    match resp.split_first() {
        None => Err(LanError::Empty),
        Some((0, data)) => Ok(data),
        Some((&cc, _)) => Err(LanError::Completion(cc)),
    }
}

/// The BMC's addresses; `None` when unknown or unconfigured.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LanAddresses {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub mac: Option<[u8; 6]>,
}

/// Walks LAN channels 1–11: the first configured IPv4 address, the first active IPv6 address
/// (dynamic before static, as IPA does), and the MAC of the first channel with either.
pub fn query(src: &mut dyn LanConfigSource) -> LanAddresses {
    let mut out = LanAddresses::default();
    for channel in LAN_CHANNELS {
        // A channel that does not answer parameter 3 is not a LAN channel.
        let Ok(ip4) = src
            .get_lan_config(channel, LanParam::IpAddress, 0)
            .and_then(|r| Ok(commands::decode_ipv4(&r)?))
        else {
            continue;
        };
        let ip4 = (!ip4.is_unspecified()).then_some(ip4);
        let ip6 = if out.ipv6.is_none() {
            channel_ip6(src, channel)
        } else {
            None
        };
        if ip4.is_none() && ip6.is_none() {
            continue;
        }
        if out.mac.is_none() {
            out.mac = src
                .get_lan_config(channel, LanParam::MacAddress, 0)
                .and_then(|r| Ok(commands::decode_mac(&r)?))
                .ok()
                .filter(|m| m.iter().any(|&b| b != 0));
        }
        out.ipv4 = out.ipv4.or(ip4);
        out.ipv6 = out.ipv6.or(ip6);
        if out.ipv4.is_some() && out.ipv6.is_some() && out.mac.is_some() {
            break;
        }
    }
    out
}

fn channel_ip6(src: &mut dyn LanConfigSource, channel: u8) -> Option<Ipv6Addr> {
    let enabled = src
        .get_lan_config(channel, LanParam::IpFamilyEnables, 0)
        .and_then(|r| Ok(commands::decode_ipv6_enabled(&r)?))
        .unwrap_or(false);
    if !enabled {
        return None;
    }
    let (statics, dynamics) = src
        .get_lan_config(channel, LanParam::Ipv6Status, 0)
        .and_then(|r| Ok(commands::decode_ipv6_slots(&r)?))
        .ok()?;
    for (param, slots, dynamic) in [
        (LanParam::Ipv6DynamicAddress, dynamics, true),
        (LanParam::Ipv6StaticAddress, statics, false),
    ] {
        for set in 0..slots.min(MAX_V6_SLOTS) {
            let found = src
                .get_lan_config(channel, param, set)
                .and_then(|r| Ok(commands::decode_ipv6_address(&r, dynamic)?));
            if let Ok(Some(addr)) = found {
                return Some(addr);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// Response data after the completion code: revision byte, then the parameter.
    fn ok(data: &[u8]) -> Vec<u8> {
        let mut r = vec![0x11];
        r.extend_from_slice(data);
        r
    }

    fn v6_slot(set: u8, source: u8, addr: &str, status: u8) -> Vec<u8> {
        let mut d = vec![set, source];
        d.extend_from_slice(&addr.parse::<Ipv6Addr>().unwrap().octets());
        d.extend_from_slice(&[64, status]);
        ok(&d)
    }

    /// A fake BMC: answers from a table, 0xCC (invalid data field) for anything else.
    struct FakeBmc(HashMap<(u8, u8, u8), Vec<u8>>, usize);

    impl LanConfigSource for FakeBmc {
        fn get_lan_config(
            &mut self,
            ch: u8,
            param: LanParam,
            set: u8,
        ) -> Result<Vec<u8>, LanError> {
            self.1 += 1;
            self.0
                .get(&(ch, param as u8, set))
                .cloned()
                .ok_or(LanError::Completion(0xCC))
        }
    }

    #[test]
    fn completion_codes_are_checked() {
        assert_eq!(completed(&[0, 0x11, 1]).unwrap(), &[0x11, 1]);
        assert!(matches!(
            completed(&[0xCC]),
            Err(LanError::Completion(0xCC))
        ));
        assert!(matches!(completed(&[]), Err(LanError::Empty)));
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
        assert_eq!(got.ipv4, Some(Ipv4Addr::new(192, 168, 1, 20)));
        assert_eq!(got.ipv6, Some("2001:db8::20".parse().unwrap()));
        assert_eq!(got.mac, Some([0x0c, 0xc4, 0x7a, 1, 2, 3]));
        // Stops at channel 3 once everything is known.
        assert!(bmc.1 < 20, "{} requests", bmc.1);
    }

    #[test]
    fn query_without_any_lan_channel_is_all_none() {
        let mut bmc = FakeBmc(HashMap::new(), 0);
        assert_eq!(query(&mut bmc), LanAddresses::default());
        assert_eq!(bmc.1, 11);
    }

    #[test]
    fn an_all_zero_mac_is_unknown() {
        let mut t = HashMap::new();
        t.insert((1, 3, 0), ok(&[10, 0, 0, 5]));
        t.insert((1, 5, 0), ok(&[0; 6]));
        let got = query(&mut FakeBmc(t, 0));
        assert_eq!(got.ipv4, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(got.mac, None);
    }
}
