//! kexec into the deployed OS (issue 18 item 5), in QEMU (TCG): a node behind its BMC
//! PXE-boots the real ramdisk, the agent writes the test OS image with a config drive, and
//! `ferrite.kexec` mounts the written disk's partition read-only, finds the kernel, initrd
//! and command line its boot loader config names, loads them with `kexec_file_load(2)` and
//! jumps: the deployed OS prints its marker without the node going back through its
//! firmware (one SeaBIOS banner and one iPXE banner on the console, from the first power
//! on). Skipped with FERRITE_SKIP_VM_TESTS.

use ferrite_qemu_harness::walk::{self, WalkConfig};
use ferrite_tests::target_dir;

#[test]
fn the_agent_kexecs_into_the_deployed_os_without_a_firmware_boot() {
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
    cfg.mac = "52:54:00:fe:30:01".into();
    cfg.uuid = "00000000-0000-4000-8000-0000000000c1".into();
    cfg.hostname = "kexec-node".into();
    cfg.kexec = true;
    let report = walk::run(&cfg).unwrap_or_else(|e| panic!("{e}"));
    for (phase, took) in &report.phases {
        eprintln!("{phase:40} {took:?}");
    }
    assert_eq!(
        report.deploy["command_status"], "SUCCEEDED",
        "{}",
        report.deploy
    );
    let marker = report.marker.as_deref().expect("the deployed OS booted");
    assert!(marker.contains(&cfg.uuid), "{marker}");
    let console = report.node.console().contents();
    assert_eq!(
        console.matches("SeaBIOS (version").count(),
        1,
        "one firmware boot only:\n{}",
        report.node.console().tail(60)
    );
    assert_eq!(console.matches("iPXE initialising").count(), 1);
    let qemu_runs = report.node.chassis_log().matches("set power 1").count();
    assert_eq!(
        qemu_runs,
        1,
        "the BMC powered the node on once: {}",
        report.node.chassis_log()
    );
}
