//! Partition images boot (QEMU, TCG), one VM per firmware: the partition test OS image (an
//! ext4 root with the kernel, the marker-printing initramfs and Debian's GRUB) is written
//! with `image_type: partition`, `image.install_bootloader` installs the image's own boot
//! loader, and the firmware boots it to `FERRITE-DEPLOYED uuid=… hostname=…`.
//! BIOS: through the conductor (ipmi node, SeaBIOS, PXE ramdisk; `boot_mode:bios`), whose
//! prepare_instance_boot step asks the agent for GRUB's boot.img + core.img on the GPT
//! disk's BIOS boot partition. UEFI: the same through the conductor on an OVMF node
//! (`boot_mode:uefi`; the harness runs the conductor's iPXE scripts for it, see
//! `ferrite_qemu_harness::netboot`); the image's EFI GRUB is copied to the new ESP and
//! OVMF boots the NVRAM entry the agent wrote.
//! Skipped with FERRITE_SKIP_VM_TESTS.

use std::time::Duration;

use ferrite_qemu_harness::conducted::Lab;
use ferrite_tests::{ok, state};

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
fn uefi_partition_image_deployed_by_the_conductor_boots_from_the_esp() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let _turn = one_vm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = ferrite_tests::lab_config(tmp.path());
    cfg.uefi = true;
    // OVMF itself takes a good part of 256 MiB.
    cfg.memory_mib = 512;
    cfg.mac = "52:54:00:fe:30:02".into();
    cfg.disk_serial = "PART-UEFI-DISK".into();
    cfg.node_serial = "PART-UEFI-NODE".into();
    cfg.node_name = "part-uefi".into();
    let mut lab = Lab::start(cfg).unwrap();
    let node = ok(lab.enroll());
    let uuid = node["uuid"].as_str().unwrap().to_string();
    assert_eq!(state(&ok(lab.verb("manage", &[], 120))), "manageable");
    assert_eq!(state(&ok(lab.verb("provide", &[], 400))), "available");

    ok(lab.set_partition_image("uefi"));
    let drive = ok(lab.config_drive(&uuid, "partition-uefi"));
    let n = ok(lab.verb("deploy", &["--config-drive", &drive], 600));
    assert_eq!(state(&n), "active", "{n}");
    let result = &n["driver_internal_info"]["ferrite_bootloader"];
    assert_eq!(
        result["ferrite_loader"], "\\EFI\\ferrite\\grubx64.efi",
        "{n}"
    );
    assert_eq!(
        result["ferrite_esp_files"],
        serde_json::json!(["EFI/ferrite/grubx64.efi", "EFI/BOOT/BOOTX64.EFI"]),
        "{result}"
    );
    let entry = result["ferrite_boot_entry"].as_str().expect("an entry");
    let marker = ok(lab.wait_marker(Duration::from_secs(240)));
    assert_eq!(
        marker,
        format!("FERRITE-DEPLOYED uuid={uuid} hostname=partition-uefi")
    );
    let console = lab.node.console().contents();
    assert!(
        console.contains(&format!("BdsDxe: loading {entry} \"ferrite-deployed\"")),
        "OVMF booted the agent's NVRAM entry {entry}:\n{}",
        lab.node.console().tail(40)
    );
    let chassis = lab.node.chassis_log();
    assert!(
        chassis.contains("set boot pxe") && chassis.contains("set boot default"),
        "the conductor chose the boot device over IPMI (ipmi_sim names the disk \
         `default`): {chassis}"
    );
}
