//! Virtual-media boot end to end through the conductor (QEMU, TCG, OVMF): a UEFI node that
//! is a libvirt domain in a private libvirtd, with sushy-emulator's libvirt driver as its
//! Redfish BMC, is enrolled with the `redfish` hardware type and the
//! `redfish-virtual-media` boot interface. For inspection, cleaning and deploy the
//! conductor builds the boot ISO with the node's kernel parameters, serves it at
//! `/boot/<uuid>/boot.iso`, inserts it through Redfish (the emulator downloads it and
//! attaches it as the domain's CD) and sets the boot device to cd; the deployed node boots
//! from its disk with its config drive and prints its marker; undeploy cleans it through
//! virtual media again. The ramdisk's address comes
//! from the node's `network_data` (static), not DHCP; no DHCP boot file, TFTP or iPXE is
//! involved. Skipped with FERRITE_SKIP_VM_TESTS.

use std::time::{Duration, Instant};

use ferrite_qemu_harness::conducted::Lab;
use ferrite_qemu_harness::libvirt::RedfishNode;
use ferrite_tests::{ok, state};
use serde_json::Value;

/// The BMC's virtual CD (sushy-emulator 2.2 has it under the system).
fn cd(lab: &Lab<RedfishNode>) -> Value {
    let n = &lab.node;
    let path = format!("/redfish/v1/Systems/{}/VirtualMedia/Cd", n.system_id());
    let (status, body) = ok(n.redfish_get(&path));
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn redfish_node_is_inspected_and_deployed_through_virtual_media() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = ferrite_tests::lab_config(tmp.path());
    // 1 GiB: sushy's libvirt driver reports memory in whole GiB.
    cfg.memory_mib = 1024;
    cfg.mac = "52:54:00:fe:30:01".into();
    cfg.node_name = "vmedia-node".into();
    let disk_gib = cfg.disk_gib;
    let mut lab = ok(Lab::start_redfish(cfg));
    let started = t0.elapsed();

    let node = ok(lab.enroll_redfish("redfish-virtual-media", "agent"));
    let uuid = node["uuid"].as_str().unwrap().to_string();
    assert_eq!(node["boot_interface"], "redfish-virtual-media", "{node}");
    let iso = tmp.path().join(format!("state/boot/{uuid}/boot.iso"));
    // Static addressing for the ramdisk: QEMU's user network answers DHCP, but the
    // ramdisk must not need it.
    ok(lab.set_static_network());

    let n = ok(lab.verb("manage", &[], 120));
    assert_eq!(state(&n), "manageable", "{n}");

    // Out-of-band inspection first: what the BMC (sushy-emulator over libvirt) says of
    // the VM, checked against how the lab made it; nothing boots.
    #[rustfmt::skip]
    ok(lab.cli("node set", &["node", "set", "vmedia-node", "--inspect-interface", "redfish"]));
    let t = Instant::now();
    let n = ok(lab.verb("inspect", &[], 120));
    let oob = t.elapsed();
    assert_eq!(state(&n), "manageable", "{n}");
    let p = &n["properties"];
    assert_eq!(p["memory_mb"], 1024, "the VM's memory: {n}");
    assert_eq!(p["cpus"], 1, "the VM's one vCPU: {n}");
    assert_eq!(p["cpu_arch"], "x86_64", "{n}");
    assert_eq!(
        p["local_gb"],
        disk_gib - 1,
        "the disk less Ironic's 1 GiB: {n}"
    );
    assert!(
        !lab.node.console().contents().contains("Linux version"),
        "out-of-band inspection booted nothing"
    );
    #[rustfmt::skip]
    ok(lab.cli("node set", &["node", "set", "vmedia-node", "--inspect-interface", "agent"]));

    // Inspection boots the ramdisk from the inserted ISO.
    let t = Instant::now();
    let n = ok(lab.verb("inspect", &[], 300));
    let inspect = t.elapsed();
    assert_eq!(state(&n), "manageable", "{n}");
    assert_eq!(n["power_state"], "power off", "inspection ends powered off");
    assert_eq!(n["properties"]["cpus"], 1, "{n}");
    let console = lab.node.console().contents();
    assert!(
        console.contains("UEFI QEMU DVD-ROM"),
        "OVMF booted the virtual CD:\n{}",
        lab.node.console().tail(40)
    );
    assert!(!console.contains("iPXE"), "no network boot happened");
    assert!(
        console.contains("static 10.0.2.15/24 gateway 10.0.2.2"),
        "the ramdisk took its address from network_data:\n{}",
        lab.node.console().tail(60)
    );
    assert!(
        !console.contains("has 10.0.2.15"),
        "the ramdisk used no DHCP"
    );
    assert!(!iso.exists(), "the ISO is removed after inspection");
    assert_eq!(
        cd(&lab)["Inserted"],
        false,
        "the CD is ejected after inspection"
    );
    let log = std::fs::read_to_string(tmp.path().join("node/sushy/sushy.log")).unwrap();
    assert!(
        log.contains("InsertMedia") || log.contains("VirtualMedia"),
        "the BMC got the media request:\n{log}"
    );

    // Cleaning boots it again; then the deploy with a config drive.
    let t = Instant::now();
    let n = ok(lab.verb("provide", &[], 400));
    let clean = t.elapsed();
    assert_eq!(state(&n), "available", "{n}");
    ok(lab.set_image(&lab.image_sha256.clone()));
    let drive = ok(lab.config_drive(&uuid, "vmedia-node"));
    let t = Instant::now();
    let n = ok(lab.verb("deploy", &["--config-drive", &drive], 600));
    assert_eq!(state(&n), "active", "{n}");
    let marker = ok(lab.wait_marker(Duration::from_secs(180)));
    let deploy = t.elapsed();
    assert!(marker.contains(&uuid), "{marker}");
    assert!(marker.contains("hostname=vmedia-node"), "{marker}");
    assert!(!iso.exists(), "the ISO is removed once deployed");
    assert_eq!(
        cd(&lab)["Inserted"],
        false,
        "the CD is ejected once deployed"
    );

    // Undeploy: teardown ejects nothing left, cleaning boots the ramdisk from a new ISO.
    let t = Instant::now();
    let n = ok(lab.verb("undeploy", &[], 600));
    let undeploy = t.elapsed();
    assert_eq!(state(&n), "available", "{n}");
    assert!(!iso.exists(), "the ISO is removed after cleaning");
    assert_eq!(
        cd(&lab)["Inserted"],
        false,
        "the CD is ejected after cleaning"
    );
    let console = lab.node.console().contents();
    assert!(!console.contains("iPXE"), "no network boot happened");
    assert_eq!(
        console.matches("static 10.0.2.15/24").count(),
        4,
        "the ramdisk booted from virtual media for inspection, cleaning, deploy, cleaning"
    );
    eprintln!(
        "lab start {started:?}, out-of-band inspect {oob:?}, inspect {inspect:?}, provide (clean) {clean:?}, \
         deploy to marker {deploy:?}, undeploy (clean) {undeploy:?}, total {:?}",
        t0.elapsed()
    );
}
