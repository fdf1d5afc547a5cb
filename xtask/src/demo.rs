//! `cargo xtask demo`: the mission in one command. A conductor (SQLite under `target/demo`),
//! an image server and one QEMU "server" behind an ipmi_sim BMC are started; then, through
//! the `ferrite` CLI as an operator would type it: node create (ipmi), port create, manage,
//! inspect (the discovered inventory is printed), provide (cleaning), deploy the qcow2 test
//! image with its sha256 and a config drive carrying a hostname. The conductor powers the
//! node and sets its boot device over IPMI and PXE-boots the agent ramdisk through its own
//! iPXE scripts; the deployed OS prints `FERRITE-DEPLOYED uuid=… hostname=…`. Ends with a
//! table of phase timings, the node's step timeline (`ferrite node history`) and the
//! dashboard's URL, and tears everything down unless `--keep`.

use std::time::{Duration, Instant};

use ferrite_qemu_harness::conducted::{Lab, LabConfig};
use serde_json::Value;

use crate::util;

pub fn run(keep: bool) -> anyhow::Result<()> {
    // SIGTERM/SIGHUP/SIGINT (a closed terminal, a process manager, Ctrl-C) stop the
    // conductor, ipmi_sim and QEMU too, not only this process.
    ferrite_qemu_harness::reaper::stop_descendants_on_signals()?;
    crate::deps::install()?;
    util::step("static agent");
    let agent = crate::build_agent()?;
    util::step("ferrite (conductor + CLI) and the BMC chassis program");
    util::cargo(&[
        "build",
        "--package",
        "ferrite-conductor",
        "--bin",
        "ferrite",
        "--package",
        "ferrite-qemu-harness",
        "--bin",
        "ferrite-qemu-harness",
    ])?;
    let target = util::project_root().join("target");
    let work = target.join("demo");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let mut cfg = LabConfig::new(
        agent,
        target.join("debug/ferrite"),
        target.join("ramdisk-cache"),
        work.clone(),
    );
    cfg.node_name = "demo-node".into();
    cfg.echo = true;
    util::step("ramdisk, test image, conductor, image server, QEMU node with its BMC");
    let mut lab = Lab::start(cfg)?;
    println!(
        "conductor: {} (export FERRITE_URL={})\nBMC:       {} user {} password {}",
        lab.url(),
        lab.url(),
        lab.node.bmc_addr(),
        lab.node.bmc_username(),
        lab.node.bmc_password()
    );

    let mut phases: Vec<(&str, Duration)> = vec![];
    let t0 = Instant::now();
    let mut timed = |name: &'static str, f: &mut dyn FnMut() -> anyhow::Result<()>| {
        util::step(name);
        let t = Instant::now();
        let r = f();
        phases.push((name, t.elapsed()));
        r
    };
    let node = lab.enroll()?;
    let uuid = node["uuid"].as_str().unwrap_or_default().to_string();
    timed("manage (BMC check)", &mut || {
        lab.verb("manage", &[], 120)?;
        Ok(())
    })?;
    timed("inspect (PXE boot, inventory)", &mut || {
        lab.verb("inspect", &[], 300)?;
        Ok(())
    })?;
    print_inventory(&lab, &uuid)?;
    timed("provide (cleaning)", &mut || {
        lab.verb("provide", &[], 400)?;
        Ok(())
    })?;
    lab.set_image(&lab.image_sha256.clone())?;
    let drive = lab.config_drive(&uuid, "demo-node")?;
    timed("deploy (image + config drive)", &mut || {
        lab.verb("deploy", &["--config-drive", &drive], 600)?;
        Ok(())
    })?;
    let enrolled_to_active = t0.elapsed();
    let t = Instant::now();
    let marker = lab.wait_marker(Duration::from_secs(180))?;
    phases.push(("boot of the deployed OS", t.elapsed()));
    phases.push(("enroll -> active", enrolled_to_active));
    phases.push(("total", t0.elapsed()));

    println!("\ndeployed OS says: {marker}");
    println!("\n{:<36} {:>10}", "phase", "seconds");
    for (phase, took) in &phases {
        println!("{phase:<36} {:>10.1}", took.as_secs_f64());
    }
    // What an operator looks at next: the step timeline the conductor recorded, and the
    // dashboard.
    println!("\nthe node's step timeline, as the conductor recorded it:");
    let timeline = lab.cli("timeline", &["node", "history", "demo-node"])?;
    anyhow::ensure!(
        timeline.contains("deploy"),
        "the timeline has no deploy rows:\n{timeline}"
    );
    println!(
        "\ndashboard: {url}/ui/ (this node: {url}/ui/nodes/demo-node){}",
        if keep { "" } else { "; --keep keeps it up" },
        url = lab.url()
    );
    println!(
        "\nramdisk: kernel {:.1} MiB, initramfs {:.1} MiB; console, logs and disk under {}",
        lab.kernel_bytes as f64 / 1048576.0,
        lab.initramfs_bytes as f64 / 1048576.0,
        work.display()
    );
    if keep {
        println!(
            "\n--keep: everything stays up; try `FERRITE_URL={} target/debug/ferrite node list`. \
             Ctrl-C (or SIGTERM/SIGHUP) stops it all.",
            lab.url()
        );
        // The reaper thread stops everything and exits on a signal.
        loop {
            std::thread::park();
        }
    }
    Ok(())
}

fn print_inventory(lab: &Lab, uuid: &str) -> anyhow::Result<()> {
    let addr = lab.url().trim_start_matches("http://").parse()?;
    let (status, body) = ferrite_qemu_harness::http::call(
        addr,
        "GET",
        &format!("/v1/nodes/{uuid}/inventory"),
        None,
    )?;
    anyhow::ensure!(status == 200, "GET inventory: HTTP {status}: {body}");
    let v: Value = serde_json::from_str(&body)?;
    let inv = &v["inventory"];
    println!("\ninventory the agent reported (stored by the conductor):");
    println!(
        "  cpu:    {} x {}",
        inv["cpu"]["count"], inv["cpu"]["model_name"]
    );
    println!(
        "  memory: {} MiB",
        inv["memory"]["total"].as_u64().unwrap_or(0) >> 20
    );
    for nic in inv["interfaces"].as_array().into_iter().flatten() {
        println!("  nic:    {} {}", nic["name"], nic["mac_address"]);
    }
    for disk in inv["disks"].as_array().into_iter().flatten() {
        println!(
            "  disk:   {} {} GiB serial {}",
            disk["name"],
            disk["size"].as_u64().unwrap_or(0) >> 30,
            disk["serial"]
        );
    }
    println!(
        "  system: {} {} serial {}",
        inv["system_vendor"]["manufacturer"],
        inv["system_vendor"]["product_name"],
        inv["system_vendor"]["serial_number"]
    );
    Ok(())
}
