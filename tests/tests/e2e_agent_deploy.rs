//! End to end without a conductor (QEMU, TCG): a node behind its ipmi_sim BMC PXE-boots the
//! real ramdisk, the agent reports the VM's hardware, writes the test OS image and config
//! drive when told over its API, and the BMC boots the disk into the OS, which prints the
//! config drive's uuid and hostname. A wrong checksum fails the write and leaves the disk
//! without a partition table; cleaning (`erase_devices_metadata` after a second PXE boot)
//! wipes a deployed disk's partition table. Skipped with FERRITE_SKIP_VM_TESTS.

use std::path::PathBuf;

use ferrite_qemu_harness::walk::{self, WalkConfig};

fn target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// TCG is CPU-bound: the VM tests of this binary take turns.
fn one_vm_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(tmp: &tempfile::TempDir) -> WalkConfig {
    let agent = target().join("agent/ferrite-agent");
    assert!(
        agent.exists(),
        "{} is missing: build the static agent first (`cargo xtask agent`)",
        agent.display()
    );
    WalkConfig::new(
        agent,
        target().join("ramdisk-cache"),
        tmp.path().to_path_buf(),
    )
}

#[test]
fn agent_deploys_the_test_image_and_the_os_reads_its_config_drive() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let _turn = one_vm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(&tmp);
    cfg.uuid = format!("3f1c0000-0000-4000-8000-{:012x}", std::process::id());
    cfg.hostname = "deployed-by-ferrite".into();
    cfg.clean_after = true;
    let r = walk::run(&cfg).unwrap();
    for (phase, took) in &r.phases {
        eprintln!("{:>8.1} s  {phase}", took.as_secs_f64());
    }
    assert_eq!(r.deploy["command_status"], "SUCCEEDED", "{}", r.deploy);
    assert_eq!(
        r.marker.as_deref().map(str::trim),
        Some(
            format!(
                "FERRITE-DEPLOYED uuid={} hostname=deployed-by-ferrite",
                cfg.uuid
            )
            .as_str()
        )
    );

    // The inventory describes the VM as it was defined.
    let inv = &r.inventory;
    assert_eq!(inv["cpu"]["count"], 1);
    let total = inv["memory"]["total"].as_u64().unwrap();
    assert!(total > 128 << 20 && total <= 256 << 20, "{total}");
    let macs: Vec<&str> = inv["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["mac_address"].as_str())
        .collect();
    assert!(macs.contains(&cfg.mac.as_str()), "{macs:?}");
    let disks = inv["disks"].as_array().unwrap();
    assert_eq!(disks.len(), 1, "{disks:?}");
    assert_eq!(disks[0]["serial"], cfg.disk_serial.as_str());
    assert_eq!(disks[0]["size"], cfg.disk_gib << 30);
    assert_eq!(
        inv["system_vendor"]["serial_number"],
        cfg.node_serial.as_str()
    );
    let lookup = r.lookup.replace("%3A", ":");
    assert!(
        lookup.contains(&format!("addresses={}", cfg.mac)),
        "{lookup}"
    );
}

#[test]
fn a_wrong_checksum_fails_the_deploy_and_leaves_no_bootable_disk() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let _turn = one_vm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(&tmp);
    cfg.wrong_checksum = Some("ab".repeat(32));
    let r = walk::run(&cfg).unwrap();
    assert_eq!(r.deploy["command_status"], "FAILED", "{}", r.deploy);
    let error = r.deploy["command_error"].to_string().to_lowercase();
    assert!(error.contains("checksum"), "{error}");
    assert!(r.marker.is_none());
    // Nothing bootable is left: no MBR signature and no GPT header.
    let disk = std::fs::read(&r.disk).map(|d| d[..1024].to_vec()).unwrap();
    assert_ne!(&disk[510..512], &[0x55, 0xaa], "an MBR survived");
    assert_ne!(&disk[512..520], b"EFI PART", "a GPT header survived");
}
