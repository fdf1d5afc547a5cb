//! End to end with `deploy_interface=iscsi` (QEMU, TCG): a node behind its ipmi_sim BMC is
//! enrolled with the `ipmi` hardware type and the iscsi deploy interface; the conductor
//! boots the real ramdisk, asks its agent to export the disk over iSCSI (CHAP), writes the
//! qcow2 test image and a config drive through its own initiator (the portal reached
//! through QEMU's port forward), and the deployed OS boots and prints the node's uuid and
//! hostname. Skipped with FERRITE_SKIP_VM_TESTS.

use std::time::Duration;

use ferrite_qemu_harness::conducted::Lab;
use ferrite_tests::{ok, state};

#[test]
fn a_node_deploys_through_the_iscsi_interface_and_boots() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = ferrite_tests::lab_config(tmp.path());
    cfg.mac = "52:54:00:fe:20:01".into();
    cfg.disk_serial = "E2E-ISCSI-DISK".into();
    cfg.node_serial = "E2E-ISCSI-NODE".into();
    cfg.node_name = "e2e-iscsi".into();
    cfg.deploy_interface = "iscsi".into();
    let mut lab = ok(Lab::start(cfg));

    let node = ok(lab.enroll());
    let uuid = node["uuid"].as_str().unwrap().to_string();
    let n = ok(lab.show());
    assert_eq!(n["deploy_interface"], "iscsi", "{n}");
    assert_eq!(state(&ok(lab.verb("manage", &[], 120))), "manageable");
    assert_eq!(state(&ok(lab.verb("provide", &[], 400))), "available");

    ok(lab.set_image(&lab.image_sha256.clone()));
    let drive = ok(lab.config_drive(&uuid, "written-over-iscsi"));
    let n = ok(lab.verb("deploy", &["--config-drive", &drive], 600));
    assert_eq!(state(&n), "active", "{n}");
    let w = &n["driver_internal_info"]["ferrite_iscsi_write"];
    assert_eq!(w["format"], "qcow2", "the conductor wrote the image: {n}");
    assert!(
        w["configdrive_written"]
            .as_str()
            .is_some_and(|c| c.contains("config drive")),
        "{w}"
    );
    // The image URL is on the host's loopback, which the node cannot reach: the
    // conductor fetched it.
    assert!(
        lab.image_requests()
            .iter()
            .any(|r| r.ends_with("/os.qcow2")),
        "{:?}",
        lab.image_requests()
    );
    let marker = ok(lab.wait_marker(Duration::from_secs(180)));
    assert_eq!(
        marker,
        format!("FERRITE-DEPLOYED uuid={uuid} hostname=written-over-iscsi")
    );
}
