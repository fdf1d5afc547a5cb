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
        let text = serde_json::to_string_pretty(&inv).unwrap() + "\n";
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

/// Captured by tests/fixtures/capture-qemu.sh; the golden file is the output of the static
/// agent run on the guest's live root, so this also proves the capture is faithful.
#[test]
fn qemu_q35() {
    let inv = golden("qemu-q35");
    assert_eq!(inv.cpu.count, 2);
    assert_eq!(inv.cpu.socket_count, Some(1));
    // 1 GiB guest: QEMU's SMBIOS type 17 records say 1024 MiB.
    assert_eq!(inv.memory.physical_mb, Some(1024));
    let nvme = disk(&inv, "/dev/nvme0n1");
    assert_eq!(nvme.tran.as_deref(), Some("nvme"));
    assert_eq!(nvme.serial.as_deref(), Some("NVME-0001"));
    assert!(!nvme.rotational);
    let sata = disk(&inv, "/dev/sda");
    assert_eq!(sata.tran.as_deref(), Some("sata"));
    assert_eq!(sata.wwn.as_deref(), Some("0x5000c500a1b2c3d4"));
    assert_eq!(sata.hctl.as_deref(), Some("0:0:0:0"));
    assert!(sata.rotational);
    let vda = disk(&inv, "/dev/vda");
    assert_eq!(vda.tran.as_deref(), Some("virtio"));
    assert_eq!(vda.serial.as_deref(), Some("VIRTIO-0001"));
    assert_eq!(vda.size, 64 << 20);
    let eth0 = &inv.interfaces[0];
    assert_eq!(eth0.mac_address.as_deref(), Some("52:54:00:12:34:56"));
    // As IPA: the device the `device` link names, here the virtio device on PCI 00:05.0,
    // with the virtio IDs (vendor 0x1af4, device 1 = network card).
    assert_eq!(eth0.pci_address.as_deref(), Some("virtio2"));
    assert_eq!(eth0.vendor.as_deref(), Some("0x1af4"));
    assert_eq!(eth0.product.as_deref(), Some("0x0001"));
    assert_eq!(eth0.ipv4_address.as_deref(), Some("10.0.2.15"));
    assert_eq!(inv.system_vendor.manufacturer, "Ferrite");
    assert_eq!(
        inv.boot.pxe_interface.as_deref(),
        Some("01-52-54-00-12-34-56")
    );
    assert_eq!(inv.hostname.as_deref(), Some("ferrite-q35"));
}

/// Hand-made by tests/fixtures/make-server-fixture.sh: two sockets, NVMe and SAS disks,
/// bonded NICs, a virtual optical drive, LVM, and a BMC.
#[test]
fn server_2s() {
    let inv = golden("server-2s");
    assert_eq!(inv.cpu.count, 8);
    assert_eq!(inv.cpu.socket_count, Some(2));
    assert_eq!(inv.cpu.frequency, "3900.0000");
    // 12 populated DIMMs of 32 GiB, each encoded through SMBIOS Extended Size.
    assert_eq!(inv.memory.physical_mb, Some(12 * 32 * 1024));
    // sr0 (read-only optical), dm-0, loop0 and ram0 are not disks.
    let disks: Vec<&str> = inv.disks.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        disks,
        ["/dev/nvme0n1", "/dev/nvme1n1", "/dev/sda", "/dev/sdb"]
    );
    let sda = disk(&inv, "/dev/sda");
    assert_eq!(sda.tran.as_deref(), Some("sas"));
    assert_eq!(
        sda.by_path.as_deref(),
        Some("/dev/disk/by-path/pci-0000:18:00.0-sas-phy0-lun-0")
    );
    assert_eq!(sda.serial.as_deref(), Some("ZC1A2B3C"));
    // sdb has no udev entry: serial from VPD page 0x80, WWN from the sysfs wwid.
    let sdb = disk(&inv, "/dev/sdb");
    assert_eq!(sdb.serial.as_deref(), Some("X7A0A01BTXXA"));
    assert_eq!(sdb.wwn.as_deref(), Some("0x50000397c8123456"));
    assert_eq!(disk(&inv, "/dev/nvme1n1").logical_sectors, Some(4096));
    // Physical NICs only; a bond slave reports its permanent MAC.
    let names: Vec<&str> = inv.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eno1", "eno2", "ens1f0", "ib0"]);
    assert_eq!(
        inv.interfaces[1].mac_address.as_deref(),
        Some("b8:ce:f6:00:00:02")
    );
    assert_eq!(inv.interfaces[1].speed_mbps, None);
    // The InfiniBand port: IPA's Mellanox MAC and DHCP client-id from its GUID.
    let ib0 = &inv.interfaces[3];
    assert_eq!(ib0.mac_address.as_deref(), Some("b8:ce:f6:10:20:31"));
    assert_eq!(
        ib0.client_id.as_deref(),
        Some("ff:00:00:00:00:00:02:00:00:02:c9:00:b8:ce:f6:03:00:10:20:31")
    );
    assert_eq!(inv.interfaces[2].client_id, None);
    assert_eq!(inv.system_vendor.firmware.build_date, "10/28/2020");
    // lshw, and so IPA, puts the SMBIOS SKU after the product name.
    assert_eq!(inv.system_vendor.product_name, "SYS-2029U-TR4 (091715D9)");
    assert_eq!(inv.boot.current_boot_mode, "uefi");
    assert_eq!(inv.bmc_address.as_deref(), Some("10.10.0.17"));
    assert_eq!(inv.bmc_v6address.as_deref(), Some("2001:db8:100::17"));
    assert_eq!(inv.bmc_mac.as_deref(), Some("0c:c4:7a:aa:bb:17"));
}

/// IPA's `pci_devices` and `numa_topology` of the server fixture: its PCI functions (the
/// NICs, a bridge and an NVIDIA T4 that Ironic's accelerators hook knows as a GPU) and two
/// NUMA nodes of two cores with two threads each.
#[test]
fn server_2s_pci_devices_and_numa_topology() {
    let extras = ferrite_agent::inventory::inspection_extras(&fixture("server-2s")).unwrap();
    let pci = extras.pci_devices.expect("pci_devices");
    let buses: Vec<&str> = pci.iter().map(|d| d.bus.as_str()).collect();
    assert_eq!(
        buses,
        [
            "0000:3a:00.0",
            "0000:3d:00.0",
            "0000:3d:00.1",
            "0000:af:00.0",
            "0000:d8:00.0",
            "0000:d9:00.0"
        ]
    );
    let gpu = &pci[3];
    assert_eq!(
        (gpu.vendor_id.as_str(), gpu.product_id.as_str()),
        ("10de", "1eb8")
    );
    assert_eq!(gpu.class, "030200");
    assert_eq!(gpu.revision.as_deref(), Some("a1"));
    assert_eq!(gpu.numa_node_id.as_deref(), Some("1"));
    let numa = extras.numa_topology.expect("numa_topology");
    let ram: Vec<(u32, u64)> = numa.ram.iter().map(|r| (r.numa_node, r.size_kb)).collect();
    assert_eq!(ram, [(0, 197464660), (1, 197464660)]);
    let cores: Vec<(u32, u32, Vec<u32>)> = numa
        .cpus
        .iter()
        .map(|c| (c.numa_node, c.cpu, c.thread_siblings.clone()))
        .collect();
    assert_eq!(
        cores,
        [
            (0, 0, vec![0, 2]),
            (0, 1, vec![1, 3]),
            (1, 0, vec![4, 6]),
            (1, 1, vec![5, 7])
        ]
    );
    let nics: Vec<(&str, i32)> = numa
        .nics
        .iter()
        .map(|n| (n.name.as_str(), n.numa_node))
        .collect();
    assert_eq!(nics, [("eno1", 0), ("eno2", 0), ("ens1f0", 1), ("ib0", 1)]);
    // The VM fixtures have neither a PCI bus directory nor NUMA nodes: nothing is sent.
    let vm = ferrite_agent::inventory::inspection_extras(&fixture("debian-vm")).unwrap();
    assert_eq!(vm.pci_devices, None);
    assert_eq!(vm.numa_topology, None);
}

/// Garbage, dangling links and symlink loops in the tree give nulls, never a panic or error.
#[test]
fn garbage_tree_degrades_to_nulls() {
    use std::fs;
    use std::os::unix::fs::symlink;
    let dir = std::env::temp_dir().join(format!("ferrite-garbage-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let w = |rel: &str, data: &[u8]| {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    w("proc/cpuinfo", &[0xff, 0xfe, 0, 1, 2]);
    w("proc/meminfo", b"MemTotal: many kB\n");
    w("sys/devices/system/cpu/online", b"7-3");
    w("sys/firmware/dmi/tables/DMI", &[17, 40, 0, 0, 1, 2, 3]);
    w("sys/devices/system/memory/block_size_bytes", b"zz");
    w("sys/devices/virtual/block/sdx/size", b"-12");
    w("ferrite-fixture/addresses.json", b"{not json");
    w("ferrite-fixture/bmc.json", b"[]");
    fs::create_dir_all(dir.join("sys/block")).unwrap();
    fs::create_dir_all(dir.join("sys/class/net")).unwrap();
    symlink("../devices/virtual/block/sdx", dir.join("sys/block/sdx")).unwrap();
    symlink("../devices/nowhere/sdy", dir.join("sys/block/sdy")).unwrap();
    symlink("loop", dir.join("sys/class/net/loop")).unwrap();
    fs::create_dir_all(dir.join("sys/class/net/eth9")).unwrap();
    symlink("../../nowhere", dir.join("sys/class/net/eth9/device")).unwrap();
    let inv = ferrite_agent::inventory::collect(&dir).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(inv.cpu.count, 0);
    assert_eq!(inv.memory.total, 0);
    assert_eq!(inv.memory.physical_mb, None);
    assert!(inv.disks.is_empty(), "{:?}", inv.disks);
    // eth9 has a (dangling) device link: listed, with nothing known about it.
    assert_eq!(inv.interfaces.len(), 1);
    assert_eq!(inv.interfaces[0].name, "eth9");
    assert_eq!(inv.interfaces[0].mac_address, None);
    assert_eq!(inv.interfaces[0].pci_address, None);
    assert_eq!(inv.bmc_address, None);
}
