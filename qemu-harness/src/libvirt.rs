//! A Redfish-managed QEMU node the way Ironic's and Metal3's CI build one: a private
//! `libvirtd` (started per lab, stopped by pid) runs the node as a `type='qemu'` (TCG)
//! domain with OVMF, a virtio disk, an IDE bus for virtual CDs, user networking with a port
//! forward to the agent, and its serial console in a file; sushy-tools' `sushy-emulator`
//! with its libvirt driver is the node's BMC (power, boot device and mode, virtual media
//! that it downloads and attaches as the domain's CD).
//!
//! The daemon runs as root in its own mount namespace (`unshare --mount`), with tmpfs over
//! `/run`, `/var/lib/libvirt`, `/var/cache/libvirt` and `/var/log/libvirt` and this lab's
//! configuration bind-mounted over `/etc/libvirt`, so it shares no state with the host or
//! another lab; its socket is in the lab's directory. QEMU runs as root with no security
//! driver, cgroups or private /dev (none of which a container offers). The lab's drop
//! destroys the domain (and kills its QEMU by pid if that fails) before stopping the
//! daemon; QEMU daemonises, so a test killed outright (SIGKILL) leaves it running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::console::Console;
use crate::sushy::SushyLibvirt;
use crate::vm::{OVMF_CODE, OVMF_VARS};
use crate::Error;

/// The Debian packages this needs (`cargo xtask deps`).
pub const PACKAGES_HINT: &str = "install libvirt-daemon-system, libvirt-clients and \
     python3-libvirt (`cargo xtask deps`)";

/// Where Debian's python3-libvirt puts the bindings sushy-emulator's libvirt driver imports.
pub const PYTHON_LIBVIRT_DIR: &str = "/usr/lib/python3/dist-packages";

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io(what.to_string(), e)
}

fn term(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a pid this module started (or libvirt started for it); no memory
    // is involved.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Waits for `child` to exit after SIGTERM, then SIGKILLs it.
pub(crate) fn stop_child(child: &mut Child, grace: Duration) {
    term(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A private libvirtd; stopped (with its domains) on drop.
pub struct Libvirtd {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Libvirtd {
    /// Starts the daemon with its configuration, socket and log under `dir`.
    pub fn start(dir: &Path) -> Result<Libvirtd, Error> {
        for tool in ["/usr/sbin/libvirtd", "/usr/bin/virsh"] {
            if !Path::new(tool).exists() {
                return Err(Error::MissingInput {
                    path: tool.into(),
                    hint: PACKAGES_HINT.into(),
                });
            }
        }
        let etc = dir.join("etc");
        let sock = dir.join("sock");
        for d in [&etc, &sock] {
            std::fs::create_dir_all(d).map_err(io("creating the libvirtd directories"))?;
        }
        let dir = dir
            .canonicalize()
            .map_err(io("resolving the libvirtd dir"))?;
        let (etc, sock) = (dir.join("etc"), dir.join("sock"));
        let socket = sock.join("libvirt-sock");
        if socket.as_os_str().len() > 100 {
            return Err(Error::Tool {
                tool: "libvirtd".into(),
                why: format!(
                    "socket path {} is too long for a unix socket",
                    socket.display()
                ),
            });
        }
        let log = dir.join("libvirtd.log");
        let conf = format!(
            "unix_sock_dir = \"{}\"\nunix_sock_group = \"root\"\nunix_sock_rw_perms = \"0700\"\n\
             auth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n\
             log_outputs = \"3:file:{}\"\n",
            sock.display(),
            log.display()
        );
        std::fs::write(etc.join("libvirtd.conf"), conf).map_err(io("writing libvirtd.conf"))?;
        std::fs::write(
            etc.join("qemu.conf"),
            "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\nremember_owner = 0\n\
             security_driver = \"none\"\nnamespaces = []\ncgroup_controllers = []\n\
             stdio_handler = \"file\"\n",
        )
        .map_err(io("writing qemu.conf"))?;
        let _ = std::fs::copy("/etc/libvirt/libvirt.conf", etc.join("libvirt.conf"));
        let script = format!(
            "set -e\n\
             for d in /run /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do\n\
               mkdir -p $d; mount -t tmpfs ferrite-libvirt $d\n\
             done\n\
             mount --bind {etc} /etc/libvirt\n\
             exec /usr/sbin/libvirtd --config {etc}/libvirtd.conf\n",
            etc = etc.display()
        );
        let out = std::fs::File::create(dir.join("libvirtd.out")).map_err(io("libvirtd.out"))?;
        // Not a PID namespace as well: libvirtd as its init does not reap the QEMU processes
        // it kills (they daemonise, so they become its orphans), and then waits 40 s for each
        // zombie to go ("Failed to terminate process … Device or resource busy").
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(io("libvirtd.out"))?)
            .stderr(out)
            .spawn()
            .map_err(|e| Error::Tool {
                tool: "unshare".into(),
                why: format!("cannot start libvirtd in a mount namespace: {e}"),
            })?;
        let mut d = Libvirtd {
            child,
            dir: dir.clone(),
            socket,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(Error::Tool {
                    tool: "libvirtd".into(),
                    why: format!(
                        "exited at start ({status}): {}{}",
                        std::fs::read_to_string(dir.join("libvirtd.out")).unwrap_or_default(),
                        crate::console::tail_lines(
                            &std::fs::read_to_string(&log).unwrap_or_default(),
                            10
                        )
                    ),
                });
            }
            if d.socket.exists() && d.virsh(&["version"]).is_ok() {
                return Ok(d);
            }
            if Instant::now() > deadline {
                return Err(Error::Tool {
                    tool: "libvirtd".into(),
                    why: format!("no answer on {} in 30 s", d.socket.display()),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The connection URI (`qemu:///system` on this daemon's socket).
    pub fn uri(&self) -> String {
        format!("qemu:///system?socket={}", self.socket.display())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `virsh ARGS…` on this daemon; stdout, or stderr as the error.
    pub fn virsh(&self, args: &[&str]) -> Result<String, Error> {
        let out = Command::new("virsh")
            .args(["-c", &self.uri()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(io("running virsh"))?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: format!("virsh {}", args.join(" ")),
                why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Defines the directory storage pool `default`, where sushy-emulator's libvirt driver
    /// uploads inserted virtual media.
    pub fn define_pool(&self, name: &str, dir: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(dir).map_err(io("creating the storage pool directory"))?;
        let target = dir.display().to_string();
        self.virsh(&["pool-define-as", name, "dir", "--target", &target])?;
        self.virsh(&["pool-start", name])?;
        Ok(())
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self, n: usize) -> String {
        crate::console::tail_lines(
            &std::fs::read_to_string(self.dir.join("libvirtd.log")).unwrap_or_default(),
            n,
        )
    }
}

impl Libvirtd {
    /// Pids of the QEMU processes the daemon runs (from its pid files, seen through the
    /// daemon's own mount namespace; `unshare` execs the shell that execs the daemon, so
    /// the child's pid is the daemon's).
    fn qemu_pids(&self) -> Vec<u32> {
        let dir = PathBuf::from(format!("/proc/{}/root/run/libvirt/qemu", self.child.id()));
        let Ok(entries) = std::fs::read_dir(dir) else {
            return vec![];
        };
        entries
            .flatten()
            // driver.pid is the daemon's own.
            .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
            .filter(|e| e.file_name() != "driver.pid")
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let pids = self.qemu_pids();
        if let Ok(names) = self.virsh(&["list", "--name"]) {
            for n in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
                let _ = self.virsh(&["destroy", n]);
            }
        }
        // A domain virsh could not stop: its QEMU, from the daemon's pid files.
        for pid in pids {
            if Path::new(&format!("/proc/{pid}")).exists() {
                term(pid, libc::SIGKILL);
            }
        }
        stop_child(&mut self.child, Duration::from_secs(10));
    }
}

/// A node as a libvirt domain.
#[derive(Debug, Clone)]
pub struct DomainSpec {
    pub name: String,
    pub uuid: String,
    pub memory_mib: u32,
    /// Raw disk image (virtio, with this serial).
    pub disk: PathBuf,
    pub disk_serial: String,
    pub mac: String,
    /// `(host port on 127.0.0.1, guest port)` forwards of the user network.
    pub hostfwd: Vec<(u16, u16)>,
    /// The node's UEFI variable store (copied from OVMF's template when missing).
    pub nvram: PathBuf,
    /// Where the serial console goes.
    pub console: PathBuf,
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

impl DomainSpec {
    /// The domain XML: i440fx (IDE for sushy's virtual CD), TCG, OVMF with the node's
    /// NVRAM, the disk first in the boot order, no graphics, the NIC on QEMU's user
    /// network through `<qemu:commandline>` (libvirt's own user-network interface has no
    /// port forwards without passt).
    pub fn xml(&self) -> String {
        let e = |p: &Path| xml_escape(&p.display().to_string());
        let mut netdev = "user,id=fnet0".to_string();
        for (h, g) in &self.hostfwd {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{h}-:{g}"));
        }
        format!(
            "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>{mem}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <loader readonly='yes' type='pflash'>{code}</loader>
    <nvram>{nvram}</nvram>
    <boot dev='hd'/>
  </os>
  <features><acpi/></features>
  <on_reboot>restart</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='unsafe'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
      <serial>{serial}</serial>
    </disk>
    <controller type='ide' index='0'/>
    <serial type='file'><source path='{console}' append='on'/><target port='0'/></serial>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='{netdev}'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=fnet0,mac={mac},bus=pci.0,addr=0x9'/>
  </qemu:commandline>
</domain>
",
            name = xml_escape(&self.name),
            uuid = xml_escape(&self.uuid),
            mem = self.memory_mib,
            code = OVMF_CODE,
            nvram = e(&self.nvram),
            disk = e(&self.disk),
            serial = xml_escape(&self.disk_serial),
            console = e(&self.console),
            netdev = xml_escape(&netdev),
            mac = xml_escape(&self.mac),
        )
    }

    /// Defines the domain (powered off) on `daemon`.
    pub fn define(&self, daemon: &Libvirtd, dir: &Path) -> Result<(), Error> {
        if !Path::new(OVMF_CODE).exists() {
            return Err(Error::MissingInput {
                path: OVMF_CODE.into(),
                hint: "install the Debian package ovmf (`cargo xtask deps`)".into(),
            });
        }
        if !self.nvram.exists() {
            std::fs::copy(OVMF_VARS, &self.nvram).map_err(io("copying the OVMF NVRAM"))?;
        }
        let path = dir.join(format!("{}.xml", self.name));
        std::fs::write(&path, self.xml()).map_err(io("writing the domain XML"))?;
        daemon.virsh(&["define", &path.display().to_string()])?;
        Ok(())
    }
}

/// A Redfish node: the domain, its BMC and the daemon. Fields drop in order: the BMC, then
/// the daemon (which destroys the domain).
pub struct RedfishNode {
    console: Console,
    pub spec: DomainSpec,
    pub bmc: SushyLibvirt,
    pub libvirtd: Libvirtd,
    pub username: String,
    pub password: String,
}

impl RedfishNode {
    /// Starts a daemon and the emulator under `dir` and defines `spec` (powered off).
    pub fn start(spec: DomainSpec, dir: &Path) -> Result<RedfishNode, Error> {
        let libvirtd = Libvirtd::start(&dir.join("libvirt"))?;
        libvirtd.define_pool("default", &dir.join("pool"))?;
        // The disk's directory as a pool too: sushy's libvirt driver reports only disks
        // that are pool volumes in SimpleStorage (out-of-band inspection's local_gb).
        if let Some(disks) = spec.disk.parent() {
            libvirtd.define_pool("disks", disks)?;
        }
        spec.define(&libvirtd, dir)?;
        let (username, password) = ("admin".to_string(), "ferrite-bmc".to_string());
        let sushy_dir = dir.join("sushy");
        std::fs::create_dir_all(&sushy_dir).map_err(io("creating the emulator's directory"))?;
        let bmc = SushyLibvirt::start(&libvirtd, &sushy_dir, "default", &username, &password)?;
        Ok(RedfishNode {
            console: Console::new(&spec.console),
            spec,
            bmc,
            libvirtd,
            username,
            password,
        })
    }

    pub fn console(&self) -> &Console {
        &self.console
    }

    /// Waits for `pattern` on the console after the previous match.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String, Error> {
        self.console.wait_for(pattern, timeout)
    }

    /// The Redfish system id of the node (the domain's UUID).
    pub fn system_id(&self) -> &str {
        &self.spec.uuid
    }

    /// `GET path` on the BMC with its credentials: status and parsed body.
    pub fn redfish_get(&self, path: &str) -> Result<(u16, serde_json::Value), Error> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.bmc.port()));
        let auth = format!(
            "Basic {}",
            crate::sushy::base64(format!("{}:{}", self.username, self.password).as_bytes())
        );
        let (status, body) =
            crate::http::call_with_headers(addr, "GET", path, &[("Authorization", &auth)], None)
                .map_err(io("calling the BMC"))?;
        let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
        Ok((status, v))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn domain_xml_has_uefi_a_cd_bus_a_console_file_and_the_agent_forward() {
        let spec = super::DomainSpec {
            name: "n<1>".into(),
            uuid: "5e7f0000-0000-4000-8000-00000000f001".into(),
            memory_mib: 512,
            disk: "/tmp/d.raw".into(),
            disk_serial: "S".into(),
            mac: "52:54:00:fe:30:01".into(),
            hostfwd: vec![(40001, 9999)],
            nvram: "/tmp/v.fd".into(),
            console: "/tmp/c.log".into(),
        };
        let x = spec.xml();
        assert!(x.contains("<name>n&lt;1&gt;</name>"), "{x}");
        assert!(
            x.contains("type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd"),
            "{x}"
        );
        assert!(x.contains("<domain type='qemu'"), "TCG: {x}");
        assert!(x.contains("<controller type='ide'"), "{x}");
        assert!(
            x.contains("<serial type='file'><source path='/tmp/c.log'"),
            "{x}"
        );
        assert!(x.contains("hostfwd=tcp:127.0.0.1:40001-:9999"), "{x}");
    }
}
