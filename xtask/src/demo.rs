//! `cargo xtask demo`: one QEMU "server" with an ipmi_sim BMC is powered on over IPMI,
//! PXE-boots the Ferrite ramdisk, reports its inventory, gets the test OS image written
//! with a config drive, and boots it to the `FERRITE-DEPLOYED` marker.
//!
//! Today the walk drives the agent over its API directly (`ferrite_qemu_harness::walk`);
//! the conductor-driven version (enroll → manage → inspect → provide → deploy through the
//! `ferrite` CLI) needs the conductor's iPXE boot interface, which has not landed yet.

use crate::util;

pub fn run() -> anyhow::Result<()> {
    crate::deps::install()?;
    util::step("static agent");
    let agent = crate::build_agent()?;
    util::step("BMC chassis program (ferrite-qemu-harness)");
    util::cargo(&[
        "build",
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
    let mut cfg = ferrite_qemu_harness::walk::WalkConfig::new(
        agent,
        target.join("ramdisk-cache"),
        work.clone(),
    );
    cfg.hostname = "demo-node".into();
    cfg.chassis_program = Some(target.join("debug/ferrite-qemu-harness"));
    util::step("deploy walk (QEMU under TCG: expect about a minute or two)");
    let report = ferrite_qemu_harness::walk::run(&cfg)?;

    let inv = &report.inventory;
    println!("\ninventory reported by the agent:");
    println!("  cpus:   {}", inv["cpu"]["count"]);
    println!("  memory: {} bytes", inv["memory"]["total"]);
    for nic in inv["interfaces"].as_array().into_iter().flatten() {
        println!("  nic:    {} {}", nic["name"], nic["mac_address"]);
    }
    for disk in inv["disks"].as_array().into_iter().flatten() {
        println!(
            "  disk:   {} {} bytes serial {}",
            disk["name"], disk["size"], disk["serial"]
        );
    }
    let Some(marker) = &report.marker else {
        anyhow::bail!("the deploy failed: {}", report.deploy);
    };
    println!("\ndeployed OS says: {marker}");
    println!("\n{:<40} {:>10}", "phase", "seconds");
    for (phase, took) in &report.phases {
        println!("{phase:<40} {:>10.1}", took.as_secs_f64());
    }
    println!("\nconsole and images are under {}", work.display());
    Ok(())
}
