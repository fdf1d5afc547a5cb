//! The inventory of the machine the tests run on, checked against what util-linux and
//! iproute2 report about it (`lsblk`, `lscpu`, `ip`, `hostname`), and the release agent's
//! wall time against the 50 ms budget.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferrite_proto::inventory::Inventory;
use serde_json::Value;

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn live() -> Inventory {
    ferrite_agent::inventory::collect(Path::new("/")).expect("live inventory")
}

fn as_u64(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

fn as_bool(v: &Value) -> bool {
    v.as_bool()
        .unwrap_or_else(|| matches!(v.as_str(), Some("1") | Some("true")))
}

#[test]
fn cpu_memory_and_hostname_match_the_system_tools() {
    let inv = live();
    // lscpu's "CPU(s)" (the present CPUs), which is what IPA reports.
    let out = Command::new("lscpu")
        .env("LC_ALL", "C")
        .output()
        .expect("cannot run lscpu");
    assert!(out.status.success(), "lscpu failed: {out:?}");
    let present: u32 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("CPU(s):"))
        .expect("lscpu prints CPU(s)")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(inv.cpu.count, present);
    assert!(!inv.cpu.architecture.is_empty());
    assert_eq!(inv.cpu.architecture, run("uname", &["-m"]).trim());
    assert!(inv.memory.total > 0);
    // Installed memory needs the DMI table (root only) or the memory-block directory.
    let dmi = std::fs::metadata("/sys/firmware/dmi/tables/DMI").is_ok();
    if dmi || Path::new("/sys/devices/system/memory/block_size_bytes").exists() {
        assert!(inv.memory.physical_mb.is_some_and(|mb| mb > 0));
    }
    assert_eq!(inv.hostname.as_deref(), Some(run("hostname", &[]).trim()));
}

/// lsblk's whole disks, by `/dev` path, with the filters CONTRACT §4 sets.
fn lsblk_disks() -> BTreeMap<String, Value> {
    let report: Value = serde_json::from_str(&run(
        "lsblk",
        &["-bdJ", "-o", "NAME,SIZE,ROTA,TYPE,RO,LOG-SEC,PHY-SEC"],
    ))
    .unwrap();
    let mut expected = BTreeMap::new();
    for dev in report["blockdevices"].as_array().unwrap() {
        let name = dev["name"].as_str().unwrap();
        let kind = dev["type"].as_str().unwrap_or("");
        let size = as_u64(&dev["size"]);
        let skipped = ["ram", "loop", "zram", "fd"]
            .iter()
            .any(|p| name.starts_with(p));
        let disk_like = kind == "disk" || kind.starts_with("raid") || kind == "mpath";
        if skipped || !disk_like || size == 0 {
            continue;
        }
        expected.insert(format!("/dev/{name}"), dev.clone());
    }
    expected
}

#[test]
fn disks_match_lsblk() {
    // Other tests may attach block devices meanwhile: take both views again (a few times)
    // until they list the same devices, then compare the details.
    let mut attempt = 0;
    let (inv, expected) = loop {
        let snapshot = (live(), lsblk_disks());
        attempt += 1;
        let same = snapshot
            .0
            .disks
            .iter()
            .map(|d| d.name.as_str())
            .eq(snapshot.1.keys().map(String::as_str));
        if same || attempt == 5 {
            break snapshot;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let ours: Vec<&str> = inv.disks.iter().map(|d| d.name.as_str()).collect();
    let theirs: Vec<&str> = expected.keys().map(String::as_str).collect();
    assert_eq!(ours, theirs, "disks differ from lsblk");
    for disk in &inv.disks {
        let dev = &expected[&disk.name];
        assert_eq!(disk.size, as_u64(&dev["size"]), "{}", disk.name);
        assert_eq!(disk.rotational, as_bool(&dev["rota"]), "{}", disk.name);
        assert_eq!(
            disk.logical_sectors.map(u64::from),
            Some(as_u64(&dev["log-sec"])),
            "{}",
            disk.name
        );
        assert_eq!(
            disk.physical_sectors.map(u64::from),
            Some(as_u64(&dev["phy-sec"])),
            "{}",
            disk.name
        );
    }
}

#[test]
fn interfaces_match_ip() {
    let inv = live();
    assert!(
        inv.interfaces.iter().any(|i| i.mac_address.is_some()),
        "no interface with a MAC: {:?}",
        inv.interfaces
    );
    let report: Value = serde_json::from_str(&run("ip", &["-j", "addr", "show"])).unwrap();
    let links = report.as_array().unwrap();
    for nic in &inv.interfaces {
        let link = links
            .iter()
            .find(|l| l["ifname"] == nic.name.as_str())
            .unwrap_or_else(|| panic!("{} is not in `ip addr`", nic.name));
        assert_ne!(nic.name, "lo");
        let locals: Vec<&str> = link["addr_info"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["local"].as_str()).collect())
            .unwrap_or_default();
        if let Some(v4) = &nic.ipv4_address {
            assert!(locals.contains(&v4.as_str()), "{v4} not in {locals:?}");
        } else {
            assert!(!locals.iter().any(|a| a.contains('.')), "{locals:?}");
        }
        if let Some(v6) = &nic.ipv6_address {
            assert!(locals.contains(&v6.as_str()), "{v6} not in {locals:?}");
        }
        // A bond member reports its permanent address, which `ip` shows as permaddr.
        let mac = nic.mac_address.as_deref().unwrap();
        assert!(
            link["address"] == mac || link["permaddr"] == mac,
            "{}: {mac} vs {link}",
            nic.name
        );
    }
}

/// The budget: `target/agent/ferrite-agent inventory` on this machine in ≤ 50 ms.
/// Best of five runs, so a busy shared machine does not fail it by accident.
#[test]
fn release_agent_inventory_within_50_ms() {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/agent/ferrite-agent");
    assert!(
        agent.exists(),
        "{} is missing: build the static agent first with `cargo xtask agent`",
        agent.display()
    );
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let out = Command::new(&agent).arg("inventory").output().unwrap();
        best = best.min(start.elapsed());
        assert!(out.status.success(), "{out:?}");
        let inv: Inventory = serde_json::from_slice(&out.stdout).unwrap();
        assert!(inv.cpu.count > 0);
    }
    eprintln!("release agent inventory: best of 5 = {best:?}");
    assert!(best <= Duration::from_millis(50), "took {best:?}");
}

/// A wrong `--root` is a clear error on stderr and a failing exit status, not a panic.
#[test]
fn release_agent_rejects_a_missing_root() {
    let agent = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/agent/ferrite-agent");
    assert!(
        agent.exists(),
        "{} is missing: build the static agent first with `cargo xtask agent`",
        agent.display()
    );
    let out = Command::new(&agent)
        .args(["inventory", "--root", "/nonexistent/ferrite-root"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/ferrite-root"), "{err}");
    assert!(err.contains("--root"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
