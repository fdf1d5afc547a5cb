//! The `server` ramdisk on server-like hardware (issue 18 item 1): a QEMU node (TCG, direct
//! kernel boot, one boot) whose only NIC is an e1000e, with one disk behind an emulated
//! MegaRAID (`-device megasas`) and another behind an LSI SAS1068 (`-device mptsas1068`).
//! Cold-plug must load e1000e, megaraid_sas, mptsas and the BMC's ipmi_si (and not, say,
//! ixgbe), the agent must come up over the e1000e, and its inventory must list both disks
//! with their serials. Skipped with FERRITE_SKIP_VM_TESTS.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use ferrite_qemu_harness::http::{self, HttpServer};
use ferrite_qemu_harness::vm::{create_disk, free_tcp_port, VmBuilder, AGENT_PORT};
use ferrite_ramdisk_build::{Profile, RamdiskBuilder};
use serde_json::{json, Value};

const TOKEN: &str = "server-ramdisk-vm-token-0123456789abc";
const NODE: &str = "00000000-0000-4000-8000-00000000d18a";

fn poll<T>(what: &str, limit: Duration, console: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; console:\n{}",
            fs::read_to_string(console).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn server_ramdisk_cold_plugs_the_machines_drivers_only() {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let agent = ferrite_tests::guest::static_agent();
    let tmp = tempfile::tempdir().unwrap();
    let boot = RamdiskBuilder::new(&agent, tmp.path().join("ramdisk"))
        .cache_dir(ferrite_tests::target_dir().join("ramdisk-cache"))
        .profile(Profile::Server)
        .build()
        .unwrap();
    let mega = tmp.path().join("mega.raw");
    let mpt = tmp.path().join("mpt.raw");
    create_disk(&mega, 1 << 30).unwrap();
    create_disk(&mpt, 2 << 30).unwrap();

    let www = tmp.path().join("www");
    fs::create_dir_all(&www).unwrap();
    let server = HttpServer::start(&www).unwrap();
    let base = format!("http://10.0.2.2:{}", server.port());
    let lookup = json!({
        "node": {"uuid": NODE, "properties": {}, "instance_info": {}, "driver_internal_info": {}},
        "config": {"agent_token": TOKEN, "heartbeat_timeout": 300},
    });
    server.reply("/v1/lookup", 200, &lookup.to_string());
    server.reply(&format!("/v1/heartbeat/{NODE}"), 202, "");

    let agent_port = free_tcp_port().unwrap();
    let kernel = tmp.path().join("ramdisk").join(&boot.kernel.file);
    let initrd = tmp.path().join("ramdisk").join(&boot.initramfs.file);
    let drive = |id: &str, path: &Path| {
        format!(
            "file={},if=none,id={id},format=raw,cache=unsafe",
            path.display()
        )
    };
    let args = [
        "-netdev".to_string(),
        format!("user,id=n0,hostfwd=tcp:127.0.0.1:{agent_port}-:{AGENT_PORT}"),
        "-device".into(),
        "e1000e,netdev=n0,mac=52:54:00:fe:18:01".into(),
        "-device".into(),
        "megasas,id=mega0".into(),
        "-drive".into(),
        drive("d0", &mega),
        "-device".into(),
        "scsi-hd,drive=d0,bus=mega0.0,serial=MEGA-DISK-1".into(),
        "-device".into(),
        "mptsas1068,id=mpt0".into(),
        "-drive".into(),
        drive("d1", &mpt),
        "-device".into(),
        // QEMU reports a SAS disk's address as its WWN, and Linux's mptsas skips a device
        // whose SAS address is 0: a real SAS disk always has one.
        "scsi-hd,drive=d1,bus=mpt0.0,serial=MPT-DISK-2,wwn=0x5000c50015ea71ac".into(),
        // A BMC inside QEMU (no ipmi_sim needed): ipmi_si must cold-plug by its ACPI id.
        "-device".into(),
        "ipmi-bmc-sim,id=bmc0".into(),
        "-device".into(),
        "isa-ipmi-kcs,bmc=bmc0".into(),
    ];
    let mut builder = VmBuilder::new("server-node")
        .memory_mib(512)
        .dir(tmp.path().join("node"))
        .kernel(
            &kernel,
            &initrd,
            &format!("console=ttyS0 ipa-api-url={base} ferrite-auto-tls=0"),
        );
    for a in &args {
        builder = builder.extra_arg(a);
    }
    let vm = builder.start().unwrap();
    let console = vm.console().path().to_path_buf();

    let agent = std::net::SocketAddr::from(([127, 0, 0, 1], agent_port));
    poll(
        "the agent API over the e1000e",
        Duration::from_secs(300),
        &console,
        || {
            http::call(agent, "GET", "/v1/status", None)
                .ok()
                .filter(|(s, _)| *s == 200)
        },
    );
    let log = fs::read_to_string(&console).unwrap();
    for m in [
        "e1000e",
        "megaraid_sas",
        "mptsas",
        "sd_mod",
        "ipmi_si",
        "ipmi_devintf",
    ] {
        assert!(
            log.contains(&format!("ferrite-coldplug: loaded {m}")),
            "{m} was not cold-plugged:\n{log}"
        );
    }
    for m in ["ixgbe", "mpt3sas", "virtio_net", "bnx2x"] {
        assert!(
            !log.contains(&format!("ferrite-coldplug: loaded {m}")),
            "{m} was loaded on a machine without one:\n{log}"
        );
    }

    assert!(
        log.contains("LSISAS1068"),
        "mptsas did not bring the SAS1068 up:\n{log}"
    );
    // A SCSI disk may show up after its controller's driver returned: ask until both are.
    let command = json!({"name": "poll.get_hardware_info", "params": {}});
    let v: Value = poll(
        "both disks in the inventory",
        Duration::from_secs(60),
        &console,
        || {
            let (status, body) = http::call(
                agent,
                "POST",
                &format!("/v1/commands/?wait=true&agent_token={TOKEN}"),
                Some(&command.to_string()),
            )
            .ok()?;
            let v: Value = serde_json::from_str(&body).ok()?;
            let disks = v["command_result"]["disks"].as_array()?;
            let found = ["MEGA-DISK-1", "MPT-DISK-2"]
                .iter()
                .all(|serial| disks.iter().any(|d| d["serial"] == *serial));
            ((200..300).contains(&status) && found).then_some(v)
        },
    );
    let inv = &v["command_result"];
    let disks = inv["disks"].as_array().unwrap();
    let serials: Vec<&str> = disks.iter().filter_map(|d| d["serial"].as_str()).collect();
    assert!(serials.contains(&"MEGA-DISK-1"), "{serials:?} in {v}");
    assert!(serials.contains(&"MPT-DISK-2"), "{serials:?} in {v}");
    assert_eq!(disks.len(), 2, "{v}");
    let nics = inv["interfaces"].as_array().unwrap();
    assert_eq!(nics.len(), 1, "{nics:?}");
    assert_eq!(nics[0]["driver"], "e1000e");
    assert_eq!(nics[0]["mac_address"], "52:54:00:fe:18:01");
    drop(vm);
}
