//! The deploy walk without a conductor, as the end-to-end tests and `cargo xtask bench e2e`
//! run it: a node behind its BMC PXE-boots the real ramdisk, the agent posts its inventory
//! and looks itself up (a stand-in hands out a token), is told over its API to write the test
//! OS image with a config drive, and the BMC boots the disk until the OS prints its marker.
//! With [`WalkConfig::uefi_virtual_media`] the node has UEFI firmware and boots the ramdisk
//! from a virtual CD (the boot ISO a conductor builds for virtual media), and the agent's
//! `image.install_bootloader` sets the NVRAM boot entry the firmware then boots from.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferrite_ramdisk_build::{test_image, RamdiskBuilder, TestImageBuilder};
use serde_json::{json, Value};

use crate::http::{self, HttpServer};
use crate::spec::DiskFormat;
use crate::vm::{create_disk, free_tcp_port, Node, VmBuilder, AGENT_PORT};
use crate::Error;

/// What to build and boot.
#[derive(Debug, Clone)]
pub struct WalkConfig {
    /// The static agent (`target/agent/ferrite-agent`).
    pub agent: PathBuf,
    /// Download cache of the pinned Debian packages.
    pub cache_dir: PathBuf,
    /// Everything else goes here (boot files, images, the node's disk and console).
    pub work_dir: PathBuf,
    pub memory_mib: u32,
    pub disk_gib: u64,
    pub mac: String,
    pub disk_serial: String,
    pub node_serial: String,
    /// Written into the config drive's meta_data.json.
    pub uuid: String,
    pub hostname: String,
    /// Replaces the image's real sha256 (to provoke a checksum failure).
    pub wrong_checksum: Option<String>,
    /// The BMC's chassis program (default: see [`VmBuilder::chassis_program`]).
    pub chassis_program: Option<PathBuf>,
    /// After the deployed OS is up, PXE-boot the ramdisk again and run the clean step
    /// `erase_devices_metadata` (what undeploy → cleaning does).
    pub clean_after: bool,
    /// UEFI firmware (OVMF) and the ramdisk from a boot ISO in the virtual CD instead of PXE;
    /// after the write, `image.install_bootloader` (see the module docs).
    pub uefi_virtual_media: bool,
    /// After the write, the agent kexecs into the deployed OS (`ferrite.kexec`) instead of
    /// the BMC power-cycling the node through its firmware.
    pub kexec: bool,
    /// Deploy the partition test image (`image_type: partition`, laid out for the node's
    /// firmware) and have `image.install_bootloader` install its boot loader, with the
    /// root and ESP UUIDs the write reported, as Ironic passes them.
    pub partition_image: bool,
}

impl WalkConfig {
    pub fn new(agent: PathBuf, cache_dir: PathBuf, work_dir: PathBuf) -> WalkConfig {
        WalkConfig {
            agent,
            cache_dir,
            work_dir,
            memory_mib: 256,
            disk_gib: 5,
            mac: "52:54:00:fe:00:01".into(),
            disk_serial: "FERRITE-DISK-0".into(),
            node_serial: "FERRITE-NODE-0".into(),
            uuid: "00000000-0000-4000-8000-000000000001".into(),
            hostname: "ferrite-node-0".into(),
            wrong_checksum: None,
            chassis_program: None,
            clean_after: false,
            uefi_virtual_media: false,
            kexec: false,
            partition_image: false,
        }
    }
}

/// What happened, with the time each phase took.
#[derive(Debug)]
pub struct WalkReport {
    pub phases: Vec<(&'static str, Duration)>,
    pub kernel_bytes: u64,
    pub initramfs_bytes: u64,
    /// The `inventory` the agent posted to the inspection callback.
    pub inventory: Value,
    /// The first `GET /v1/lookup?…` target.
    pub lookup: String,
    /// The final `standby.prepare_image` result (`command_status`, `command_error`, …).
    pub deploy: Value,
    /// The deployed OS's `FERRITE-DEPLOYED …` line; None when the deploy failed.
    pub marker: Option<String>,
    /// The `erase_devices_metadata` result when [`WalkConfig::clean_after`] was set.
    pub cleaned: Option<Value>,
    /// The `image.install_bootloader` result of a [`WalkConfig::uefi_virtual_media`] or
    /// [`WalkConfig::partition_image`] walk.
    pub bootloader: Option<Value>,
    /// The node's disk image (for inspecting what the agent left on it).
    pub disk: PathBuf,
    /// The node, still up (powered on or off), for further checks; dropping it stops all.
    pub node: Node,
}

/// The agent token the walk's stand-in conductor hands out at lookup.
const WALK_TOKEN: &str = "ferrite-walk-token-0123456789abcdef";

fn fail(phase: &str, why: impl std::fmt::Display, node: Option<&Node>) -> Error {
    Error::Walk {
        phase: phase.into(),
        why: why.to_string(),
        console_tail: node.map(|n| n.console().tail(30)).unwrap_or_default(),
    }
}

fn poll<T>(
    phase: &str,
    timeout: Duration,
    node: &Node,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if node.console().contents().contains("ferrite-agent exited") {
            return Err(fail(phase, "the agent exited", Some(node)));
        }
        if Instant::now() >= deadline {
            return Err(fail(
                phase,
                format!("nothing after {timeout:?}"),
                Some(node),
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the walk; see the module docs.
pub fn run(cfg: &WalkConfig) -> Result<WalkReport, Error> {
    let www = cfg.work_dir.join("www");
    let manifest = RamdiskBuilder::new(&cfg.agent, &www)
        .cache_dir(&cfg.cache_dir)
        .build()
        .map_err(|e| fail("building the ramdisk", e, None))?;
    let image = TestImageBuilder::new(cfg.work_dir.join("image"))
        .cache_dir(&cfg.cache_dir)
        .build()
        .map_err(|e| fail("building the test image", e, None))?;
    let io = |what: &str, e: std::io::Error| fail(what, e, None);
    std::fs::copy(&image.qcow2, www.join("os.qcow2")).map_err(|e| io("serving the image", e))?;
    std::fs::copy(&image.partition, www.join("os-root.img"))
        .map_err(|e| io("serving the partition image", e))?;
    let meta = json!({"uuid": cfg.uuid, "hostname": cfg.hostname, "name": cfg.hostname});
    test_image::config_drive_image(&www.join("configdrive.vfat"), &meta.to_string())
        .map_err(|e| fail("building the config drive", e, None))?;

    let server = HttpServer::start(&www)?;
    let base = format!("http://10.0.2.2:{}", server.port());
    let cmdline = format!(
        "console=ttyS0 quiet ipa-api-url={base} \
         ipa-inspection-callback-url={base}/v1/continue_inspection ferrite-auto-tls=0"
    );
    std::fs::write(
        www.join("boot.ipxe"),
        format!(
            "#!ipxe\nkernel {base}/{} {cmdline}\ninitrd {base}/{}\nboot\n",
            manifest.kernel.file, manifest.initramfs.file
        ),
    )
    .map_err(|e| io("writing boot.ipxe", e))?;
    let iso = cfg.work_dir.join("deploy.iso");
    if cfg.uefi_virtual_media {
        ferrite_netboot::iso::build(
            &ferrite_netboot::iso::BootIso {
                kernel: &www.join(&manifest.kernel.file),
                ramdisk: &www.join(&manifest.initramfs.file),
                cmdline: &cmdline,
                label: "FERRITE-DEPLOY",
            },
            &cfg.work_dir,
            &iso,
        )
        .map_err(|e| fail("building the boot ISO", e, None))?;
    }
    server.reply("/v1/continue_inspection", 202, r#"{"uuid": "walk"}"#);
    // The agent serves its API only after a lookup handed it a token: the stand-in hands
    // out WALK_TOKEN and accepts heartbeats.
    let lookup = json!({
        "node": {"uuid": cfg.uuid, "properties": {}, "instance_info": {}, "driver_internal_info": {}},
        "config": {"agent_token": WALK_TOKEN, "heartbeat_timeout": 300},
    });
    server.reply("/v1/lookup", 200, &lookup.to_string());
    server.reply(&format!("/v1/heartbeat/{}", cfg.uuid), 202, "");

    let disk = cfg.work_dir.join("disk0.raw");
    create_disk(&disk, cfg.disk_gib << 30)?;
    let agent_port = free_tcp_port()?;
    let mut builder = VmBuilder::new("walk-node")
        .memory_mib(cfg.memory_mib)
        .dir(cfg.work_dir.join("node"))
        .disk(&disk, DiskFormat::Raw, &cfg.disk_serial)
        .smbios("Ferrite", "QEMU bare-metal node", &cfg.node_serial)
        .nic(&cfg.mac)
        .hostfwd(agent_port, AGENT_PORT);
    let ramdisk_boot = if cfg.uefi_virtual_media {
        builder = builder.uefi().cdrom(&iso);
        "cdrom"
    } else {
        builder = builder.pxe_bootfile(&format!("{base}/boot.ipxe"));
        "pxe"
    };
    if let Some(p) = &cfg.chassis_program {
        builder = builder.chassis_program(p);
    }
    let mut node = builder.start_with_bmc()?;
    let mut phases = vec![];

    node.ipmitool(&["chassis", "bootdev", ramdisk_boot])?;
    let t0 = Instant::now();
    node.ipmitool(&["power", "on"])?;
    node.wait_for(
        "ferrite-ramdisk: starting ferrite-agent",
        Duration::from_secs(120),
    )
    .map_err(|e| fail("boot of the ramdisk", e, None))?;
    phases.push(("power on -> agent started", t0.elapsed()));
    let lookup = poll("first lookup", Duration::from_secs(60), &node, || {
        server
            .requests()
            .into_iter()
            .find(|r| r.target.starts_with("/v1/lookup"))
            .map(|r| r.target)
    })?;
    phases.push(("power on -> first lookup", t0.elapsed()));
    let inventory = server
        .requests()
        .into_iter()
        .find(|r| r.target == "/v1/continue_inspection")
        .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|v| v["inventory"].clone())
        .ok_or_else(|| fail("inspection", "no inventory was posted", Some(&node)))?;

    let agent = std::net::SocketAddr::from(([127, 0, 0, 1], agent_port));
    let boot_mode = if cfg.uefi_virtual_media {
        "uefi"
    } else {
        "bios"
    };
    let image_info = if cfg.partition_image {
        json!({
            "id": "ferrite-test-os-partition",
            "urls": [format!("{base}/os-root.img")],
            "disk_format": "raw",
            "image_type": "partition",
            "os_hash_algo": "sha256",
            "os_hash_value": cfg.wrong_checksum.clone().unwrap_or(image.partition_sha256.clone()),
            "deploy_boot_mode": boot_mode,
            "boot_option": "local",
        })
    } else {
        json!({
            "id": "ferrite-test-os",
            "urls": [format!("{base}/os.qcow2")],
            "disk_format": "qcow2",
            "image_type": "whole-disk",
            "os_hash_algo": "sha256",
            "os_hash_value": cfg.wrong_checksum.clone().unwrap_or(image.qcow2_sha256.clone()),
        })
    };
    let command = json!({
        "name": "standby.prepare_image",
        "params": {
            "image_info": image_info,
            "configdrive": format!("{base}/configdrive.vfat"),
        }
    });
    // The API opens just after the lookup; QEMU's port forward resets until it does.
    poll("agent API up", Duration::from_secs(60), &node, || {
        http::call(agent, "GET", "/v1/status", None)
            .ok()
            .filter(|(s, _)| *s == 200)
    })?;
    let t1 = Instant::now();
    let (status, body) = http::call(
        agent,
        "POST",
        &format!("/v1/commands/?wait=false&agent_token={WALK_TOKEN}"),
        Some(&command.to_string()),
    )
    .map_err(|e| fail("asking the agent to write the image", e, Some(&node)))?;
    if !(200..300).contains(&status) {
        return Err(fail(
            "asking the agent to write the image",
            format!("HTTP {status}: {body}"),
            Some(&node),
        ));
    }
    let id = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(String::from))
        .ok_or_else(|| {
            fail(
                "asking the agent to write the image",
                format!("no command id in {body}"),
                Some(&node),
            )
        })?;
    let deploy = poll("image write", Duration::from_secs(300), &node, || {
        let (s, b) = http::call(
            agent,
            "GET",
            &format!("/v1/commands/{id}?agent_token={WALK_TOKEN}"),
            None,
        )
        .ok()?;
        let v: Value = serde_json::from_str(&b).ok()?;
        (s == 200 && v["command_status"] != "RUNNING").then_some(v)
    })?;
    phases.push(("image write (agent command)", t1.elapsed()));
    if deploy["command_status"] != "SUCCEEDED" {
        return Ok(WalkReport {
            phases,
            kernel_bytes: manifest.kernel.bytes,
            initramfs_bytes: manifest.initramfs.bytes,
            inventory,
            lookup,
            deploy,
            marker: None,
            cleaned: None,
            bootloader: None,
            disk,
            node,
        });
    }
    let mut bootloader = None;
    if cfg.uefi_virtual_media || cfg.partition_image {
        // Ironic reads the UUIDs from prepare_image's message.
        let message = deploy["command_result"]["result"].as_str().unwrap_or("");
        let word = |key: &str| {
            message
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(|w| w.trim_end_matches([';', ',']).to_string())
        };
        let mut params = json!({"target_boot_mode": boot_mode});
        if cfg.partition_image {
            params["root_uuid"] = json!(word("root_uuid="));
            params["efi_system_part_uuid"] = json!(word("efi_system_partition_uuid="));
        }
        let command = json!({
            "name": "image.install_bootloader",
            "params": params,
        });
        let t = Instant::now();
        bootloader = Some(agent_command(&node, agent, "install_bootloader", &command)?);
        phases.push(("install_bootloader", t.elapsed()));
    }

    node.ipmitool(&["chassis", "bootdev", "disk"])?;
    let t2 = Instant::now();
    let marker = if cfg.kexec {
        // The agent answers, then jumps: its command never reports done.
        let (status, body) = http::call(
            agent,
            "POST",
            &format!("/v1/commands/?wait=false&agent_token={WALK_TOKEN}"),
            Some(&json!({"name": "ferrite.kexec", "params": {}}).to_string()),
        )
        .map_err(|e| fail("asking the agent to kexec", e, Some(&node)))?;
        if !(200..300).contains(&status) {
            return Err(fail(
                "asking the agent to kexec",
                format!("HTTP {status}: {body}"),
                Some(&node),
            ));
        }
        let m = node
            .wait_for("FERRITE-DEPLOYED", Duration::from_secs(180))
            .map_err(|e| fail("kexec into the deployed OS", e, None))?;
        phases.push(("kexec -> deployed OS marker", t2.elapsed()));
        m
    } else {
        node.ipmitool(&["power", "off"])?;
        node.ipmitool(&["power", "on"])?;
        let m = node
            .wait_for("FERRITE-DEPLOYED", Duration::from_secs(180))
            .map_err(|e| fail("booting the deployed disk", e, None))?;
        phases.push(("power on -> deployed OS marker", t2.elapsed()));
        m
    };
    phases.push(("total", t0.elapsed()));

    let mut cleaned = None;
    if cfg.clean_after {
        let lookups = |s: &HttpServer| {
            s.requests()
                .iter()
                .filter(|r| r.target.starts_with("/v1/lookup"))
                .count()
        };
        let before = lookups(&server);
        node.ipmitool(&["chassis", "bootdev", ramdisk_boot])?;
        node.ipmitool(&["power", "off"])?;
        let t3 = Instant::now();
        node.ipmitool(&["power", "on"])?;
        poll(
            "ramdisk boot for cleaning",
            Duration::from_secs(120),
            &node,
            || (lookups(&server) > before).then_some(()),
        )?;
        phases.push(("power on -> first lookup (cleaning boot)", t3.elapsed()));
        let step = json!({
            "name": "clean.execute_clean_step",
            "params": {
                "step": {"interface": "deploy", "step": "erase_devices_metadata", "args": {}},
                "node": {},
                "ports": [],
            }
        });
        let t4 = Instant::now();
        cleaned = Some(agent_command(
            &node,
            agent,
            "erase_devices_metadata",
            &step,
        )?);
        phases.push(("erase_devices_metadata", t4.elapsed()));
    }
    Ok(WalkReport {
        phases,
        kernel_bytes: manifest.kernel.bytes,
        initramfs_bytes: manifest.initramfs.bytes,
        inventory,
        lookup,
        deploy,
        marker: Some(marker),
        cleaned,
        bootloader,
        disk,
        node,
    })
}

/// Posts an asynchronous agent command and polls it until it is no longer RUNNING.
fn agent_command(
    node: &Node,
    agent: std::net::SocketAddr,
    phase: &str,
    command: &Value,
) -> Result<Value, Error> {
    poll(phase, Duration::from_secs(60), node, || {
        http::call(agent, "GET", "/v1/status", None)
            .ok()
            .filter(|(s, _)| *s == 200)
    })?;
    let (status, body) = http::call(
        agent,
        "POST",
        &format!("/v1/commands/?wait=false&agent_token={WALK_TOKEN}"),
        Some(&command.to_string()),
    )
    .map_err(|e| fail(phase, e, Some(node)))?;
    if !(200..300).contains(&status) {
        return Err(fail(phase, format!("HTTP {status}: {body}"), Some(node)));
    }
    let id = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(String::from))
        .ok_or_else(|| fail(phase, format!("no command id in {body}"), Some(node)))?;
    poll(phase, Duration::from_secs(300), node, || {
        let (s, b) = http::call(
            agent,
            "GET",
            &format!("/v1/commands/{id}?agent_token={WALK_TOKEN}"),
            None,
        )
        .ok()?;
        let v: Value = serde_json::from_str(&b).ok()?;
        (s == 200 && v["command_status"] != "RUNNING").then_some(v)
    })
}
