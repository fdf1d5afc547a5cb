//! Partition images boot (QEMU, TCG), one VM per firmware: the partition test OS image (an
//! ext4 root with the kernel, the marker-printing initramfs and Debian's GRUB) is written
//! with `image_type: partition`, `image.install_bootloader` installs the image's own boot
//! loader, and the firmware boots it to `FERRITE-DEPLOYED uuid=… hostname=…`.
//! BIOS: through the conductor (ipmi node, SeaBIOS, PXE ramdisk; `boot_mode:bios`), whose
//! prepare_instance_boot step asks the agent for GRUB's boot.img + core.img on the GPT
//! disk's BIOS boot partition. UEFI: the agent walk on OVMF with the ramdisk from virtual
//! media; the image's EFI GRUB is copied to the new ESP and booted from the NVRAM entry.
//! Skipped with FERRITE_SKIP_VM_TESTS.

use std::time::Duration;

use ferrite_qemu_harness::conducted::Lab;
use ferrite_qemu_harness::walk::{self, WalkConfig};
use ferrite_tests::{ok, state, target_dir};

/// TCG is CPU-bound: the VM tests of this binary take turns.
fn one_vm_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn bios_partition_image_deployed_by_the_conductor_boots_its_grub() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let _turn = one_vm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = ferrite_tests::lab_config(tmp.path());
    cfg.mac = "52:54:00:fe:30:01".into();
    cfg.disk_serial = "PART-BIOS-DISK".into();
    cfg.node_serial = "PART-BIOS-NODE".into();
    cfg.node_name = "part-bios".into();
    let mut lab = Lab::start(cfg).unwrap();
    let node = ok(lab.enroll());
    let uuid = node["uuid"].as_str().unwrap().to_string();
    assert_eq!(state(&ok(lab.verb("manage", &[], 120))), "manageable");
    assert_eq!(state(&ok(lab.verb("provide", &[], 400))), "available");

    ok(lab.set_partition_image("bios"));
    let drive = ok(lab.config_drive(&uuid, "partition-bios"));
    let n = ok(lab.verb("deploy", &["--config-drive", &drive], 600));
    assert_eq!(state(&n), "active", "{n}");
    let installed = &n["driver_internal_info"]["ferrite_bootloader"];
    assert_eq!(installed["ferrite_bootloader"], "grub-i386-pc", "{n}");
    assert_eq!(
        installed["ferrite_core_partition"], 1,
        "the BIOS boot partition: {n}"
    );
    let marker = ok(lab.wait_marker(Duration::from_secs(240)));
    assert_eq!(
        marker,
        format!("FERRITE-DEPLOYED uuid={uuid} hostname=partition-bios")
    );
}

#[test]
fn uefi_partition_image_boots_from_the_loader_copied_to_the_esp() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let _turn = one_vm_at_a_time();
    let agent = target_dir().join("agent/ferrite-agent");
    assert!(
        agent.exists(),
        "{} is missing: build the static agent first (`cargo xtask agent`)",
        agent.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = WalkConfig::new(
        agent,
        target_dir().join("ramdisk-cache"),
        tmp.path().to_path_buf(),
    );
    cfg.memory_mib = 512;
    cfg.disk_gib = 5;
    cfg.mac = "52:54:00:fe:30:02".into();
    cfg.uuid = "00000000-0000-4000-8000-0000000000f2".into();
    cfg.hostname = "partition-uefi".into();
    cfg.uefi_virtual_media = true;
    cfg.partition_image = true;
    let report = walk::run(&cfg).unwrap_or_else(|e| panic!("{e}"));
    for (phase, took) in &report.phases {
        eprintln!("{phase:40} {took:?}");
    }
    assert_eq!(
        report.deploy["command_status"], "SUCCEEDED",
        "{}",
        report.deploy
    );
    assert_eq!(
        report.deploy["command_result"]["ferrite_image"]["image_type"], "partition",
        "{}",
        report.deploy
    );
    let bl = report.bootloader.as_ref().expect("install_bootloader ran");
    assert_eq!(bl["command_status"], "SUCCEEDED", "{bl}");
    let result = &bl["command_result"];
    assert_eq!(
        result["ferrite_loader"], "\\EFI\\ferrite\\grubx64.efi",
        "{result}"
    );
    assert_eq!(
        result["ferrite_esp_files"],
        serde_json::json!(["EFI/ferrite/grubx64.efi", "EFI/BOOT/BOOTX64.EFI"]),
        "{result}"
    );
    let entry = result["ferrite_boot_entry"].as_str().expect("an entry");

    let marker = report.marker.as_deref().expect("the deployed OS booted");
    assert_eq!(
        marker,
        format!("FERRITE-DEPLOYED uuid={} hostname=partition-uefi", cfg.uuid)
    );
    let console = report.node.console().contents();
    assert!(
        console.contains(&format!("BdsDxe: loading {entry} \"ferrite-deployed\"")),
        "OVMF booted the agent's NVRAM entry {entry}:\n{}",
        report.node.console().tail(40)
    );
}
