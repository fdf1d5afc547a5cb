//! The conductor-driven lab, as `cargo xtask demo` and the e2e tests use it: a real
//! `ferrite conductor` (SQLite in the work directory, iPXE boot files served at `/boot/`), an
//! HTTP server with the test OS image and its config drive, and one QEMU node: behind an
//! ipmi_sim BMC ([`Lab::start`]), or a UEFI libvirt domain behind sushy-emulator as its
//! Redfish BMC ([`Lab::start_redfish`]). Everything after start goes through the `ferrite`
//! CLI, as an operator would type it; every child process is stopped when the lab is
//! dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrite_ramdisk_build::{test_image, RamdiskBuilder, TestImageBuilder};
use serde_json::{json, Value};

use crate::http::HttpServer;
use crate::libvirt::{DomainSpec, RedfishNode};
use crate::spec::DiskFormat;
use crate::vm::{create_disk, free_tcp_port, Node, VmBuilder, AGENT_PORT};
use crate::Error;

/// The partition test image's name on the image server.
const PARTITION_IMAGE: &str = "os-root.img";

/// What to build and boot.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// The static agent (`target/agent/ferrite-agent`).
    pub agent: PathBuf,
    /// The `ferrite` binary (conductor and CLI).
    pub ferrite: PathBuf,
    /// Download cache of the pinned Debian packages.
    pub cache_dir: PathBuf,
    /// Everything else goes here (database, boot files, images, disk, console, logs).
    pub work_dir: PathBuf,
    pub memory_mib: u32,
    pub disk_gib: u64,
    pub mac: String,
    pub disk_serial: String,
    pub node_serial: String,
    pub node_name: String,
    /// Echo each `ferrite …` command and the `--wait` progress on stderr (the demo does).
    pub echo: bool,
    /// `direct` (the agent downloads the image) or `iscsi` (the conductor writes it
    /// through the agent's iSCSI target, forwarded from a host port; image and config
    /// drive URLs then point at the host's loopback, where the conductor reads them).
    pub deploy_interface: String,
    /// UEFI firmware (OVMF) for the ipmi node, enrolled with `capabilities=boot_mode:uefi`;
    /// its network boot runs the conductor's iPXE scripts through [`crate::netboot`].
    pub uefi: bool,
}

impl LabConfig {
    pub fn new(agent: PathBuf, ferrite: PathBuf, cache_dir: PathBuf, work_dir: PathBuf) -> Self {
        LabConfig {
            agent,
            ferrite,
            cache_dir,
            work_dir,
            memory_mib: 256,
            disk_gib: 5,
            mac: "52:54:00:fe:00:01".into(),
            disk_serial: "FERRITE-DISK-0".into(),
            node_serial: "FERRITE-NODE-0".into(),
            node_name: "node-0".into(),
            echo: false,
            deploy_interface: "direct".into(),
            uefi: false,
        }
    }
}

/// A child process killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SIGTERM first so the conductor shuts down cleanly; then make sure.
        term(self.0.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the lab needs of its node: the serial console.
pub trait LabNode {
    fn console(&self) -> &crate::Console;
    /// Waits for `pattern` on the console after the previous match.
    fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String, Error>;
}

impl LabNode for Node {
    fn console(&self) -> &crate::Console {
        Node::console(self)
    }
    fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String, Error> {
        Node::wait_for(self, pattern, timeout)
    }
}

impl LabNode for RedfishNode {
    fn console(&self) -> &crate::Console {
        RedfishNode::console(self)
    }
    fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String, Error> {
        RedfishNode::wait_for(self, pattern, timeout)
    }
}

/// The running lab. Fields drop in order: the node (QEMU, BMC) first, then the servers.
/// The node is a QEMU behind ipmi_sim ([`Lab::start`]) or a libvirt domain behind
/// sushy-emulator ([`Lab::start_redfish`]).
pub struct Lab<N: LabNode = Node> {
    pub node: N,
    server: HttpServer,
    _conductor: Reaped,
    cfg: LabConfig,
    url: String,
    log: PathBuf,
    /// `http://10.0.2.2:PORT` as the node sees the image server.
    image_base: String,
    pub image_sha256: String,
    /// The partition test image's sha256 (see [`Lab::set_partition_image`]).
    pub partition_sha256: String,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub kernel_bytes: u64,
    pub initramfs_bytes: u64,
    /// The node's disk (a raw file).
    pub disk: PathBuf,
    agent_port: u16,
    /// Host port forwarded to the node's iSCSI portal (3260).
    iscsi_port: u16,
}

fn term(pid: u32) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io(what.to_string(), e)
}

fn tail_file(path: &Path, n: usize) -> String {
    crate::console::tail_lines(&std::fs::read_to_string(path).unwrap_or_default(), n)
}

/// Everything of a lab but its node.
struct Services {
    server: HttpServer,
    conductor: Reaped,
    url: String,
    port: u16,
    log: PathBuf,
    image_base: String,
    image_sha256: String,
    partition_sha256: String,
    kernel: PathBuf,
    initramfs: PathBuf,
    kernel_bytes: u64,
    initramfs_bytes: u64,
    disk: PathBuf,
    agent_port: u16,
    iscsi_port: u16,
}

impl Services {
    /// Builds the ramdisk and the test image, starts the conductor and the image server,
    /// creates the node's disk.
    fn start(cfg: &LabConfig) -> Result<Services, Error> {
        let fail = |phase: &str, why: String| Error::Walk {
            phase: phase.into(),
            why,
            console_tail: String::new(),
        };
        std::fs::create_dir_all(&cfg.work_dir).map_err(io("creating the work directory"))?;
        let boot = cfg.work_dir.join("ramdisk");
        let manifest = RamdiskBuilder::new(&cfg.agent, &boot)
            .cache_dir(&cfg.cache_dir)
            .build()
            .map_err(|e| fail("building the ramdisk", e.to_string()))?;
        let image = TestImageBuilder::new(cfg.work_dir.join("image"))
            .cache_dir(&cfg.cache_dir)
            .build()
            .map_err(|e| fail("building the test image", e.to_string()))?;
        let www = cfg.work_dir.join("www");
        std::fs::create_dir_all(&www).map_err(io("creating www"))?;
        std::fs::copy(&image.qcow2, www.join("os.qcow2")).map_err(io("serving the image"))?;
        std::fs::copy(&image.partition, www.join(PARTITION_IMAGE))
            .map_err(io("serving the partition image"))?;
        let server = HttpServer::start(&www)?;
        // Who downloads the image: the node (10.0.2.2 is the host's loopback as QEMU's
        // user network shows it) or, with iscsi, the conductor on the host.
        let image_host = if cfg.deploy_interface == "iscsi" {
            "127.0.0.1"
        } else {
            "10.0.2.2"
        };
        let image_base = format!("http://{image_host}:{}", server.port());

        let port = free_tcp_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let log = cfg.work_dir.join("conductor.log");
        let log_file = std::fs::File::create(&log).map_err(io("creating conductor.log"))?;
        let child = Command::new(&cfg.ferrite)
            .args(["conductor", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--state-dir")
            .arg(cfg.work_dir.join("state"))
            .args(["--boot-url", &format!("http://10.0.2.2:{port}")])
            // Virtual-media ISOs are fetched by the BMC, on the host.
            .args(["--external-http-url", &url])
            // The deploy kernel and ramdisk are staged from the ramdisk build directory.
            .arg("--file-url-allowed-paths")
            .arg(&boot)
            .args(["--kernel-params", "console=ttyS0 quiet"])
            .args(["--periodic-interval", "2", "--heartbeat-timeout", "30"])
            .env(
                "RUST_LOG",
                std::env::var("FERRITE_LAB_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(io("conductor.log"))?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| Error::Tool {
                tool: cfg.ferrite.display().to_string(),
                why: format!("cannot start the conductor: {e}; build it with `cargo build -p ferrite-conductor`"),
            })?;
        let conductor = Reaped(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::http::call(([127, 0, 0, 1], port).into(), "GET", "/v1/", None).is_err() {
            if Instant::now() > deadline {
                return Err(fail(
                    "starting the conductor",
                    format!(
                        "no answer on {url} in 30 s; its log:\n{}",
                        tail_file(&log, 30)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }

        let disk = cfg.work_dir.join("disk0.raw");
        create_disk(&disk, cfg.disk_gib << 30)?;
        Ok(Services {
            server,
            conductor,
            url,
            port,
            log,
            image_base,
            image_sha256: image.qcow2_sha256.clone(),
            partition_sha256: image.partition_sha256.clone(),
            kernel: boot.join(&manifest.kernel.file),
            initramfs: boot.join(&manifest.initramfs.file),
            kernel_bytes: manifest.kernel.bytes,
            initramfs_bytes: manifest.initramfs.bytes,
            disk,
            agent_port: free_tcp_port()?,
            iscsi_port: free_tcp_port()?,
        })
    }

    fn into_lab<N: LabNode>(self, node: N, cfg: LabConfig) -> Lab<N> {
        Lab {
            node,
            server: self.server,
            _conductor: self.conductor,
            url: self.url,
            log: self.log,
            image_base: self.image_base,
            image_sha256: self.image_sha256,
            partition_sha256: self.partition_sha256,
            kernel: self.kernel,
            initramfs: self.initramfs,
            kernel_bytes: self.kernel_bytes,
            initramfs_bytes: self.initramfs_bytes,
            disk: self.disk,
            agent_port: self.agent_port,
            iscsi_port: self.iscsi_port,
            cfg,
        }
    }
}

impl Lab<Node> {
    /// Builds the ramdisk and the test image, starts the conductor, the image server and a
    /// powered-off node with its ipmi_sim BMC (BIOS, PXE through the conductor's iPXE).
    pub fn start(cfg: LabConfig) -> Result<Lab<Node>, Error> {
        let s = Services::start(&cfg)?;
        let script = format!("http://10.0.2.2:{}/boot/boot.ipxe", s.port);
        let vm = VmBuilder::new(&cfg.node_name)
            .memory_mib(cfg.memory_mib)
            .dir(cfg.work_dir.join("node"))
            .disk(&s.disk, DiskFormat::Raw, &cfg.disk_serial)
            .smbios("Ferrite", "QEMU bare-metal node", &cfg.node_serial)
            .nic(&cfg.mac)
            .hostfwd(s.agent_port, AGENT_PORT)
            .hostfwd(s.iscsi_port, 3260);
        let vm = if cfg.uefi {
            vm.uefi().uefi_netboot(&script)
        } else {
            vm.pxe_bootfile(&script)
        };
        let node = vm.start_with_bmc()?;
        Ok(s.into_lab(node, cfg))
    }

    /// Enrolls the node with the `ipmi` hardware type (its BMC, the deploy ramdisk, the
    /// advertised agent address through QEMU's port forward) and a port for its NIC.
    pub fn enroll(&self) -> Result<Value, Error> {
        let bmc = self.node.bmc_addr();
        let kernel = format!("deploy_kernel={}", self.kernel.display());
        let ramdisk = format!("deploy_ramdisk={}", self.initramfs.display());
        let port = format!("ipmi_port={}", bmc.port());
        let user = format!("ipmi_username={}", self.node.bmc_username());
        let pass = format!("ipmi_password={}", self.node.bmc_password());
        let append = format!(
            "kernel_append_params=ipa-advertise-host=127.0.0.1 ipa-advertise-port={}",
            self.agent_port
        );
        #[rustfmt::skip]
        let node = self.cli_json("node create", &[
            "node", "create", "--driver", "ipmi", "--name", &self.cfg.node_name,
            "--driver-info", "ipmi_address=127.0.0.1", "--driver-info", &port,
            "--driver-info", &user, "--driver-info", &pass,
            "--driver-info", &kernel, "--driver-info", &ramdisk, "--driver-info", &append,
        ])?;
        let uuid = node["uuid"].as_str().unwrap_or_default().to_string();
        if self.cfg.uefi {
            self.cli(
                "node set",
                &[
                    "node",
                    "set",
                    &uuid,
                    "--property",
                    "capabilities=boot_mode:uefi",
                ],
            )?;
        }
        if self.cfg.deploy_interface != "direct" {
            let portal = format!("ferrite_iscsi_address=127.0.0.1:{}", self.iscsi_port);
            #[rustfmt::skip]
            self.cli("node set", &[
                "node", "set", &uuid, "--deploy-interface", &self.cfg.deploy_interface,
                "--driver-info", &portal,
            ])?;
        }
        self.cli(
            "port create",
            &["port", "create", &self.cfg.mac, "--node", &uuid],
        )?;
        Ok(node)
    }
}

impl Lab<RedfishNode> {
    /// Like [`Lab::start`], but the node is a UEFI (OVMF) libvirt domain behind
    /// sushy-emulator's libvirt driver, in a private libvirtd: a Redfish server with
    /// virtual media and no network boot.
    pub fn start_redfish(cfg: LabConfig) -> Result<Lab<RedfishNode>, Error> {
        let s = Services::start(&cfg)?;
        let dir = cfg.work_dir.join("node");
        std::fs::create_dir_all(&dir).map_err(io("creating the node directory"))?;
        let spec = DomainSpec {
            name: cfg.node_name.clone(),
            uuid: "5e7f0000-0000-4000-8000-00000000f001".into(),
            memory_mib: cfg.memory_mib,
            disk: s.disk.clone(),
            disk_serial: cfg.disk_serial.clone(),
            mac: cfg.mac.clone(),
            hostfwd: vec![(s.agent_port, AGENT_PORT)],
            nvram: dir.join("nvram.fd"),
            console: dir.join("console.log"),
        };
        let node = RedfishNode::start(spec, &dir)?;
        Ok(s.into_lab(node, cfg))
    }

    /// Enrolls the node with the `redfish` hardware type and `boot` as its boot interface
    /// (the BMC, the deploy ramdisk, the advertised agent address through the port
    /// forward, UEFI), `inspect` as its inspect interface, and a port for its NIC.
    pub fn enroll_redfish(&self, boot: &str, inspect: &str) -> Result<Value, Error> {
        let n = &self.node;
        let address = format!("redfish_address={}", n.bmc.url());
        let system = format!("redfish_system_id=/redfish/v1/Systems/{}", n.system_id());
        let user = format!("redfish_username={}", n.username);
        let pass = format!("redfish_password={}", n.password);
        let kernel = format!("deploy_kernel={}", self.kernel.display());
        let ramdisk = format!("deploy_ramdisk={}", self.initramfs.display());
        let append = format!(
            "kernel_append_params=ipa-advertise-host=127.0.0.1 ipa-advertise-port={}",
            self.agent_port
        );
        #[rustfmt::skip]
        let node = self.cli_json("node create", &[
            "node", "create", "--driver", "redfish", "--name", &self.cfg.node_name,
            "--boot-interface", boot, "--inspect-interface", inspect,
            "--driver-info", &address, "--driver-info", &system,
            "--driver-info", &user, "--driver-info", &pass,
            "--driver-info", &kernel, "--driver-info", &ramdisk, "--driver-info", &append,
            "--property", "capabilities=boot_mode:uefi",
        ])?;
        let uuid = node["uuid"].as_str().unwrap_or_default().to_string();
        self.cli(
            "port create",
            &["port", "create", &self.cfg.mac, "--node", &uuid],
        )?;
        Ok(node)
    }

    /// Static addressing on QEMU's user network for the node's ramdisk (`network_data`:
    /// 10.0.2.15/24 via 10.0.2.2, DNS 10.0.2.3): the network answers DHCP, but a
    /// virtual-media ramdisk must not need it.
    pub fn set_static_network(&self) -> Result<(), Error> {
        let network_data = serde_json::json!({
            "links": [{"id": "port0", "type": "phy", "ethernet_mac_address": self.cfg.mac}],
            "networks": [{"id": "net0", "type": "ipv4", "link": "port0",
                          "ip_address": "10.0.2.15", "netmask": "255.255.255.0",
                          "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                      "gateway": "10.0.2.2"}]}],
            "services": [{"type": "dns", "address": "10.0.2.3"}]
        })
        .to_string();
        self.cli(
            "node set",
            &[
                "node",
                "set",
                &self.cfg.node_name,
                "--network-data",
                &network_data,
            ],
        )?;
        Ok(())
    }
}

impl<N: LabNode> Lab<N> {
    /// The conductor's API URL (`FERRITE_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The last lines of the conductor's log.
    pub fn conductor_log_tail(&self, n: usize) -> String {
        tail_file(&self.log, n)
    }

    fn failed(&self, phase: &str, why: impl std::fmt::Display) -> Error {
        Error::Walk {
            phase: phase.into(),
            why: format!(
                "{why}\nlast conductor log lines:\n{}",
                self.conductor_log_tail(25)
            ),
            console_tail: self.node.console().tail(30),
        }
    }

    /// Runs `ferrite ARGS…` against the conductor; stdout on success, a phase-named error
    /// with the CLI's message, the conductor log and the console tail otherwise.
    pub fn cli(&self, phase: &str, args: &[&str]) -> Result<String, Error> {
        self.run_cli(phase, args, self.cfg.echo)
    }

    /// `echo`: print the command, its progress and its text output (not JSON).
    fn run_cli(&self, phase: &str, args: &[&str], echo: bool) -> Result<String, Error> {
        if echo {
            eprintln!("$ ferrite {}", shell_words(args));
        }
        let out = Command::new(&self.cfg.ferrite)
            .args(args)
            .env("FERRITE_URL", &self.url)
            .stderr(if echo {
                Stdio::inherit()
            } else {
                Stdio::piped()
            })
            .output()
            .map_err(|e| self.failed(phase, format!("cannot run ferrite: {e}")))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(self.failed(
                phase,
                format!("`ferrite {}` failed: {}", shell_words(args), stderr.trim()),
            ));
        }
        if echo && !stdout.trim().is_empty() && !args.contains(&"json") {
            eprintln!("{}", stdout.trim_end());
        }
        Ok(stdout)
    }

    /// `ferrite -f json ARGS…`, parsed.
    pub fn cli_json(&self, phase: &str, args: &[&str]) -> Result<Value, Error> {
        let mut all = vec!["-f", "json"];
        all.extend_from_slice(args);
        let out = self.cli(phase, &all)?;
        serde_json::from_str(&out).map_err(|e| self.failed(phase, format!("bad JSON ({e}): {out}")))
    }

    /// The node as the API shows it (never echoed: the walk polls it).
    pub fn show(&self) -> Result<Value, Error> {
        let out = self.run_cli(
            "node show",
            &["-f", "json", "node", "show", &self.cfg.node_name],
            false,
        )?;
        serde_json::from_str(&out)
            .map_err(|e| self.failed("node show", format!("bad JSON ({e}): {out}")))
    }

    /// `ferrite node VERB NODE --wait SECS [extra…]`; the node afterwards.
    pub fn verb(&self, verb: &str, extra: &[&str], secs: u64) -> Result<Value, Error> {
        let wait = secs.to_string();
        let mut args = vec!["node", verb, &self.cfg.node_name, "--wait", &wait];
        args.extend_from_slice(extra);
        self.cli(verb, &args)?;
        self.show()
    }

    /// `ferrite node VERB NODE [extra…]` without waiting.
    pub fn start_verb(&self, verb: &str, extra: &[&str]) -> Result<(), Error> {
        let mut args = vec!["node", verb, &self.cfg.node_name];
        args.extend_from_slice(extra);
        self.cli(verb, &args).map(|_| ())
    }

    /// Polls the node until it is in `state` with no work pending; fails early on a
    /// failure state.
    pub fn wait_state(&self, state: &str, timeout: Duration) -> Result<Value, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.show()?;
            let now = n["provision_state"].as_str().unwrap_or("");
            if now == state && n["target_provision_state"].is_null() && n["reservation"].is_null() {
                return Ok(n);
            }
            if now.ends_with("failed") || Instant::now() > deadline {
                return Err(self.failed(
                    &format!("waiting for {state}"),
                    format!("node is {now}: {}", n["last_error"]),
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits for the agent's "heartbeating" log line on the console (its lookup succeeded).
    pub fn wait_agent_lookup(&mut self, timeout: Duration) -> Result<(), Error> {
        match self.node.wait_for("heartbeating", timeout) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failed("waiting for the agent's lookup", e)),
        }
    }

    /// Like [`Lab::verb`] but expects the verb to fail; returns the node afterwards.
    pub fn verb_fails(&self, verb: &str, extra: &[&str], secs: u64) -> Result<Value, Error> {
        match self.verb(verb, extra, secs) {
            Ok(n) => Err(self.failed(verb, format!("expected a failure, node is {n}"))),
            Err(_) => self.show(),
        }
    }

    /// Writes the config drive with `meta_data.json` = {uuid, hostname, name} and returns its
    /// URL as the node sees it.
    pub fn config_drive(&self, uuid: &str, hostname: &str) -> Result<String, Error> {
        let name = format!("configdrive-{hostname}.vfat");
        let meta = json!({"uuid": uuid, "hostname": hostname, "name": hostname});
        test_image::config_drive_image(
            &self.cfg.work_dir.join("www").join(&name),
            &meta.to_string(),
        )
        .map_err(|e| self.failed("building the config drive", e))?;
        Ok(format!("{}/{name}", self.image_base))
    }

    /// Points the node's `instance_info` at the test image with `sha256` as its checksum.
    pub fn set_image(&self, sha256: &str) -> Result<(), Error> {
        let source = format!("image_source={}/os.qcow2", self.image_base);
        let hash = format!("image_os_hash_value={sha256}");
        #[rustfmt::skip]
        self.cli("node set", &[
            "node", "set", &self.cfg.node_name, "--instance-info", &source,
            "--instance-info", "image_os_hash_algo=sha256", "--instance-info", &hash,
            "--instance-info", "image_disk_format=qcow2",
        ])?;
        Ok(())
    }

    /// Points the node's `instance_info` at the partition test image (`image_type:
    /// partition`, root filesystem only) and deploys it for `boot_mode` (`bios` or `uefi`,
    /// the `boot_mode` capability): the conductor then has the agent install its boot loader.
    pub fn set_partition_image(&self, boot_mode: &str) -> Result<(), Error> {
        let source = format!("image_source={}/{PARTITION_IMAGE}", self.image_base);
        let hash = format!("image_os_hash_value={}", self.partition_sha256);
        let caps = format!("capabilities=boot_mode:{boot_mode}");
        #[rustfmt::skip]
        self.cli("node set", &[
            "node", "set", &self.cfg.node_name, "--instance-info", &source,
            "--instance-info", "image_os_hash_algo=sha256", "--instance-info", &hash,
            "--instance-info", "image_disk_format=raw",
            "--instance-info", "image_type=partition", "--instance-info", "root_gb=1",
            "--property", &caps,
        ])?;
        Ok(())
    }

    /// Waits for the deployed OS's `FERRITE-DEPLOYED …` line (the next one on the console).
    pub fn wait_marker(&mut self, timeout: Duration) -> Result<String, Error> {
        match self.node.wait_for("FERRITE-DEPLOYED", timeout) {
            Ok(line) => Ok(line.trim().to_string()),
            Err(e) => Err(self.failed("booting the deployed OS", e)),
        }
    }

    /// Requests the image server saw (for checking what the node fetched).
    pub fn image_requests(&self) -> Vec<String> {
        self.server
            .requests()
            .into_iter()
            .map(|r| r.target)
            .collect()
    }
}

fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"') {
                format!("'{a}'")
            } else {
                a.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
