//! The builder (propolis PHD style): `VmBuilder::new("node-0").memory_mib(256).disk(…)`, then
//! [`VmBuilder::start`] for a VM powered on right away, or [`VmBuilder::start_with_bmc`] for a
//! powered-off node behind a simulated IPMI BMC that powers it on and off.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferrite_ipmi::sim::SimBmc;

use crate::chassis;
use crate::console::Console;
use crate::process::{self, QemuChild};
use crate::spec::{
    Accel, BootDevice, DirectKernel, Disk, DiskFormat, Firmware, Nic, Smbios, VmSpec,
};
use crate::Error;

/// Debian `ovmf`'s firmware code and its empty NVRAM template (4 MiB flash layout).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The node's own NVRAM, copied from [`OVMF_VARS`] into its directory on first use.
pub const NVRAM_FILE: &str = "ovmf-vars.fd";

/// The MAC of the NIC added when NIC options are given before any [`VmBuilder::nic`].
pub const DEFAULT_MAC: &str = "52:54:00:fe:00:01";

/// The agent's API port inside the guest.
pub const AGENT_PORT: u16 = 9999;

/// A free TCP port on 127.0.0.1 (the OS picks it; bound and released), for what must be
/// told a number: QEMU's `hostfwd`, ipmi_sim's KCS socket, a conductor process's
/// `--listen`. Another process may take it before they bind it; that cannot go unnoticed:
/// QEMU then exits at start ("Could not set up host forwarding rule", returned as
/// [`Error::QemuFailed`] with its log), ipmi_sim exits and the BMC's start fails, and a
/// conductor that cannot listen exits (the calls that follow fail): a clash fails a run,
/// it cannot make one pass. (Tests in the crates use
/// `ferrite_testkit::with_free_port` to retry such starts.)
pub fn free_tcp_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Io("picking a free TCP port".into(), e))
}

/// Creates a sparse raw disk image of `bytes`.
pub fn create_disk(path: &Path, bytes: u64) -> Result<(), Error> {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(bytes))
        .map_err(|e| Error::Io(format!("creating disk {}", path.display()), e))
}

/// Builds a VM; see the module docs.
#[derive(Debug, Clone)]
pub struct VmBuilder {
    spec: VmSpec,
    dir: Option<PathBuf>,
    boot: BootDevice,
    bmc_user: (String, String),
    chassis_program: Option<PathBuf>,
}

impl VmBuilder {
    pub fn new(name: &str) -> VmBuilder {
        VmBuilder {
            spec: VmSpec {
                name: name.into(),
                qemu: std::env::var("FERRITE_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into()),
                accel: Accel::Tcg,
                memory_mib: 256,
                cpus: 1,
                disks: vec![],
                nics: vec![],
                smbios: None,
                kernel: None,
                netboot: None,
                firmware: Firmware::Bios,
                cdrom: None,
                ipmi_port: None,
                console: PathBuf::new(),
                extra_args: vec![],
            },
            dir: None,
            boot: BootDevice::Network,
            bmc_user: ("admin".into(), "password".into()),
            chassis_program: None,
        }
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.spec.memory_mib = mib;
        self
    }

    pub fn cpus(mut self, n: u32) -> Self {
        self.spec.cpus = n;
        self
    }

    /// KVM only on request; TCG is the default (see ARCHITECTURE.md).
    pub fn accel(mut self, accel: Accel) -> Self {
        self.spec.accel = accel;
        self
    }

    pub fn disk(mut self, path: impl Into<PathBuf>, format: DiskFormat, serial: &str) -> Self {
        self.spec.disks.push(Disk {
            path: path.into(),
            format,
            serial: serial.into(),
        });
        self
    }

    /// A virtio NIC on user-mode networking with a fixed MAC.
    pub fn nic(mut self, mac: &str) -> Self {
        self.spec.nics.push(Nic {
            mac: mac.into(),
            model: "virtio-net-pci".into(),
            hostfwd: vec![],
            bootfile: None,
            tftp_root: None,
        });
        self
    }

    /// The NIC the NIC options apply to; a default one is added if there is none yet.
    fn last_nic(&mut self) -> &mut Nic {
        if self.spec.nics.is_empty() {
            *self = std::mem::replace(self, VmBuilder::new("")).nic(DEFAULT_MAC);
        }
        self.spec.nics.last_mut().expect("a NIC was added")
    }

    /// Forwards 127.0.0.1:`host_port` to `guest_port` on the last NIC.
    pub fn hostfwd(mut self, host_port: u16, guest_port: u16) -> Self {
        self.last_nic().hostfwd.push((host_port, guest_port));
        self
    }

    /// The DHCP boot file of the last NIC: an iPXE script URL such as
    /// `http://10.0.2.2:PORT/boot.ipxe` (the guest sees the host's loopback as 10.0.2.2).
    pub fn pxe_bootfile(mut self, url: &str) -> Self {
        self.last_nic().bootfile = Some(url.into());
        self
    }

    pub fn tftp_root(mut self, dir: impl Into<PathBuf>) -> Self {
        self.last_nic().tftp_root = Some(dir.into());
        self
    }

    pub fn smbios(mut self, manufacturer: &str, product: &str, serial: &str) -> Self {
        self.spec.smbios = Some(Smbios {
            manufacturer: manufacturer.into(),
            product: product.into(),
            serial: serial.into(),
        });
        self
    }

    /// Boots `kernel` + `initrd` directly (no firmware, no PXE).
    pub fn kernel(
        mut self,
        kernel: impl Into<PathBuf>,
        initrd: impl Into<PathBuf>,
        append: &str,
    ) -> Self {
        self.spec.kernel = Some(DirectKernel {
            kernel: kernel.into(),
            initrd: initrd.into(),
            append: append.into(),
        });
        self
    }

    /// What a UEFI node's network boot runs: the iPXE script at `url` (as the guest sees
    /// it, e.g. `http://10.0.2.2:PORT/boot.ipxe`), interpreted by the harness
    /// ([`crate::netboot`]) because OVMF cannot PXE-boot iPXE over QEMU's user network.
    pub fn uefi_netboot(mut self, url: &str) -> Self {
        self.spec.netboot = Some(url.into());
        self
    }

    /// UEFI firmware (OVMF) instead of SeaBIOS; see [`Firmware::Uefi`].
    pub fn uefi(mut self) -> Self {
        self.spec.firmware = Firmware::Uefi {
            code: OVMF_CODE.into(),
            vars: PathBuf::from(NVRAM_FILE),
        };
        self
    }

    /// An ISO in the virtual CD drive, booted when the boot device is [`BootDevice::Cdrom`].
    pub fn cdrom(mut self, iso: impl Into<PathBuf>) -> Self {
        self.spec.cdrom = Some(iso.into());
        self
    }

    /// The boot device when started with [`VmBuilder::start`]; a BMC node starts with none set.
    pub fn boot(mut self, boot: BootDevice) -> Self {
        self.boot = boot;
        self
    }

    /// Where console, QEMU log and BMC state go (default: a new temporary directory).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    pub fn bmc_user(mut self, user: &str, password: &str) -> Self {
        self.bmc_user = (user.into(), password.into());
        self
    }

    /// The `ferrite-qemu-harness` binary that serves as the BMC's chassis program (default:
    /// `$FERRITE_QEMU_HARNESS`, or the one Cargo built next to the running executable).
    pub fn chassis_program(mut self, path: impl Into<PathBuf>) -> Self {
        self.chassis_program = Some(path.into());
        self
    }

    pub fn extra_arg(mut self, arg: &str) -> Self {
        self.spec.extra_args.push(arg.into());
        self
    }

    fn prepare(&mut self) -> Result<(PathBuf, Option<tempfile::TempDir>), Error> {
        // QEMU may run from another directory (ipmi_sim's): make every path absolute.
        let cwd = std::env::current_dir()
            .map_err(|e| Error::Io("reading the current directory".into(), e))?;
        for d in &mut self.spec.disks {
            d.path = cwd.join(&d.path);
        }
        if let Some(k) = &mut self.spec.kernel {
            k.kernel = cwd.join(&k.kernel);
            k.initrd = cwd.join(&k.initrd);
        }
        if let Some(d) = &mut self.dir {
            *d = cwd.join(&*d);
        }
        if let Some(c) = &mut self.spec.cdrom {
            *c = cwd.join(&*c);
            if !c.exists() {
                return Err(Error::MissingInput {
                    path: c.clone(),
                    hint: "build the ISO first".into(),
                });
            }
        }
        for d in &self.spec.disks {
            if !d.path.exists() {
                return Err(Error::MissingInput {
                    path: d.path.clone(),
                    hint: "create the disk image first (e.g. `create_disk`)".into(),
                });
            }
        }
        if let Some(k) = &self.spec.kernel {
            for p in [&k.kernel, &k.initrd] {
                if !p.exists() {
                    return Err(Error::MissingInput {
                        path: p.clone(),
                        hint: "build it first: `cargo xtask ramdisk`".into(),
                    });
                }
            }
        }
        let (dir, temp) = match &self.dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .map_err(|e| Error::Io(format!("creating {}", d.display()), e))?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix(&format!("ferrite-vm-{}-", self.spec.name))
                    .tempdir()
                    .map_err(|e| Error::Io("creating a VM directory".into(), e))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        self.spec.console = dir.join("console.log");
        let _ = std::fs::remove_file(&self.spec.console);
        if let Firmware::Uefi { code, vars } = &mut self.spec.firmware {
            if !code.exists() {
                return Err(Error::MissingInput {
                    path: code.clone(),
                    hint: "install the Debian package ovmf (`cargo xtask deps`)".into(),
                });
            }
            *vars = dir.join(NVRAM_FILE);
            if !vars.exists() {
                std::fs::copy(OVMF_VARS, &*vars).map_err(|e| {
                    Error::Io(format!("copying {OVMF_VARS} to {}", vars.display()), e)
                })?;
            }
        }
        Ok((dir, temp))
    }

    /// Starts QEMU now, booting from [`VmBuilder::boot`]'s device.
    pub fn start(mut self) -> Result<Vm, Error> {
        let (dir, temp) = self.prepare()?;
        let child = QemuChild::new(process::spawn(&self.spec, self.boot)?);
        Ok(Vm {
            console: Console::new(&self.spec.console),
            child,
            spec: self.spec,
            dir,
            _temp: temp,
        })
    }

    fn find_chassis_program(&self) -> Result<PathBuf, Error> {
        if let Some(p) = &self.chassis_program {
            return Ok(p.clone());
        }
        if let Some(p) = std::env::var_os("FERRITE_QEMU_HARNESS") {
            return Ok(p.into());
        }
        let exe =
            std::env::current_exe().map_err(|e| Error::Io("locating this program".into(), e))?;
        // Test executables live in target/<profile>/deps, binaries in target/<profile>.
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("ferrite-qemu-harness");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        Err(Error::MissingInput {
            path: "ferrite-qemu-harness".into(),
            hint: "build it (`cargo build -p ferrite-qemu-harness`) or set FERRITE_QEMU_HARNESS"
                .into(),
        })
    }

    /// Starts a BMC (ipmi_sim) for a powered-off node: `ipmitool … power on` starts QEMU,
    /// `chassis bootdev pxe|disk` picks how it boots, `power off` stops it.
    pub fn start_with_bmc(mut self) -> Result<Node, Error> {
        let program = self.find_chassis_program()?;
        let kcs_port = free_tcp_port()?;
        self.spec.ipmi_port = Some(kcs_port);
        let (dir, temp) = self.prepare()?;
        let spec_path = dir.join(chassis::SPEC_FILE);
        std::fs::write(
            &spec_path,
            serde_json::to_string_pretty(&self.spec).expect("spec serialises"),
        )
        .map_err(|e| Error::Io(format!("writing {}", spec_path.display()), e))?;
        let _ = std::fs::remove_file(dir.join(chassis::BOOT_FILE));
        let _ = std::fs::remove_file(dir.join(chassis::PID_FILE));
        // ipmi_sim runs the chassis program by name with its arguments appended: a wrapper
        // script carries our own arguments.
        let wrapper = dir.join("chassis-control");
        let script = format!(
            "#!/bin/sh\nexec '{}' chassis --state '{}' \"$@\"\n",
            program.display(),
            dir.display()
        );
        std::fs::write(&wrapper, script)
            .and_then(|_| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| Error::Io(format!("writing {}", wrapper.display()), e))?;
        let bmc = SimBmc::builder()
            .user(&self.bmc_user.0, &self.bmc_user.1)
            .chassis_control(&wrapper.display().to_string())
            .serial_kcs_port(kcs_port)
            .start()
            .map_err(Error::Bmc)?;
        Ok(Node {
            console: Console::new(&self.spec.console),
            bmc,
            spec: self.spec,
            dir,
            _temp: temp,
        })
    }
}

/// A running VM owned by this process; QEMU is killed and reaped on drop.
#[derive(Debug)]
pub struct Vm {
    child: QemuChild,
    console: Console,
    spec: VmSpec,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Vm {
    pub fn spec(&self) -> &VmSpec {
        &self.spec
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn console(&self) -> &Console {
        &self.console
    }

    /// Waits for `pattern` on the serial console; fails early if QEMU exits.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String, Error> {
        let child = &mut self.child;
        self.console.wait_for_or(pattern, timeout, || child.alive())
    }

    pub fn is_running(&mut self) -> bool {
        self.child.alive().is_ok()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.child.wait_exit(timeout)
    }
}

/// A node with a BMC; on drop its QEMU (if powered on) is stopped and ipmi_sim killed.
#[derive(Debug)]
pub struct Node {
    bmc: SimBmc,
    console: Console,
    spec: VmSpec,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Node {
    pub fn spec(&self) -> &VmSpec {
        &self.spec
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn console(&self) -> &Console {
        &self.console
    }

    pub fn bmc_addr(&self) -> std::net::SocketAddr {
        self.bmc.addr()
    }

    pub fn bmc_username(&self) -> &str {
        self.bmc.username()
    }

    pub fn bmc_password(&self) -> &str {
        self.bmc.password()
    }

    /// `ipmitool -I lanplus -C 3 -H 127.0.0.1 -p PORT -U … -P …`, ready for a command.
    pub fn ipmitool_args(&self) -> Vec<String> {
        self.bmc.ipmitool_args()
    }

    /// Runs `ipmitool <args>` against this node's BMC and returns its stdout.
    pub fn ipmitool(&self, args: &[&str]) -> Result<String, Error> {
        let out = Command::new("ipmitool")
            .args(self.ipmitool_args())
            .args(args)
            .output()
            .map_err(|e| Error::Tool {
                tool: "ipmitool".into(),
                why: format!("cannot start it ({e}): install the Debian package ipmitool"),
            })?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: "ipmitool".into(),
                why: format!(
                    "`{}` failed: {}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim(),
                    self.chassis_errors()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn chassis_errors(&self) -> String {
        let log = std::fs::read_to_string(process::qemu_log(&self.spec)).unwrap_or_default();
        if log.trim().is_empty() {
            String::new()
        } else {
            format!("; QEMU said: {}", log.trim())
        }
    }

    /// The pid of the node's QEMU while it is powered on.
    pub fn qemu_pid(&self) -> Option<u32> {
        chassis::running_pid(&self.dir, &self.spec)
    }

    /// Every call ipmi_sim made to the chassis program.
    pub fn chassis_log(&self) -> String {
        std::fs::read_to_string(self.dir.join(chassis::LOG_FILE)).unwrap_or_default()
    }

    /// Waits for `pattern` on the console (across power cycles: the file is appended to).
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String, Error> {
        self.console.wait_for(pattern, timeout)
    }

    /// Makes the next [`Node::wait_for`] see only output from now on.
    pub fn skip_console(&mut self) {
        self.console.skip_to_end();
    }

    /// Powers the node off right away (the BMC's view follows: QEMU is gone).
    pub fn kill(&self) {
        if let Some(pid) = self.qemu_pid() {
            process::stop_detached(pid, &self.spec.console);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
