//! Network interfaces: the physical ones (a `device` link in `/sys/class/net/<name>`), with
//! MAC, first IPv4/IPv6 address, carrier, speed, driver, and the bus name and IDs of the
//! device behind them as IPA reads them. A Mellanox InfiniBand port gets IPA's MAC and DHCP
//! `client_id` (what Ironic's ports hook stores as the port's `client-id`).
//!
//! Addresses are not in sysfs. On the live machine they come from getifaddrs(3); a fixture
//! root holds them in `ferrite-fixture/addresses.json` (`{"eth0": ["192.0.2.2", "fd00::2"]}`,
//! in the order the kernel lists them), written by the capture scripts.

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ferrite_proto::inventory::Interface;

use super::{link_name, read_trimmed, Root, FIXTURE_DIR};

pub(crate) fn collect(root: &Root) -> Vec<Interface> {
    let addresses = addresses(root);
    let mut out = Vec::new();
    for name in root.list("/sys/class/net") {
        let dir = root.path(&format!("/sys/class/net/{name}"));
        if fs::symlink_metadata(dir.join("device")).is_err() {
            continue; // loopback, bridges, bonds, tunnels and other virtual devices
        }
        let (ipv4, ipv6) = addresses
            .get(&name)
            .map(|a| pick_addresses(a))
            .unwrap_or_default();
        let read = |rel: &str| read_trimmed(&dir.join(rel));
        let mac = read("bonding_slave/perm_hwaddr")
            .or_else(|| read("address"))
            .filter(|m| m.bytes().any(|b| b != b'0' && b != b':'));
        // As IPA: the IDs and bus name of the device the `device` link points at, which
        // for a virtio NIC is the virtio device (`virtio2`, vendor 0x1af4, device 0x0001),
        // not the PCI function behind it (that one is in `pci_devices`).
        let vendor = read("device/vendor");
        let (mac, client_id) = match mac {
            Some(address) if vendor.as_deref() == Some(MELLANOX_VENDOR) => {
                match infiniband_ids(&address) {
                    Some((mac, client_id)) => (Some(mac), Some(client_id)),
                    None => (Some(address), None),
                }
            }
            other => (other, None),
        };
        out.push(Interface {
            name,
            mac_address: mac,
            ipv4_address: ipv4.map(|a| a.to_string()),
            ipv6_address: ipv6.map(|a| a.to_string()),
            has_carrier: read("carrier").as_deref() == Some("1"),
            lldp: None,
            vendor,
            product: read("device/device"),
            client_id,
            biosdevname: None,
            speed_mbps: read("speed")
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|&s| s > 0)
                .map(|s| s as u64),
            pci_address: device_name(&dir.join("device")),
            driver: link_name(&dir.join("device/driver")),
        });
    }
    out
}

/// The name of the device a `device` link resolves to (`0000:3b:00.0`, `virtio2`); `None`
/// when the link dangles.
fn device_name(link: &Path) -> Option<String> {
    let target = fs::canonicalize(link).ok()?;
    target.file_name()?.to_str().map(str::to_string)
}

/// PCI vendor ID of Mellanox (NVIDIA networking), as sysfs prints it.
const MELLANOX_VENDOR: &str = "0x15b3";

/// DHCP client-identifier prefix IPA's Mellanox hardware manager puts before the port GUID.
const INFINIBAND_CLIENT_ID_PREFIX: &str = "ff:00:00:00:00:00:02:00:00:02:c9:00:";

/// For a Mellanox InfiniBand port's 20-byte hardware address (`a0:00:…:7c:fe:90:03:00:29:26:52`,
/// 59 characters), the MAC and DHCP client identifier IPA's `MellanoxDeviceHardwareManager`
/// reports: the GUID's first and last three bytes, and the GUID behind a fixed prefix
/// (RFC 4390). `None` for any other address.
pub fn infiniband_ids(address: &str) -> Option<(String, String)> {
    if address.len() != 59 || !address.is_ascii() {
        return None;
    }
    let guid = &address[36..];
    let mac = format!("{}{}", &address[36..45], &address[51..]);
    Some((mac, format!("{INFINIBAND_CLIENT_ID_PREFIX}{guid}")))
}

/// The interface's IPv4 address (first listed) and IPv6 address (first non-link-local one
/// listed, else the first).
pub fn pick_addresses(addrs: &[IpAddr]) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let v4 = addrs.iter().find_map(|a| match a {
        IpAddr::V4(a) => Some(*a),
        IpAddr::V6(_) => None,
    });
    let v6s: Vec<Ipv6Addr> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(a) => Some(*a),
            IpAddr::V4(_) => None,
        })
        .collect();
    let v6 = v6s
        .iter()
        .find(|a| !a.is_unicast_link_local())
        .or(v6s.first())
        .copied();
    (v4, v6)
}

/// Addresses per interface name, in kernel order.
fn addresses(root: &Root) -> BTreeMap<String, Vec<IpAddr>> {
    if root.is_live() {
        return live_addresses();
    }
    let path = root.path(&format!("/{FIXTURE_DIR}/addresses.json"));
    fs::read(&path)
        .ok()
        .and_then(|bytes| parse_addresses_json(&bytes))
        .unwrap_or_default()
}

/// `{"eth0": ["192.0.2.2", …]}`; entries that are not IP addresses are skipped.
pub fn parse_addresses_json(bytes: &[u8]) -> Option<BTreeMap<String, Vec<IpAddr>>> {
    let raw: BTreeMap<String, Vec<String>> = serde_json::from_slice(bytes).ok()?;
    Some(
        raw.into_iter()
            .map(|(name, addrs)| {
                let parsed = addrs
                    .iter()
                    .filter_map(|a| a.split('/').next()?.parse().ok())
                    .collect();
                (name, parsed)
            })
            .collect(),
    )
}

fn live_addresses() -> BTreeMap<String, Vec<IpAddr>> {
    let mut map: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    let Ok(ifaddrs) = nix::ifaddrs::getifaddrs() else {
        return map;
    };
    for ifa in ifaddrs {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(sin) = addr.as_sockaddr_in() {
            IpAddr::V4(sin.ip())
        } else if let Some(sin6) = addr.as_sockaddr_in6() {
            IpAddr::V6(sin6.ip())
        } else {
            continue;
        };
        map.entry(ifa.interface_name).or_default().push(ip);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn picks_first_v4_and_global_v6() {
        let (v4, v6) = pick_addresses(&ips(&["fe80::1", "10.0.0.5", "fd00::2", "10.0.0.6"]));
        assert_eq!(v4, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(v6, Some("fd00::2".parse().unwrap()));
        let (v4, v6) = pick_addresses(&ips(&["fe80::1"]));
        assert_eq!(v4, None);
        assert_eq!(v6, Some("fe80::1".parse().unwrap()));
        assert_eq!(pick_addresses(&[]), (None, None));
    }

    #[test]
    fn addresses_json() {
        let map =
            parse_addresses_json(br#"{"eth0": ["192.0.2.2/24", "bogus", "fd00::2"]}"#).unwrap();
        assert_eq!(map["eth0"], ips(&["192.0.2.2", "fd00::2"]));
        assert!(parse_addresses_json(b"[1,2]").is_none());
        assert!(parse_addresses_json(b"not json").is_none());
    }

    #[test]
    fn infiniband_mac_and_client_id_as_ipa() {
        // The example of IPA's mlnx hardware manager.
        let address = "a0:00:00:27:fe:80:00:00:00:00:00:00:7c:fe:90:03:00:29:26:52";
        let (mac, client_id) = infiniband_ids(address).unwrap();
        assert_eq!(mac, "7c:fe:90:29:26:52");
        assert_eq!(
            client_id,
            "ff:00:00:00:00:00:02:00:00:02:c9:00:7c:fe:90:03:00:29:26:52"
        );
        assert_eq!(infiniband_ids("52:54:00:12:34:56"), None);
    }
}
