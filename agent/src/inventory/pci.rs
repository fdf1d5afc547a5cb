//! `pci_devices`: every function in `/sys/bus/pci/devices` with its vendor, product, class,
//! revision and NUMA node, read as IPA's `pci-devices` inspection collector reads them.
//! Ironic's `pci-devices` hook counts them against `[inspector] pci_device_alias`, and its
//! `accelerators` hook finds GPUs and other accelerators among them by vendor and product.

use ferrite_proto::inventory::PciDevice;

use super::Root;

const DEVICES: &str = "/sys/bus/pci/devices";

/// The PCI functions, sorted by address; `None` when there is no PCI bus directory (IPA
/// then sends no `pci_devices`). A function whose IDs cannot be read is left out, as IPA.
pub(crate) fn collect(root: &Root) -> Option<Vec<PciDevice>> {
    if !root.path(DEVICES).is_dir() {
        return None;
    }
    let devices = root
        .list(DEVICES)
        .into_iter()
        .filter(|bus| root.path(&format!("{DEVICES}/{bus}")).is_dir())
        .filter_map(|bus| {
            let read = |attr: &str| root.read(&format!("{DEVICES}/{bus}/{attr}"));
            Some(PciDevice {
                vendor_id: after_0x(&read("vendor")?)?,
                product_id: after_0x(&read("device")?)?,
                class: after_0x(&read("class")?)?,
                revision: read("revision").and_then(|r| after_0x(&r)),
                numa_node_id: read("numa_node"),
                bus,
            })
        })
        .collect();
    Some(devices)
}

/// `"0x1af4"` → `"1af4"`: what IPA keeps of a sysfs ID (the text after the first `x`, up to
/// any second one); `None` without an `x`.
pub fn after_0x(text: &str) -> Option<String> {
    text.split('x').nth(1).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_lose_their_0x() {
        assert_eq!(after_0x("0x10de").as_deref(), Some("10de"));
        assert_eq!(after_0x("0x030000").as_deref(), Some("030000"));
        assert_eq!(after_0x("10de"), None);
        assert_eq!(after_0x("0x").as_deref(), Some(""));
    }

    #[test]
    fn reads_a_tree_as_ipa() {
        let dir = tempfile::tempdir().unwrap();
        let dev = |bus: &str, files: &[(&str, &str)]| {
            let d = dir.path().join(format!("sys/bus/pci/devices/{bus}"));
            std::fs::create_dir_all(&d).unwrap();
            for (name, text) in files {
                std::fs::write(d.join(name), text).unwrap();
            }
        };
        dev(
            "0000:3b:00.0",
            &[
                ("vendor", "0x10de\n"),
                ("device", "0x1eb8\n"),
                ("class", "0x030200\n"),
                ("revision", "0xa1\n"),
                ("numa_node", "1\n"),
            ],
        );
        dev(
            "0000:00:00.0",
            &[
                ("vendor", "0x8086\n"),
                ("device", "0x0d57\n"),
                ("class", "0x060000\n"),
            ],
        );
        // No class: skipped, as IPA.
        dev(
            "0000:00:1f.0",
            &[("vendor", "0x8086\n"), ("device", "0x1234\n")],
        );
        let root = Root::new(dir.path()).unwrap();
        let got = collect(&root).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].bus, "0000:00:00.0");
        assert_eq!(got[0].revision, None);
        assert_eq!(got[0].numa_node_id, None);
        let gpu = &got[1];
        assert_eq!(
            (
                gpu.vendor_id.as_str(),
                gpu.product_id.as_str(),
                gpu.class.as_str()
            ),
            ("10de", "1eb8", "030200")
        );
        assert_eq!(gpu.revision.as_deref(), Some("a1"));
        assert_eq!(gpu.numa_node_id.as_deref(), Some("1"));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(collect(&Root::new(empty.path()).unwrap()), None);
    }
}
