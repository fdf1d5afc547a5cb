//! OpenStack Ironic drives ferrite-agent unchanged (issue 21), in QEMU (TCG): the real
//! Ironic from PyPI (`target/ironic-venv`, made by `cargo xtask deps`) runs standalone
//! (all-in-one `ironic` process, noauth, SQLite, no message bus) with the `ipmi` hardware
//! type against the node's ipmi_sim BMC, its own `ipxe` boot interface (the node PXE-boots
//! Ironic's `boot.ipxe` and per-MAC scripts, served from Ironic's `http_root` by the test's
//! HTTP server) and the `direct` deploy interface, with `[agent] require_tls = True`. The
//! node boots the real Ferrite deploy ramdisk and goes enroll → manage → inspect (Ironic's
//! built-in `agent` inspect interface takes the agent's inventory: properties, port, the
//! stored inventory) → provide (automated cleaning through the agent) → deploy of the
//! project's whole-disk test image with a config drive Ironic builds → active, and the deployed OS prints its `FERRITE-DEPLOYED`
//! marker with the uuid Ironic put in the config drive. Once in BIOS mode (SeaBIOS, the
//! NIC's iPXE ROM runs Ironic's boot.ipxe) and once in UEFI mode (OVMF; Ironic sets the
//! boot device with IPMI's EFI flag, calls the agent's `image.install_bootloader`, and the
//! deployed OS boots from the NVRAM entry the agent wrote). OVMF cannot PXE-boot iPXE over
//! QEMU's user network, so for the UEFI node the harness runs Ironic's iPXE scripts itself
//! and hands the kernel and initrd they name to OVMF (`ferrite_qemu_harness::netboot`).
//!
//! Why `ipmi` and not `manual-management`: it is what production runs, Ironic powers the
//! node and sets its boot device (PXE for the ramdisk, disk afterwards) itself, and the
//! test only watches. Skipped with FERRITE_SKIP_VM_TESTS=1; also needs `ipmitool`,
//! `ipmi_sim`, `genisoimage` (Ironic builds the config drive with it) and QEMU.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrite_qemu_harness::http::{call_with_headers, HttpServer};
use ferrite_qemu_harness::{create_disk, free_tcp_port, DiskFormat, Node, VmBuilder, AGENT_PORT};
use ferrite_ramdisk_build::{RamdiskBuilder, TestImageBuilder};
use serde_json::{json, Value};

const MAC: &str = "52:54:00:fe:21:01";

/// Ironic's configuration: everything a standalone Ironic with this driver needs, and
/// every path under `state` (the defaults point at /var/lib/ironic, /tftpboot, /httpboot).
/// docs/ironic.md lists these settings and says which a real operator sets too.
fn ironic_conf(state: &Path, api_port: u16, http_port: u16, http_root: &Path) -> String {
    let s = state.display();
    let root = http_root.display();
    format!(
        "[DEFAULT]
debug = true
auth_strategy = noauth
rpc_transport = none
host = ferrite-test
state_path = {s}
enabled_hardware_types = ipmi
enabled_boot_interfaces = ipxe
enabled_deploy_interfaces = direct
enabled_power_interfaces = ipmitool
enabled_management_interfaces = ipmitool
enabled_inspect_interfaces = agent,no-inspect
enabled_network_interfaces = noop
enabled_console_interfaces = no-console
enabled_raid_interfaces = no-raid
enabled_rescue_interfaces = no-rescue
enabled_bios_interfaces = no-bios
enabled_vendor_interfaces = no-vendor
enabled_firmware_interfaces = no-firmware
default_network_interface = noop
[database]
connection = sqlite:///{s}/ironic.sqlite
[api]
host_ip = 127.0.0.1
port = {api_port}
api_workers = 1
[conductor]
automated_clean = true
[deploy]
http_url = http://10.0.2.2:{http_port}
http_root = {root}
iso_master_path = {s}/master_iso_images
[agent]
require_tls = true
certificates_path = {s}/certificates
deploy_logs_local_path = {s}/deploy-logs
[pxe]
images_path = {s}/images
instance_master_path = {s}/master_images
tftp_root = {s}/tftpboot
tftp_master_path = {s}/tftpboot/master_images
[dhcp]
dhcp_provider = none
[service_catalog]
endpoint_override = http://10.0.2.2:{api_port}
[inspector]
hooks = $default_hooks,memory,cpus,root-device
[oslo_concurrency]
lock_path = {s}/locks
"
    )
}

/// A standalone Ironic in its own process group; the whole group is stopped on drop.
struct Ironic {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Ironic {
    fn start(state: &Path, http_port: u16, http_root: &Path) -> Ironic {
        let bin = ferrite_tests::target_dir().join("ironic-venv/bin");
        assert!(
            bin.join("ironic").exists(),
            "{} is missing: run `cargo xtask deps` (it makes target/ironic-venv with \
             OpenStack Ironic from PyPI)",
            bin.join("ironic").display()
        );
        for d in ["locks", "certificates", "deploy-logs", "images", "tftpboot"] {
            std::fs::create_dir_all(state.join(d)).unwrap();
        }
        let port = free_tcp_port().unwrap();
        let conf = state.join("ironic.conf");
        std::fs::write(&conf, ironic_conf(state, port, http_port, http_root)).unwrap();
        let out = Command::new(bin.join("ironic-dbsync"))
            .arg("--config-file")
            .arg(&conf)
            .arg("create_schema")
            .output()
            .expect("running ironic-dbsync");
        assert!(
            out.status.success(),
            "ironic-dbsync create_schema failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = state.join("ironic.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin.join("ironic"));
        cmd.arg("--config-file")
            .arg(&conf)
            // ipmitool, qemu-img and genisoimage are found on PATH; the venv's own tools too.
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            // QEMU's user network shows the host to the node as 10.0.2.2, an address the
            // host itself does not have; Ironic checks the URLs it hands the agent
            // (`http_url`, the image) from the host, so it goes through the test's HTTP
            // server as a proxy, which serves those URLs from the same files.
            .env("http_proxy", format!("http://127.0.0.1:{http_port}"))
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        // Its own process group, so that the guard also stops the ipmitool and qemu-img
        // children Ironic may have running.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let ironic = Ironic {
            child: cmd.spawn().expect("starting ironic"),
            addr: ([127, 0, 0, 1], port).into(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while ironic.get("/v1/").is_err() {
            assert!(
                Instant::now() < deadline,
                "Ironic did not answer on {} in 90 s; its log:\n{}",
                ironic.addr,
                ironic.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        ironic
    }

    fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        ferrite_qemu_harness::console::tail_lines(&log, n)
    }

    /// One API call at the newest microversion; the status and the parsed body.
    fn api(&self, method: &str, path: &str, body: Option<Value>) -> std::io::Result<(u16, Value)> {
        let body = body.map(|b| b.to_string());
        let (status, text) = call_with_headers(
            self.addr,
            method,
            path,
            &[("X-OpenStack-Ironic-API-Version", "latest")],
            body.as_deref(),
        )?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    fn get(&self, path: &str) -> std::io::Result<Value> {
        match self.api("GET", path, None)? {
            (200, v) => Ok(v),
            (status, v) => Err(std::io::Error::other(format!("GET {path}: {status} {v}"))),
        }
    }

    /// A call that must succeed (2xx); its body.
    fn must(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, v) = self
            .api(method, path, Some(body))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }
}

impl Drop for Ironic {
    fn drop(&mut self) {
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group this test created; no memory is involved.
        unsafe {
            libc::kill(-group, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above; whatever of the group is left is killed.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Polls the node until it reaches `want` with nothing pending; panics on a failure state
/// or at the deadline, with Ironic's last error, its log and the console.
fn wait_state(ironic: &Ironic, node: &Node, uuid: &str, want: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let n = ironic.get(&format!("/v1/nodes/{uuid}")).unwrap();
        let state = n["provision_state"].as_str().unwrap_or("?");
        if state == want && n["target_provision_state"].is_null() && n["reservation"].is_null() {
            return n;
        }
        if state.ends_with("failed") || Instant::now() > deadline {
            panic!(
                "waiting for {want}: node is {state} (target {}), last_error {}\n\
                 Ironic log:\n{}\nconsole:\n{}",
                n["target_provision_state"],
                n["last_error"],
                ironic.log_tail(60),
                node.console().tail(40)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn provision(ironic: &Ironic, uuid: &str, body: Value) {
    ironic.must("PUT", &format!("/v1/nodes/{uuid}/states/provision"), body);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bios,
    Uefi,
}

#[test]
fn ironic_cleans_and_deploys_through_ferrite_agent_bios_tls() {
    ironic_walk(Mode::Bios);
}

#[test]
fn ironic_cleans_and_deploys_through_ferrite_agent_uefi_tls() {
    ironic_walk(Mode::Uefi);
}

fn ironic_walk(mode: Mode) {
    if ferrite_tests::skip_vm_tests() {
        return;
    }
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let cache = ferrite_tests::target_dir().join("ramdisk-cache");

    // The deploy ramdisk and the test OS image, both served over HTTP by the test; Ironic
    // uses the same directory as its http_root.
    let www = tmp.path().join("www");
    let boot = tmp.path().join("ramdisk");
    std::fs::create_dir_all(&www).unwrap();
    let manifest = RamdiskBuilder::new(ferrite_tests::guest::static_agent(), &boot)
        .cache_dir(&cache)
        .build()
        .expect("building the ramdisk");
    std::fs::copy(boot.join(&manifest.kernel.file), www.join("ferrite.kernel")).unwrap();
    std::fs::copy(
        boot.join(&manifest.initramfs.file),
        www.join("ferrite.initramfs"),
    )
    .unwrap();
    let image = TestImageBuilder::new(tmp.path().join("image"))
        .cache_dir(&cache)
        .build()
        .expect("building the test image");
    std::fs::copy(&image.qcow2, www.join("os.qcow2")).unwrap();
    let server = HttpServer::start(&www).unwrap();
    let host_http = format!("http://127.0.0.1:{}", server.port());

    // A powered-off node behind its BMC; it PXE-boots whatever Ironic's boot.ipxe says.
    let disk = tmp.path().join("disk0.raw");
    create_disk(&disk, 5 << 30).unwrap();
    let agent_port = free_tcp_port().unwrap();
    let boot_script = format!("http://10.0.2.2:{}/boot.ipxe", server.port());
    let vm = VmBuilder::new("ironic-node")
        .dir(tmp.path().join("node"))
        .disk(&disk, DiskFormat::Raw, "IRONIC-DISK-1")
        .smbios("Ferrite", "QEMU bare-metal node", "IRONIC-NODE-1")
        .nic(MAC)
        .hostfwd(agent_port, AGENT_PORT);
    let vm = match mode {
        Mode::Bios => vm.memory_mib(256).pxe_bootfile(&boot_script),
        // OVMF itself takes a good part of 256 MiB.
        Mode::Uefi => vm.memory_mib(512).uefi().uefi_netboot(&boot_script),
    };
    let mut node = vm.start_with_bmc().unwrap();
    let boot_mode = match mode {
        Mode::Bios => "bios",
        Mode::Uefi => "uefi",
    };

    let ironic = Ironic::start(&tmp.path().join("ironic"), server.port(), &www);
    let ready = started.elapsed();

    // Enroll, as an operator would with `baremetal node create`.
    let bmc = node.bmc_addr();
    let created = ironic.must(
        "POST",
        "/v1/nodes",
        json!({
            "name": "ferrite-node-1",
            "driver": "ipmi",
            "boot_interface": "ipxe",
            "deploy_interface": "direct",
            "inspect_interface": "agent",
            "properties": {
                "cpu_arch": "x86_64",
                "capabilities": format!("boot_mode:{boot_mode}"),
            },
            "driver_info": {
                "ipmi_address": "127.0.0.1",
                "ipmi_port": bmc.port(),
                "ipmi_username": node.bmc_username(),
                "ipmi_password": node.bmc_password(),
                "ipmi_cipher_suite": 3,
                "deploy_kernel": format!("{host_http}/ferrite.kernel"),
                "deploy_ramdisk": format!("{host_http}/ferrite.initramfs"),
                // The agent is reached through QEMU's port forward on the host.
                "kernel_append_params": format!(
                    "console=ttyS0 ipa-advertise-host=127.0.0.1 ipa-advertise-port={agent_port}"
                ),
            },
        }),
    );
    assert_eq!(created["provision_state"], "enroll", "{created}");
    let uuid = created["uuid"].as_str().unwrap().to_string();
    ironic.must(
        "POST",
        "/v1/ports",
        json!({"address": MAC, "node_uuid": uuid}),
    );

    provision(&ironic, &uuid, json!({"target": "manage"}));
    let n = wait_state(&ironic, &node, &uuid, "manageable", Duration::from_secs(60));
    assert_eq!(n["power_state"], "power off", "{n}");

    // inspect: Ironic's own `agent` inspect interface boots the ramdisk, which posts its
    // inventory to Ironic's /v1/continue_inspection; Ironic's hooks set the properties.
    let t = Instant::now();
    provision(&ironic, &uuid, json!({"target": "inspect"}));
    let n = wait_state(
        &ironic,
        &node,
        &uuid,
        "manageable",
        Duration::from_secs(240),
    );
    let inspection = t.elapsed();
    let props = &n["properties"];
    assert_eq!(props["cpu_arch"], "x86_64", "{props}");
    assert_eq!(props["cpus"], 1, "{props}");
    let ram = match mode {
        Mode::Bios => 200..=256,
        Mode::Uefi => 400..=512,
    };
    assert!(
        props["memory_mb"]
            .as_u64()
            .is_some_and(|m| ram.contains(&m)),
        "memory of a {} MiB guest: {props}",
        ram.end()
    );
    // 5 GiB disk: Ironic's root-device hook stores the size minus 1 GiB, in GiB.
    assert_eq!(props["local_gb"], 4, "{props}");
    assert_eq!(
        n["power_state"], "power off",
        "inspection ends powered off: {n}"
    );
    let ports = ironic
        .get(&format!("/v1/ports?node_uuid={uuid}&detail=True"))
        .unwrap();
    let ports = ports["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["address"], MAC);
    assert_eq!(ports[0]["pxe_enabled"], true, "{:?}", ports[0]);
    let data = ironic
        .get(&format!("/v1/nodes/{uuid}/inventory"))
        .expect("Ironic keeps the inventory it was sent");
    assert_eq!(
        data["inventory"]["disks"][0]["serial"], "IRONIC-DISK-1",
        "{}",
        data["inventory"]["disks"]
    );

    // provide: automated cleaning boots the ramdisk and runs the agent's clean steps.
    let t = Instant::now();
    provision(&ironic, &uuid, json!({"target": "provide"}));
    let n = wait_state(&ironic, &node, &uuid, "available", Duration::from_secs(240));
    let cleaning = t.elapsed();
    assert_eq!(
        n["power_state"], "power off",
        "cleaning ends powered off: {n}"
    );
    assert!(
        ironic_log(&ironic).contains("erase_devices_metadata"),
        "Ironic ran no in-band clean step"
    );

    // Deploy the whole-disk image with a config drive Ironic builds (it adds the uuid).
    let sha256 = image.qcow2_sha256.clone();
    ironic.must(
        "PATCH",
        &format!("/v1/nodes/{uuid}"),
        json!([
            {"op": "add", "path": "/instance_info/image_source",
             "value": format!("http://10.0.2.2:{}/os.qcow2", server.port())},
            {"op": "add", "path": "/instance_info/image_os_hash_algo", "value": "sha256"},
            {"op": "add", "path": "/instance_info/image_os_hash_value", "value": sha256},
            {"op": "add", "path": "/instance_info/image_disk_format", "value": "qcow2"},
        ]),
    );
    node.skip_console();
    let t = Instant::now();
    provision(
        &ironic,
        &uuid,
        json!({"target": "active", "configdrive": {"meta_data": {"hostname": "deployed-by-ironic"}}}),
    );
    let n = wait_state(&ironic, &node, &uuid, "active", Duration::from_secs(240));
    let deploy = t.elapsed();
    assert_eq!(n["power_state"], "power on", "{n}");
    assert!(n["last_error"].is_null(), "{n}");
    let marker = node
        .wait_for("FERRITE-DEPLOYED", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}\nIronic log:\n{}", ironic.log_tail(40)));
    assert_eq!(
        marker.trim(),
        format!("FERRITE-DEPLOYED uuid={uuid} hostname=deployed-by-ironic")
    );
    let chassis = node.chassis_log();
    assert!(
        chassis.contains("set boot pxe") && chassis.contains("set power 1"),
        "Ironic set the boot device and powered the node over IPMI: {chassis}"
    );
    if mode == Mode::Uefi {
        // Ironic asked the agent to make the written disk boot in UEFI mode, and the agent
        // answered with the NVRAM entry it set first (the OS above booted from it: the
        // harness gives a disk boot no kernel).
        let log = ironic_log(&ironic);
        assert!(
            log.contains("install_bootloader"),
            "Ironic did not call image.install_bootloader"
        );
        let agent_log = node.console().contents();
        assert!(
            agent_log.contains("UEFI boot entry set first"),
            "the agent set no UEFI boot entry; console:\n{}",
            node.console().tail(60)
        );
    }
    // TLS: the agent advertised an https callback with its certificate, Ironic stored the
    // certificate (its client verifies the agent with it) and never refused the callback
    // (`require_tls` rejects any http:// callback).
    let log = ironic_log(&ironic);
    assert!(
        log.contains(&format!("Saved the custom certificate for node {uuid}")),
        "Ironic did not store the agent's certificate"
    );
    assert!(
        !log.contains("Rejecting callback_url"),
        "a plain-http callback"
    );
    let cert = tmp.path().join(format!("ironic/certificates/{uuid}.crt"));
    let pem = std::fs::read_to_string(&cert).unwrap_or_default();
    assert!(
        pem.contains("BEGIN CERTIFICATE"),
        "{}: {pem}",
        cert.display()
    );
    assert!(
        node.console()
            .contents()
            .contains(&format!("callback=https://127.0.0.1:{agent_port}")),
        "the agent did not advertise an https callback"
    );
    eprintln!(
        "ironic_drives_agent_vm ({boot_mode}): setup {ready:?}, inspection {inspection:?}, cleaning \
         {cleaning:?}, deploy to active {deploy:?}, total {:?}",
        started.elapsed()
    );
    drop(ironic);
    drop(node);
    drop(server);
}

fn ironic_log(ironic: &Ironic) -> String {
    std::fs::read_to_string(&ironic.log).unwrap_or_default()
}
