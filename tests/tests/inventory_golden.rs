//! Golden inventory tests: `collect(root)` over captured sysfs/procfs trees under
//! `tests/fixtures/inventory/<name>/` must equal `<name>.expected.json`, and each fixture's
//! distinguishing facts are checked on their own so a wrong golden file cannot hide them.
//!
//! To regenerate a golden file after an intended change, run with `FERRITE_BLESS=1` and
//! review the diff.

use std::path::PathBuf;

use ferrite_proto::inventory::{Disk, Inventory};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    ferrite_tests::fixtures_dir().join("inventory").join(name)
}

/// Collects the fixture's inventory and compares it with its golden JSON.
fn golden(name: &str) -> Inventory {
    let root = fixture(name);
    let inv = ferrite_agent::inventory::collect(&root)
        .unwrap_or_else(|e| panic!("collect({}): {e:#}", root.display()));
    let got = serde_json::to_value(&inv).unwrap();
    let expected_path = root.with_extension("expected.json");
    if std::env::var_os("FERRITE_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
        std::fs::write(&expected_path, text).unwrap();
    }
    let text = std::fs::read_to_string(&expected_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", expected_path.display()));
    let expected: Value = serde_json::from_str(&text).unwrap();
    if got != expected {
        panic!(
            "{name}: inventory differs from {}\n--- got ---\n{}\n",
            expected_path.display(),
            serde_json::to_string_pretty(&got).unwrap()
        );
    }
    // The golden file also parses as the wire type (no extra or missing fields).
    let typed: Inventory = serde_json::from_str(&text).unwrap();
    assert_eq!(typed, inv);
    inv
}

fn disk<'a>(inv: &'a Inventory, name: &str) -> &'a Disk {
    inv.disks
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no disk {name} in {:?}", inv.disks))
}

#[test]
fn debian_vm() {
    let inv = golden("debian-vm");
    assert!(inv.cpu.count > 0);
    assert!(inv.memory.total > 0);
    // No DMI table on this VM: installed memory comes from the memory blocks.
    assert!(inv.memory.physical_mb.is_some());
    // Only the virtio NIC: lo and the ifb devices have no `device` link.
    let names: Vec<&str> = inv.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth0"]);
    let eth0 = &inv.interfaces[0];
    assert!(eth0.mac_address.is_some());
    assert_eq!(eth0.driver.as_deref(), Some("virtio_net"));
    assert_eq!(eth0.ipv4_address.as_deref(), Some("192.0.2.2"));
    // loop and zram devices are skipped.
    let disks: Vec<&str> = inv.disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(disks, ["/dev/vda"]);
    assert_eq!(disk(&inv, "/dev/vda").tran.as_deref(), Some("virtio"));
    assert_eq!(inv.hostname.as_deref(), Some("vm"));
    assert_eq!(inv.bmc_address, None);
}
