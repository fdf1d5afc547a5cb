//! UEFI end to end without PXE (QEMU, TCG, OVMF): a node with UEFI firmware behind its
//! ipmi_sim BMC boots the real ramdisk from a virtual CD holding the boot ISO that
//! `ferrite_netboot::iso` builds for virtual media (GRUB as the El Torito EFI loader, the
//! agent's URLs on the kernel command line); the agent posts an inventory that says UEFI,
//! writes the test OS image with a config drive, and `image.install_bootloader` adds the
//! image's EFI loader as the first NVRAM boot entry through efivarfs. With the CD ejected
//! (`chassis bootdev disk`), OVMF boots that entry, and the deployed OS prints its marker.
//! No DHCP boot file or TFTP is involved. Skipped with FERRITE_SKIP_VM_TESTS.

use ferrite_qemu_harness::walk::{self, WalkConfig};
use ferrite_tests::target_dir;

#[test]
fn uefi_node_boots_the_ramdisk_from_virtual_media_and_the_deployed_disk_from_nvram() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
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
    cfg.mac = "52:54:00:fe:20:01".into();
    cfg.uuid = "00000000-0000-4000-8000-0000000000e1".into();
    cfg.hostname = "uefi-node".into();
    cfg.uefi_virtual_media = true;
    let report = walk::run(&cfg).unwrap_or_else(|e| panic!("{e}"));
    for (phase, took) in &report.phases {
        eprintln!("{phase:40} {took:?}");
    }
    let console = report.node.console().contents();

    // The ramdisk came from the CD, through OVMF; no PXE.
    assert!(
        console.contains("UEFI QEMU DVD-ROM"),
        "OVMF booted the virtual CD:\n{}",
        report.node.console().tail(40)
    );
    assert!(!console.contains("iPXE"), "no network boot happened");
    assert_eq!(report.inventory["boot"]["current_boot_mode"], "uefi");

    assert_eq!(
        report.deploy["command_status"], "SUCCEEDED",
        "{}",
        report.deploy
    );
    let bl = report.bootloader.as_ref().expect("install_bootloader ran");
    assert_eq!(bl["command_status"], "SUCCEEDED", "{bl}");
    let result = &bl["command_result"];
    let entry = result["ferrite_boot_entry"].as_str().expect("an entry");
    assert_eq!(
        result["ferrite_loader"], "\\EFI\\BOOT\\BOOTX64.EFI",
        "{result}"
    );

    // The firmware booted the entry the agent wrote, and the OS saw its config drive.
    let marker = report.marker.as_deref().expect("the deployed OS booted");
    assert!(marker.contains(&cfg.uuid), "{marker}");
    assert!(
        console.contains(&format!("BdsDxe: loading {entry} \"ferrite-deployed\"")),
        "OVMF booted the agent's NVRAM entry {entry}:\n{}",
        report.node.console().tail(40)
    );
}
