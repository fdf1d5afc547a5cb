//! Test support (feature `sim`): runs OpenIPMI's `ipmi_sim` as a simulated BMC on a free
//! 127.0.0.1 UDP port, waits until it answers an ASF ping, and kills it on drop.
//!
//! ```no_run
//! # fn main() -> Result<(), ferrite_ipmi::sim::SimError> {
//! use ferrite_ipmi::sim::SimBmc;
//! let bmc = SimBmc::builder().user("admin", "password").start()?;
//! // bmc.addr(), bmc.ipmitool_args(), bmc.power_on_file(), ... ; killed when `bmc` drops.
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::codec::rmcp;

mod scripts;
use scripts::{write_lan_script, write_state_script};

/// Why a simulated BMC could not be started.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("cannot prepare the ipmi_sim directory")]
    Io(#[source] std::io::Error),
    #[error(
        "cannot run {program:?} (install Debian's `openipmi` package, or set FERRITE_IPMI_SIM)"
    )]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ipmi_sim exited before answering ({status}); its output:\n{output}")]
    Exited { status: String, output: String },
    #[error(
        "ipmi_sim did not answer an ASF ping on {addr} within {waited:?}; its output:\n{output}"
    )]
    NoAnswer {
        addr: SocketAddr,
        waited: Duration,
        output: String,
    },
}

/// One `user` line of lan.conf.
#[derive(Debug, Clone)]
struct SimUser {
    name: String,
    password: String,
    privilege: &'static str,
}

/// Who answers chassis power and boot-device requests.
#[derive(Debug, Clone)]
enum Chassis {
    /// A shell script written by the builder keeps power and boot device in files
    /// (`power`: "0"/"1", `boot`: none/pxe/default/cdrom/bios) and logs each call.
    FileState,
    /// An external program, called as `PROGRAM get power`, `PROGRAM set boot pxe`, …
    Program(String),
    /// No `chassis_control` line: `startcmd` (if any) runs on power on.
    None,
}

/// Configures and starts an [`SimBmc`].
#[derive(Debug, Clone)]
pub struct SimBuilder {
    users: Vec<SimUser>,
    chassis: Chassis,
    startcmd: Option<String>,
    serial_kcs_port: Option<u16>,
    lan_address: Option<(std::net::Ipv4Addr, [u8; 6])>,
    extra_lines: Vec<String>,
    startup_timeout: Duration,
    program: String,
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder {
            users: Vec::new(),
            chassis: Chassis::FileState,
            startcmd: None,
            serial_kcs_port: None,
            lan_address: None,
            extra_lines: Vec::new(),
            startup_timeout: Duration::from_secs(10),
            program: std::env::var("FERRITE_IPMI_SIM").unwrap_or_else(|_| "ipmi_sim".into()),
        }
    }
}

impl SimBuilder {
    /// Adds an administrator user (user ids are assigned from 2 in call order).
    /// Without any call, the BMC has `admin` / `password`.
    pub fn user(self, name: &str, password: &str) -> Self {
        self.user_with_privilege(name, password, "admin")
    }

    /// Adds a user whose maximum privilege is `privilege` ("user", "operator", "admin").
    pub fn user_with_privilege(mut self, name: &str, password: &str, privilege: &str) -> Self {
        let privilege = match privilege {
            "user" => "user",
            "operator" => "operator",
            _ => "admin",
        };
        self.users.push(SimUser {
            name: name.into(),
            password: password.into(),
            privilege,
        });
        self
    }

    /// Hands power and boot device to `program` (lan.conf `chassis_control`), called as
    /// `program get power`, `program set power 1`, `program set boot pxe`, … and answering
    /// `get` with `power:0|1` / `boot:none|pxe|default|cdrom|bios` lines.
    pub fn chassis_control(mut self, program: &str) -> Self {
        self.chassis = Chassis::Program(program.into());
        self
    }

    /// No chassis_control program: power on runs `startcmd` and boot-device commands fail
    /// with "Invalid data field" (ipmi_sim's own behaviour).
    pub fn without_chassis_control(mut self) -> Self {
        self.chassis = Chassis::None;
        self
    }

    /// lan.conf `startcmd`: the command ipmi_sim runs on power on (e.g. a QEMU).
    pub fn startcmd(mut self, cmd: &str) -> Self {
        self.startcmd = Some(cmd.into());
        self
    }

    /// lan.conf `serial kcs 127.0.0.1 PORT codec VM`: where QEMU's `ipmi-bmc-extern`
    /// chardev connects.
    pub fn serial_kcs_port(mut self, port: u16) -> Self {
        self.serial_kcs_port = Some(port);
        self
    }

    /// What the BMC reports as its own LAN address and MAC (Get LAN Configuration
    /// Parameters 3 and 5), through a `lan_config_program` the builder writes.
    pub fn lan_address(mut self, ip: std::net::Ipv4Addr, mac: [u8; 6]) -> Self {
        self.lan_address = Some((ip, mac));
        self
    }

    /// Any further lan.conf line, added inside the MC section (e.g. `poweroff_wait 2`).
    pub fn lan_conf_line(mut self, line: &str) -> Self {
        self.extra_lines.push(line.into());
        self
    }

    /// The ipmi_sim executable (default: `$FERRITE_IPMI_SIM` or `ipmi_sim` on PATH).
    pub fn program(mut self, program: &str) -> Self {
        self.program = program.into();
        self
    }

    /// How long [`SimBuilder::start`] waits for the first pong (default 10 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Writes lan.conf and the .emu file into a fresh temporary directory, starts ipmi_sim
    /// on a free port and returns once it answers. A port race is retried twice.
    pub fn start(mut self) -> Result<SimBmc, SimError> {
        if self.users.is_empty() {
            self = self.user("admin", "password");
        }
        let mut last = None;
        for _ in 0..3 {
            match self.start_once() {
                Ok(bmc) => return Ok(bmc),
                // Another process may have taken the port between our probe and ipmi_sim's bind.
                Err(e @ SimError::Exited { .. }) | Err(e @ SimError::NoAnswer { .. }) => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("three attempts were made"))
    }

    fn start_once(&self) -> Result<SimBmc, SimError> {
        let dir = tempfile::Builder::new()
            .prefix("ferrite-ipmi-sim-")
            .tempdir()
            .map_err(SimError::Io)?;
        let port = free_udp_port().map_err(SimError::Io)?;
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).map_err(SimError::Io)?;
        let chassis_program = match &self.chassis {
            Chassis::FileState => {
                let script = dir.path().join("chassis-control");
                write_state_script(&script, dir.path()).map_err(SimError::Io)?;
                Some(script.display().to_string())
            }
            Chassis::Program(p) => Some(p.clone()),
            Chassis::None => None,
        };
        let lan_program = match self.lan_address {
            Some((ip, mac)) => {
                let script = dir.path().join("lan-config");
                write_lan_script(&script, ip, mac).map_err(SimError::Io)?;
                Some(script.display().to_string())
            }
            None => None,
        };
        let lan_conf = dir.path().join("lan.conf");
        let text = self.lan_conf(port, chassis_program.as_deref(), lan_program.as_deref());
        std::fs::write(&lan_conf, text).map_err(SimError::Io)?;
        let emu = dir.path().join("bmc.emu");
        std::fs::write(&emu, EMU).map_err(SimError::Io)?;
        let log = dir.path().join("ipmi_sim.log");
        let out = std::fs::File::create(&log).map_err(SimError::Io)?;
        let err = out.try_clone().map_err(SimError::Io)?;
        let child = Command::new(&self.program)
            .arg("-c")
            .arg(&lan_conf)
            .arg("-f")
            .arg(&emu)
            .arg("-s")
            .arg(&state)
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| SimError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        let user = &self.users[0];
        let mut bmc = SimBmc {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            username: user.name.clone(),
            password: user.password.clone(),
            file_state: matches!(self.chassis, Chassis::FileState),
        };
        bmc.wait_ready(self.startup_timeout)?;
        Ok(bmc)
    }

    fn lan_conf(
        &self,
        port: u16,
        chassis_program: Option<&str>,
        lan_program: Option<&str>,
    ) -> String {
        let mut c = String::new();
        c.push_str("name \"ferrite-sim\"\nset_working_mc 0x20\n");
        c.push_str("  startlan 1\n");
        let _ = writeln!(c, "    addr 127.0.0.1 {port}");
        c.push_str("    priv_limit admin\n");
        for role in ["callback", "user", "operator", "admin"] {
            let _ = writeln!(c, "    allowed_auths_{role} none md2 md5 straight");
        }
        c.push_str("    guid a123456789abcdefa123456789abcdef\n");
        if let Some(program) = lan_program {
            let _ = writeln!(c, "    lan_config_program \"{program}\"");
        }
        c.push_str("  endlan\n");
        if let Some(program) = chassis_program {
            let _ = writeln!(c, "  chassis_control \"{program}\"");
        }
        if let Some(cmd) = &self.startcmd {
            let _ = writeln!(c, "  startcmd \"{cmd}\"");
        }
        if let Some(p) = self.serial_kcs_port {
            let _ = writeln!(c, "  serial kcs 127.0.0.1 {p} codec VM");
        }
        for line in &self.extra_lines {
            let _ = writeln!(c, "  {line}");
        }
        for (i, u) in self.users.iter().enumerate() {
            let _ = writeln!(
                c,
                "  user {} true \"{}\" \"{}\" {} 10 none md2 md5 straight",
                i + 2,
                u.name,
                u.password,
                u.privilege
            );
        }
        c
    }
}

/// The MC description: a BMC at 0x20 with IPMI 2.0, chassis device support.
const EMU: &str = "mc_setbmc 0x20\n\
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
sel_enable 0x20 1000 0x0a\n\
mc_enable 0x20\n";

fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running `ipmi_sim`; killed and reaped on drop.
#[derive(Debug)]
pub struct SimBmc {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    username: String,
    password: String,
    file_state: bool,
}

impl SimBmc {
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// The LAN address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The first configured user and password.
    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The temporary directory with lan.conf, ipmi_sim.log and the chassis state files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Arguments for `ipmitool` to reach this BMC over lanplus with cipher suite 3.
    pub fn ipmitool_args(&self) -> Vec<String> {
        [
            "-I",
            "lanplus",
            "-C",
            "3",
            "-H",
            "127.0.0.1",
            "-p",
            &self.port().to_string(),
            "-U",
            &self.username,
            "-P",
            &self.password,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// With the built-in chassis program: whether the simulated server is powered on.
    pub fn power_is_on(&self) -> Option<bool> {
        self.state_file("power").map(|v| v == "1")
    }

    /// With the built-in chassis program: the boot device as ipmi_sim named it
    /// (none, pxe, default, cdrom, bios).
    pub fn boot_device(&self) -> Option<String> {
        self.state_file("boot")
    }

    /// With the built-in chassis program: every call ipmi_sim made to it, one per line.
    pub fn chassis_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("chassis.log")).unwrap_or_default()
    }

    fn state_file(&self, name: &str) -> Option<String> {
        if !self.file_state {
            return None;
        }
        std::fs::read_to_string(self.dir().join(name))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// What ipmi_sim has printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir().join("ipmi_sim.log")).unwrap_or_default()
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), SimError> {
        let start = Instant::now();
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(SimError::Io)?;
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(SimError::Io)?;
        let mut tag = 0u8;
        let mut buf = [0u8; 512];
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(SimError::Exited {
                    status: status.to_string(),
                    output: self.output(),
                });
            }
            tag = tag.wrapping_add(1);
            // A send error (e.g. ICMP port unreachable) just means "not yet".
            let _ = socket.send_to(&rmcp::encode_ping(tag), self.addr);
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                if from == self.addr && rmcp::decode_pong(&buf[..n]).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(SimError::NoAnswer {
            addr: self.addr,
            waited: timeout,
            output: self.output(),
        })
    }
}

impl Drop for SimBmc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
