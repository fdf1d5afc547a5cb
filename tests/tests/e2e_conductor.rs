//! End to end through the conductor (QEMU, TCG), driven with the `ferrite` CLI as an
//! operator would: a QEMU node behind its ipmi_sim BMC is enrolled with the `ipmi` hardware
//! type, and the conductor powers it and sets its boot device over IPMI, PXE-boots it into
//! the real ramdisk through its own iPXE scripts, and talks to the real agent (TLS pinned to
//! the agent's certificate). Four scenarios on two nodes, one VM at a time:
//! (a) enroll → manage → inspect → provide → deploy with a config drive → the deployed OS
//! prints the node's uuid and hostname; (d) rebuild; (b) a wrong checksum → deploy failed,
//! no partition table left, recovered with undeploy; (c) with fast track and kexec, a
//! deploy through the agent that cleaned the node, which kexecs into the written OS (no
//! power action at all), then undeploy → cleaning → available with the disk's metadata
//! erased; (e) rescue into the agent ramdisk and unrescue back to the deployed OS.
//! Skipped with FERRITE_SKIP_VM_TESTS.

use std::time::Duration;

use ferrite_qemu_harness::conducted::Lab;
use ferrite_tests::{ok, state};

/// TCG is CPU-bound: the VM tests of this binary take turns.
fn one_vm_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn lab(tmp: &tempfile::TempDir, n: u8) -> Lab {
    let mut cfg = ferrite_tests::lab_config(tmp.path());
    cfg.mac = format!("52:54:00:fe:10:{n:02x}");
    cfg.disk_serial = format!("E2E-DISK-{n}");
    cfg.node_serial = format!("E2E-NODE-{n}");
    cfg.node_name = format!("e2e-node-{n}");
    Lab::start(cfg).unwrap()
}

/// No MBR boot signature and no GPT header in the disk's first sectors.
fn assert_no_partition_table(disk: &std::path::Path) {
    let head = std::fs::read(disk).map(|d| d[..1024].to_vec()).unwrap();
    assert_ne!(&head[510..512], &[0x55, 0xaa], "an MBR signature is left");
    assert_ne!(&head[512..520], b"EFI PART", "a GPT header is left");
}

/// The step timeline of the deploy that just ended (issue 20): every deploy step, in
/// order, with a non-zero duration; the states from
/// `deploying` to `active` add up to the deploy's wall time as the CLI measured it.
fn assert_deploy_timeline(lab: &Lab, uuid: &str, wall: f64) {
    let (status, body) = ferrite_qemu_harness::http::call(
        lab.url().trim_start_matches("http://").parse().unwrap(),
        "GET",
        &format!("/v1/nodes/{uuid}/timeline"),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let tl: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entries = tl["timeline"].as_array().unwrap();
    // The deploy starts where the node left `available` (it enters `deploying` again after
    // each wait for the agent).
    let deploying = entries
        .iter()
        .rposition(|e| e["type"] == "state" && e["name"] == "deploying" && e["from"] == "available")
        .unwrap_or_else(|| panic!("no deploying state entered from available: {tl}"));
    let deploy = &entries[deploying..];
    let steps: Vec<&serde_json::Value> = deploy.iter().filter(|e| e["type"] == "step").collect();
    let names: Vec<&str> = steps.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "deploy.deploy",
            "deploy.write_image",
            "deploy.prepare_instance_boot",
            "deploy.tear_down_agent",
            "deploy.boot_instance"
        ],
        "{tl}"
    );
    for e in &steps {
        assert_eq!(e["outcome"], "ok", "{e}");
        assert_eq!(e["driver"], "ipmi", "{e}");
        assert!(e["duration_s"].as_f64().unwrap() > 0.0, "{e}");
    }
    // (The agent's write progress reaches the step only with a heartbeat during the write,
    // every 5 s: this small image may be written in less; conductor/tests/observability.rs
    // checks progress with a slow image.)
    let state_sum: f64 = deploy
        .iter()
        .filter(|e| e["type"] == "state" && e["running"] == false)
        .map(|e| e["duration_s"].as_f64().unwrap())
        .sum();
    // The CLI's wall time also holds its start and its last poll (about a second).
    assert!(
        state_sum <= wall + 0.5 && state_sum >= wall - 5.0,
        "deploying to active took {state_sum:.1} s on the timeline, {wall:.1} s by the clock"
    );
    let power: Vec<&serde_json::Value> = deploy.iter().filter(|e| e["type"] == "power").collect();
    assert!(
        power
            .iter()
            .any(|e| e["interface"] == "ipmitool" || e["interface"] == "ipmi"),
        "the BMC's power calls are on the timeline: {power:?}"
    );
    eprintln!(
        "deploy timeline: {:.1} s of states, {:.1} s by the clock; steps {:?}",
        state_sum,
        wall,
        steps
            .iter()
            .map(|e| (
                e["name"].as_str().unwrap_or(""),
                e["duration_s"].as_f64().unwrap_or(0.0)
            ))
            .collect::<Vec<_>>()
    );
}

#[test]
fn operator_deploys_and_rebuilds_a_node_through_the_conductor() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let _turn = one_vm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = lab(&tmp, 1);

    let node = ok(lab.enroll());
    assert_eq!(state(&node), "enroll");
    let uuid = node["uuid"].as_str().unwrap().to_string();

    // (a) the operator's walk.
    let n = ok(lab.verb("manage", &[], 120));
    assert_eq!(state(&n), "manageable");
    assert_eq!(n["power_state"], "power off", "{n}");

    let n = ok(lab.verb("inspect", &[], 300));
    assert_eq!(state(&n), "manageable", "{n}");
    assert_eq!(n["power_state"], "power off", "inspection ends powered off");
    let props = &n["properties"];
    assert_eq!(props["cpus"], 1, "{props}");
    assert_eq!(props["cpu_arch"], "x86_64", "{props}");
    let mem = props["memory_mb"].as_u64().unwrap();
    assert!((128..=256).contains(&mem), "memory_mb {mem}");
    assert_eq!(
        props["local_gb"], 4,
        "5 GiB disk, minus Ironic's 1 GiB: {props}"
    );
    let (status, body) = ferrite_qemu_harness::http::call(
        lab.url().trim_start_matches("http://").parse().unwrap(),
        "GET",
        &format!("/v1/nodes/{uuid}/inventory"),
        None,
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let inv: serde_json::Value = serde_json::from_str(&body).unwrap();
    let inv = &inv["inventory"];
    assert_eq!(inv["cpu"]["count"], 1);
    let macs: Vec<&str> = inv["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["mac_address"].as_str())
        .collect();
    assert!(macs.contains(&"52:54:00:fe:10:01"), "{macs:?}");
    let disks = inv["disks"].as_array().unwrap();
    assert_eq!(disks.len(), 1, "{disks:?}");
    assert_eq!(disks[0]["serial"], "E2E-DISK-1");
    assert_eq!(disks[0]["size"], 5u64 << 30);
    assert_eq!(inv["system_vendor"]["serial_number"], "E2E-NODE-1");

    let n = ok(lab.verb("provide", &[], 400));
    assert_eq!(state(&n), "available", "{n}");

    ok(lab.set_image(&lab.image_sha256.clone()));
    let drive = ok(lab.config_drive(&uuid, "deployed-by-ferrite"));
    let started = std::time::Instant::now();
    let n = ok(lab.verb("deploy", &["--config-drive", &drive], 600));
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(state(&n), "active", "{n}");
    assert_eq!(n["power_state"], "power on");
    let marker = ok(lab.wait_marker(Duration::from_secs(180)));
    assert_eq!(
        marker,
        format!("FERRITE-DEPLOYED uuid={uuid} hostname=deployed-by-ferrite")
    );
    assert_deploy_timeline(&lab, &uuid, wall);
    assert!(
        lab.node.chassis_log().contains("boot"),
        "the BMC was asked to set boot devices: {}",
        lab.node.chassis_log()
    );

    // (d) rebuild: the same image again, and the OS boots again.
    let n = ok(lab.verb("rebuild", &[], 600));
    assert_eq!(state(&n), "active", "{n}");
    let marker = ok(lab.wait_marker(Duration::from_secs(180)));
    assert!(marker.contains(&format!("uuid={uuid}")), "{marker}");

    // (e) rescue: the agent ramdisk boots again and the real agent takes the rescue
    // password (`rescue` is reached only once `rescue.finalize_rescue` succeeded in the
    // ramdisk); unrescue boots the deployed OS again.
    ok(lab.cli(
        "rescue interface",
        &["node", "set", "e2e-node-1", "--rescue-interface", "agent"],
    ));
    let n = ok(lab.verb("rescue", &["--password", "e2e-rescue-pw"], 600));
    assert_eq!(state(&n), "rescue", "{n}");
    assert_eq!(n["last_error"], serde_json::Value::Null, "{n}");
    assert!(!n.to_string().contains("e2e-rescue-pw"), "{n}");
    let n = ok(lab.verb("unrescue", &[], 600));
    assert_eq!(state(&n), "active", "{n}");
    let marker = ok(lab.wait_marker(Duration::from_secs(180)));
    assert!(marker.contains(&format!("uuid={uuid}")), "{marker}");
}

#[test]
fn a_bad_checksum_fails_cleanly_and_undeploy_erases_the_disk() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let _turn = one_vm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = lab(&tmp, 2);
    let node = ok(lab.enroll());
    let uuid = node["uuid"].as_str().unwrap().to_string();
    // This node runs with fast track (issue 18): the agent booted for inspection stays up
    // and cleans, deploys, fails, cleans again and deploys without another boot.
    ok(lab.cli(
        "fast track",
        &[
            "node",
            "set",
            "e2e-node-2",
            "--driver-info",
            "fast_track=true",
        ],
    ));
    assert_eq!(state(&ok(lab.verb("manage", &[], 120))), "manageable");
    assert_eq!(state(&ok(lab.verb("inspect", &[], 300))), "manageable");
    let n = ok(lab.show());
    assert_eq!(
        n["power_state"], "power on",
        "fast track keeps the inspected agent up: {n}"
    );
    // Fast track takes an agent that heartbeated (Ironic's is_fast_track): the inspected
    // agent looks up and heartbeats once its inspection data is in. An operator's
    // `provide` comes later than a test's; wait for that heartbeat as they would.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ok(lab.show())["driver_internal_info"]["agent_last_heartbeat"].is_null() {
        assert!(
            std::time::Instant::now() < deadline,
            "the inspected agent never heartbeated: {}",
            ok(lab.show())
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let before_clean = lab.node.chassis_log().len();
    assert_eq!(state(&ok(lab.verb("provide", &[], 400))), "available");
    let n = ok(lab.show());
    assert_eq!(
        n["power_state"], "power on",
        "fast track keeps the agent up: {n}"
    );
    let log = lab.node.chassis_log();
    assert!(
        !log[before_clean..].contains("set power"),
        "fast track: cleaning used the inspected agent, no power action: {}\nconductor:\n{}",
        &log[before_clean..],
        lab.conductor_log_tail(60)
    );

    // (b) deploy for real, then undeploy: cleaning erases the disk's metadata. Fast track
    // and kexec: the agent that cleaned the node writes the image and kexecs into it, so
    // the BMC is asked for no power action at all (only the boot device, set to disk).
    ok(lab.cli(
        "kexec",
        &[
            "node",
            "set",
            "e2e-node-2",
            "--driver-info",
            "ferrite_kexec=true",
        ],
    ));
    ok(lab.set_image(&lab.image_sha256.clone()));
    let drive = ok(lab.config_drive(&uuid, "short-lived"));
    let before = lab.node.chassis_log().len();
    assert_eq!(
        state(&ok(lab.verb("deploy", &["--config-drive", &drive], 600))),
        "active"
    );
    ok(lab.wait_marker(Duration::from_secs(180)));
    let log = lab.node.chassis_log();
    let power: Vec<&str> = log[before..]
        .lines()
        .filter(|l| l.contains("set power") || l.contains("set reset"))
        .collect();
    assert!(
        power.is_empty(),
        "fast track + kexec: no power action from available to the marker: {}",
        &log[before..]
    );
    // From enroll to the deployed OS's marker the BMC powered the node on once: for
    // inspection (the acceptance test of issue 18's fast track).
    let on: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("set power 1") || l.contains("set reset"))
        .collect();
    assert_eq!(
        on.len(),
        1,
        "enroll → inspect → clean → deploy → marker with one power-on: {log}"
    );
    let n = ok(lab.show());
    assert_eq!(
        n["driver_internal_info"]["ferrite_kexec"]["booted"], true,
        "{n}"
    );
    let head = std::fs::read(&lab.disk)
        .map(|d| d[..1024].to_vec())
        .unwrap();
    assert_eq!(
        &head[510..512],
        &[0x55, 0xaa],
        "the deployed image has an MBR"
    );
    let n = ok(lab.verb("undeploy", &[], 400));
    assert_eq!(state(&n), "available", "{n}");
    assert!(
        n["instance_info"].as_object().is_none_or(|o| o.is_empty()),
        "{n}"
    );
    assert_no_partition_table(&lab.disk);

    // (c) a wrong checksum: deploy failed, naming the checksum, and nothing bootable.
    ok(lab.set_image(&"ab".repeat(32)));
    let n = ok(lab.verb_fails("deploy", &[], 600));
    assert_eq!(state(&n), "deploy failed", "{n}");
    let err = n["last_error"].as_str().unwrap_or("").to_lowercase();
    assert!(err.contains("checksum"), "{err}");
    assert_no_partition_table(&lab.disk);
    // Recoverable: undeploy cleans it back to available, the disk erased.
    let n = ok(lab.verb("undeploy", &[], 400));
    assert_eq!(state(&n), "available", "{n}");
    assert_no_partition_table(&lab.disk);
    // Cleaning's full erase (erase_devices, on by default as in Ironic) zeroed the whole
    // disk with a write-zeroes that may unmap: the backing file is holes again, so erasing
    // a test node cannot fill the host's disk (it did, in CI, before).
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&lab.disk).unwrap().blocks() * 512;
    assert!(
        allocated < 64 << 20,
        "{} bytes of the 5 GiB disk still allocated after the erase",
        allocated
    );
}
