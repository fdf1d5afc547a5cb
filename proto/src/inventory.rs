//! Hardware inventory reported by the agent (CONTRACT.md §4), in ironic-python-agent's
//! JSON shape. Unknown values are `None`, except where IPA sends an empty string (CPU model
//! and frequency, every `system_vendor` field), which are `String`s here and read a `null`
//! from older agents as `""`.

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub cpu: Cpu,
    pub memory: Memory,
    pub interfaces: Vec<Interface>,
    pub disks: Vec<Disk>,
    pub system_vendor: SystemVendor,
    pub boot: Boot,
    pub bmc_address: Option<String>,
    pub bmc_v6address: Option<String>,
    pub bmc_mac: Option<String>,
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// `""` when unknown, as IPA.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub model_name: String,
    /// MHz, as a string (IPA's format); `""` when unknown, as IPA.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub frequency: String,
    /// Logical CPUs.
    pub count: u32,
    pub architecture: String,
    pub flags: Vec<String>,
    pub socket_count: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Usable bytes as the kernel sees them.
    pub total: u64,
    /// Installed DIMMs in MiB.
    pub physical_mb: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub mac_address: Option<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    pub has_carrier: bool,
    pub lldp: Option<Vec<(u8, String)>>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub client_id: Option<String>,
    pub biosdevname: Option<String>,
    pub speed_mbps: Option<u64>,
    pub pci_address: Option<String>,
    pub driver: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Device path, e.g. `/dev/sda`.
    pub name: String,
    pub model: Option<String>,
    /// Bytes.
    pub size: u64,
    pub rotational: bool,
    pub wwn: Option<String>,
    pub serial: Option<String>,
    pub vendor: Option<String>,
    pub wwn_with_extension: Option<String>,
    pub wwn_vendor_extension: Option<String>,
    pub hctl: Option<String>,
    pub by_path: Option<String>,
    pub logical_sectors: Option<u32>,
    pub physical_sectors: Option<u32>,
    pub tran: Option<String>,
}

/// DMI system and BIOS identity; every field `""` when unknown, as IPA (which reads lshw and
/// defaults each to an empty string).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemVendor {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub product_name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub serial_number: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub manufacturer: String,
    #[serde(default)]
    pub firmware: Firmware,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Firmware {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub vendor: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub version: String,
    /// As DMI gives it (`MM/DD/YYYY`).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub build_date: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Boot {
    /// `"uefi"` or `"bios"`.
    pub current_boot_mode: String,
    pub pxe_interface: Option<String>,
}

/// What IPA's optional inspection collectors `pci-devices` and `numa-topology` send beside
/// the inventory (top-level keys of the inspection data, Ironic's "plugin data"). Ironic's
/// `pci-devices` and `accelerators` inspection hooks read `pci_devices`; GPUs and other
/// accelerators are found there by vendor and product ID.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InspectionExtras {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "none_if_malformed"
    )]
    pub pci_devices: Option<Vec<PciDevice>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "none_if_malformed"
    )]
    pub numa_topology: Option<NumaTopology>,
}

/// One function of `/sys/bus/pci/devices`. IDs are lowercase hex without `0x`, as IPA.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PciDevice {
    pub vendor_id: String,
    pub product_id: String,
    /// Class code, six hex digits (e.g. `"030000"` for a VGA controller).
    pub class: String,
    pub revision: Option<String>,
    /// The PCI address, e.g. `"0000:3b:00.0"`.
    pub bus: String,
    /// The kernel's `numa_node` as text (`"-1"` without NUMA), as IPA sends it.
    #[serde(default)]
    pub numa_node_id: Option<String>,
}

/// IPA's `numa_topology`: memory, cores and NICs per NUMA node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NumaTopology {
    pub ram: Vec<NumaRam>,
    pub cpus: Vec<NumaCpu>,
    pub nics: Vec<NumaNic>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NumaRam {
    pub numa_node: u32,
    /// The node's `MemTotal` in kB.
    pub size_kb: u64,
}

/// One core (`core_id` within its node) and the logical CPUs running on it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NumaCpu {
    pub cpu: u32,
    pub numa_node: u32,
    pub thread_siblings: Vec<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NumaNic {
    pub name: String,
    /// `-1` when the device is on no node.
    pub numa_node: i32,
}

/// Optional extras that do not parse are dropped rather than refusing the whole inspection
/// post: they come from IPA versions and hardware managers this crate has not seen.
fn none_if_malformed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

/// A string field that IPA always sends but older Ferrite agents sent as `null`.
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_strings_as_ipa_and_nulls_from_older_agents() {
        let v: SystemVendor = serde_json::from_str(
            r#"{"product_name": null, "serial_number": "S1", "manufacturer": null,
                "firmware": {"vendor": null, "version": "1.2", "build_date": null}}"#,
        )
        .unwrap();
        assert_eq!(v.product_name, "");
        assert_eq!(v.serial_number, "S1");
        assert_eq!(v.firmware.version, "1.2");
        let out = serde_json::to_value(&v).unwrap();
        assert_eq!(out["manufacturer"], "");
        assert_eq!(out["firmware"]["build_date"], "");
        let cpu: Cpu = serde_json::from_str(
            r#"{"model_name": null, "frequency": null, "count": 2, "architecture": "x86_64",
                "flags": [], "socket_count": null}"#,
        )
        .unwrap();
        assert_eq!((cpu.model_name.as_str(), cpu.frequency.as_str()), ("", ""));
    }

    #[test]
    fn extras_are_left_out_when_unknown() {
        let none = serde_json::to_value(InspectionExtras::default()).unwrap();
        assert_eq!(none, serde_json::json!({}));
        let some = InspectionExtras {
            pci_devices: Some(vec![PciDevice {
                vendor_id: "10de".into(),
                product_id: "1eb8".into(),
                class: "030200".into(),
                revision: Some("a1".into()),
                bus: "0000:3b:00.0".into(),
                numa_node_id: Some("0".into()),
            }]),
            numa_topology: None,
        };
        let v = serde_json::to_value(&some).unwrap();
        assert_eq!(v["pci_devices"][0]["class"], "030200");
        assert!(v.get("numa_topology").is_none());
        assert_eq!(serde_json::from_value::<InspectionExtras>(v).unwrap(), some);
        // Another IPA's odd shape drops that extra, not the inspection data.
        let odd: InspectionExtras = serde_json::from_value(serde_json::json!({
            "pci_devices": [{"vendor_id": 4318}],
            "numa_topology": {"ram": [], "cpus": [], "nics": []},
        }))
        .unwrap();
        assert_eq!(odd.pci_devices, None);
        assert_eq!(odd.numa_topology, Some(NumaTopology::default()));
    }
}
