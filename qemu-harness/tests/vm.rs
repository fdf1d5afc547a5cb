//! QEMU tests (TCG): the test OS image boots and reads a config drive; a node behind its
//! simulated BMC is switched on with ipmitool, PXE-boots the real ramdisk through iPXE and
//! the agent posts its inventory. Skipped with FERRITE_SKIP_VM_TESTS (`cargo xtask test --quick`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferrite_qemu_harness::http::HttpServer;
use ferrite_qemu_harness::{create_disk, free_tcp_port, BootDevice, DiskFormat, VmBuilder};
use ferrite_ramdisk_build::{test_image, RamdiskBuilder, TestImageBuilder};

/// TCG is CPU-bound: VMs booting side by side on a 2-core machine slow each other down past
/// any sensible deadline, so these tests take turns.
fn one_vm_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

#[test]
fn test_image_boots_and_prints_its_config_drive() {
    if ferrite_qemu_harness::skip_vm_test() {
        return;
    }
    let _turn = one_vm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let image = TestImageBuilder::new(tmp.path().join("image"))
        .cache_dir(target().join("ramdisk-cache"))
        .build()
        .unwrap();
    let disk = tmp.path().join("disk.raw");
    std::fs::copy(&image.raw, &disk).unwrap();
    let uuid = format!(
        "e2e-{}-{}",
        std::process::id(),
        image.raw_sha256.get(..8).unwrap()
    );
    let meta = format!(r#"{{"uuid": "{uuid}", "hostname": "ferrite-test-node", "name": "n"}}"#);
    test_image::add_config_drive(&disk, &meta).unwrap();

    let mut vm = VmBuilder::new("test-os")
        .memory_mib(256)
        .disk(&disk, DiskFormat::Raw, "FERRITE-OS-DISK")
        .boot(BootDevice::Disk)
        .dir(tmp.path().join("vm"))
        .start()
        .unwrap();
    let line = vm
        .wait_for("FERRITE-DEPLOYED", Duration::from_secs(120))
        .unwrap();
    assert_eq!(
        line.trim(),
        format!("FERRITE-DEPLOYED uuid={uuid} hostname=ferrite-test-node")
    );
    assert!(
        vm.console().contents().contains("SYSLINUX"),
        "not booted by syslinux"
    );
}

#[test]
fn node_pxe_boots_the_ramdisk_when_its_bmc_powers_it_on() {
    if ferrite_qemu_harness::skip_vm_test() {
        return;
    }
    let _turn = one_vm_at_a_time();
    let agent = target().join("agent/ferrite-agent");
    assert!(
        agent.exists(),
        "{} is missing: build the static agent first (`cargo xtask agent`)",
        agent.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let boot = tmp.path().join("http");
    let manifest = RamdiskBuilder::new(&agent, &boot)
        .cache_dir(target().join("ramdisk-cache"))
        .build()
        .unwrap();
    let server = HttpServer::start(&boot).unwrap();
    let base = format!("http://10.0.2.2:{}", server.port());
    std::fs::write(
        boot.join("boot.ipxe"),
        format!(
            "#!ipxe\nkernel {base}/{} console=ttyS0 quiet ipa-api-url={base} \
             ipa-inspection-callback-url={base}/v1/continue_inspection \
             ipa-lookup-interval=1\ninitrd {base}/{}\nboot\n",
            manifest.kernel.file, manifest.initramfs.file
        ),
    )
    .unwrap();
    server.reply(
        "/v1/continue_inspection",
        202,
        r#"{"uuid": "node-under-test"}"#,
    );
    server.reply("/v1/lookup", 404, r#"{"error_message": "no node yet"}"#);

    let disk = tmp.path().join("disk0.raw");
    create_disk(&disk, 1 << 30).unwrap();
    let agent_port = free_tcp_port().unwrap();
    let mut node = VmBuilder::new("node-0")
        .memory_mib(256)
        .dir(tmp.path().join("node"))
        .disk(&disk, DiskFormat::Raw, "FERRITE-DISK-0")
        .smbios("Ferrite", "QEMU bare-metal node", "FERRITE-NODE-0")
        .nic("52:54:00:fe:00:01")
        .hostfwd(agent_port, 9999)
        .pxe_bootfile(&format!("{base}/boot.ipxe"))
        .start_with_bmc()
        .unwrap();

    assert!(node.ipmitool(&["power", "status"]).unwrap().contains("off"));
    assert_eq!(node.qemu_pid(), None);
    node.ipmitool(&["chassis", "bootdev", "pxe"]).unwrap();
    let powered_on = Instant::now();
    node.ipmitool(&["power", "on"]).unwrap();
    assert!(node.ipmitool(&["power", "status"]).unwrap().contains("on"));
    assert!(node.qemu_pid().is_some());

    for (pattern, timeout) in [
        ("iPXE initialising devices", 30),
        ("ferrite.kernel...", 30),
        ("ferrite.initramfs...", 30),
        ("ferrite-ramdisk: kernel", 60),
        ("ferrite-ramdisk: starting ferrite-agent", 30),
    ] {
        node.wait_for(pattern, Duration::from_secs(timeout))
            .unwrap();
        eprintln!("{:>6.1} s  {pattern}", powered_on.elapsed().as_secs_f64());
    }
    // The agent found its MAC and asked the "conductor" for its node.
    let deadline = Instant::now() + Duration::from_secs(60);
    let lookup = loop {
        let found = server
            .requests()
            .into_iter()
            .find(|r| r.target.starts_with("/v1/lookup"));
        if let Some(r) = found {
            break r;
        }
        let console = node.console();
        assert!(
            Instant::now() < deadline && !console.contents().contains("ferrite-agent exited"),
            "no lookup within 60 s, or the agent exited; console:\n{}",
            console.tail(40)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let to_lookup = powered_on.elapsed();
    eprintln!("power on -> first lookup: {to_lookup:?}");
    let query = lookup.target.replace("%3A", ":").replace("%3a", ":");
    assert!(
        query.contains("addresses=52:54:00:fe:00:01"),
        "{}",
        lookup.target
    );

    // Its inventory describes the VM as defined.
    let inspection = server
        .requests()
        .into_iter()
        .find(|r| r.target == "/v1/continue_inspection")
        .expect("the agent posts its inventory before the lookup");
    let data: serde_json::Value = serde_json::from_slice(&inspection.body).unwrap();
    let inv = &data["inventory"];
    assert_eq!(inv["cpu"]["count"], 1);
    let macs: Vec<&str> = inv["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["mac_address"].as_str())
        .collect();
    assert!(macs.contains(&"52:54:00:fe:00:01"), "{macs:?}");
    let serials: Vec<&str> = inv["disks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["serial"].as_str())
        .collect();
    assert_eq!(serials, ["FERRITE-DISK-0"]);
    assert_eq!(inv["system_vendor"]["serial_number"], "FERRITE-NODE-0");
    let total = inv["memory"]["total"].as_u64().unwrap();
    assert!(total > 128 << 20 && total <= 256 << 20, "{total}");

    // Boot device and power go through the BMC like on hardware.
    node.ipmitool(&["chassis", "bootdev", "disk"]).unwrap();
    node.ipmitool(&["power", "off"]).unwrap();
    assert!(node.ipmitool(&["power", "status"]).unwrap().contains("off"));
    assert_eq!(node.qemu_pid(), None);
    let log = node.chassis_log();
    assert!(log.contains("set boot pxe"), "{log}");
    assert!(log.contains("set power 1"), "{log}");
    assert!(log.contains("set power 0"), "{log}");
}

#[test]
fn a_vm_that_never_boots_fails_the_wait_with_its_console_and_is_reaped() {
    if ferrite_qemu_harness::skip_vm_test() {
        return;
    }
    let _turn = one_vm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("blank.raw");
    create_disk(&disk, 16 << 20).unwrap();
    let mut vm = VmBuilder::new("no-os")
        .memory_mib(64)
        .disk(&disk, DiskFormat::Raw, "BLANK")
        .boot(BootDevice::Disk)
        .dir(tmp.path().join("vm"))
        .start()
        .unwrap();
    let pid_alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let e = vm
        .wait_for("ferrite-ramdisk: starting", Duration::from_secs(8))
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("ferrite-ramdisk: starting"), "{msg}");
    assert!(
        msg.contains("SeaBIOS"),
        "the console tail is missing: {msg}"
    );
    assert!(vm.is_running());
    let console = vm.console().path().to_path_buf();
    let pid = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&*console.to_string_lossy()))
                .unwrap_or(false)
        })
        .expect("QEMU runs");
    drop(vm);
    assert!(!pid_alive(pid), "QEMU {pid} outlived its guard");
}
