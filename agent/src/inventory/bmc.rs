//! BMC addresses for the inventory: IPv4, IPv6 and MAC of the BMC's LAN channel, read
//! through the local system interface (`/dev/ipmi0`) with `ferrite_ipmi::lan::query`, which
//! owns the codec and the channel walk. Used only on the live root; a fixture root may hold
//! `ferrite-fixture/bmc.json` with the three values instead.

use ferrite_ipmi::codec::commands::mac_text;
use ferrite_ipmi::dev::IpmiDevice;
use ferrite_ipmi::lan::{self, LanAddresses};
use serde::{Deserialize, Serialize};

use super::{Root, FIXTURE_DIR};

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

impl From<LanAddresses> for BmcAddresses {
    fn from(a: LanAddresses) -> BmcAddresses {
        BmcAddresses {
            address: a.ipv4.map(|ip| ip.to_string()),
            v6address: a.ipv6.map(|ip| ip.to_string()),
            mac: a.mac.as_ref().map(mac_text),
        }
    }
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
    match IpmiDevice::open(&dev) {
        Ok(mut device) => lan::query(&mut device).into(),
        Err(e) => {
            tracing::warn!(
                "cannot read BMC addresses: {}",
                ferrite_proto::error::chain(&e)
            );
            BmcAddresses::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_addresses_are_reported_as_ipa_does() {
        let got = BmcAddresses::from(LanAddresses {
            ipv4: Some("192.168.1.20".parse().unwrap()),
            ipv6: Some("2001:db8::20".parse().unwrap()),
            mac: Some([0x0c, 0xc4, 0x7a, 1, 2, 3]),
        });
        assert_eq!(got.address.as_deref(), Some("192.168.1.20"));
        assert_eq!(got.v6address.as_deref(), Some("2001:db8::20"));
        assert_eq!(got.mac.as_deref(), Some("0c:c4:7a:01:02:03"));
        assert_eq!(
            BmcAddresses::from(LanAddresses::default()),
            BmcAddresses::default()
        );
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
