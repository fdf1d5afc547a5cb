//! The machine itself: vendor, product (with its SKU, as lshw) and firmware from
//! `/sys/class/dmi/id` (each `""` when the machine has no such DMI field, as IPA reports it),
//! boot mode from `/sys/firmware/efi`, the PXE interface from `BOOTIF=` on the kernel command
//! line, and the hostname from `/proc/sys/kernel/hostname`.

use ferrite_proto::inventory::{Boot, Firmware, SystemVendor};

use super::Root;

pub(crate) struct System {
    pub vendor: SystemVendor,
    pub boot: Boot,
    pub hostname: Option<String>,
}

pub(crate) fn collect(root: &Root) -> System {
    let dmi = |field: &str| {
        root.read(&format!("/sys/class/dmi/id/{field}"))
            .unwrap_or_default()
    };
    let vendor = SystemVendor {
        product_name: product_with_sku(&dmi("product_name"), &dmi("product_sku")),
        serial_number: dmi("product_serial"),
        manufacturer: dmi("sys_vendor"),
        firmware: Firmware {
            vendor: dmi("bios_vendor"),
            version: dmi("bios_version"),
            build_date: dmi("bios_date"),
        },
    };
    let uefi = root.path("/sys/firmware/efi").is_dir();
    let boot = Boot {
        current_boot_mode: if uefi { "uefi" } else { "bios" }.to_string(),
        pxe_interface: root
            .read("/proc/cmdline")
            .and_then(|c| cmdline_value(&c, "BOOTIF")),
    };
    System {
        vendor,
        boot,
        hostname: root.read("/proc/sys/kernel/hostname"),
    }
}

/// The product name as lshw gives it and so IPA reports it: with the SMBIOS SKU in
/// parentheses when there is one (`PowerEdge R640 (SKU=0716;ModelName=PowerEdge R640)`).
pub fn product_with_sku(product: &str, sku: &str) -> String {
    if sku.is_empty() {
        product.to_string()
    } else {
        format!("{product} ({sku})").trim().to_string()
    }
}

/// The value of `key=value` on a kernel command line (the last one wins, as in the kernel).
pub fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .rev()
        .filter_map(|word| word.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.trim_matches('"').to_string())
        .find(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_name_carries_the_sku_as_lshw() {
        assert_eq!(
            product_with_sku("PowerEdge R640", "SKU=0716;ModelName=PowerEdge R640"),
            "PowerEdge R640 (SKU=0716;ModelName=PowerEdge R640)"
        );
        assert_eq!(
            product_with_sku("Standard PC (Q35 + ICH9, 2009)", ""),
            "Standard PC (Q35 + ICH9, 2009)"
        );
        assert_eq!(product_with_sku("", ""), "");
    }

    #[test]
    fn bootif() {
        let c = "BOOT_IMAGE=/vmlinuz ro BOOTIF=01-52-54-00-12-34-56 ipa-api-url=http://x";
        assert_eq!(
            cmdline_value(c, "BOOTIF").as_deref(),
            Some("01-52-54-00-12-34-56")
        );
        assert_eq!(cmdline_value("quiet BOOTIF=", "BOOTIF"), None);
        assert_eq!(cmdline_value("quiet", "BOOTIF"), None);
    }
}
