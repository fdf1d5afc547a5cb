//! Test support (feature `emulator`): runs sushy-tools' `sushy-emulator` with its fake
//! systems driver (no libvirt) on a free 127.0.0.1 port, waits until it accepts
//! connections, and kills it on drop.
//!
//! The fake driver keeps power, boot device, boot mode, NICs and virtual media per system,
//! but no CPU, memory or processor data; the emulator's configuration (a Python file it
//! executes) gives its fake systems those from their configuration entries, so the
//! emulator's own templates render `ProcessorSummary`, `MemorySummary` and `Processors`.
//! Disks come from the emulator's own static Storage/Drives configuration.
//!
//! ```no_run
//! # fn main() -> Result<(), ferrite_redfish::emulator::EmulatorError> {
//! use ferrite_redfish::emulator::{Emulator, FakeSystem};
//! let bmc = Emulator::builder().system(FakeSystem::new("node-0")).user("admin", "pw").start()?;
//! // bmc.url(), bmc.system_path(0), ...; killed when `bmc` drops.
//! # Ok(()) }
//! ```

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EmulatorError {
    #[error("cannot prepare the sushy-emulator directory")]
    Io(#[source] std::io::Error),
    #[error(
        "cannot run {program:?}: run `cargo xtask deps` (it makes target/sushy-venv), or set \
         FERRITE_SUSHY_EMULATOR"
    )]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot hash the emulator password")]
    Hash(#[source] bcrypt::BcryptError),
    #[error("sushy-emulator exited before listening ({status}); its output:\n{output}")]
    Exited { status: String, output: String },
    #[error("sushy-emulator did not listen on {addr} within {waited:?}; its output:\n{output}")]
    NoAnswer {
        addr: SocketAddr,
        waited: Duration,
        output: String,
    },
}

/// One system of the fake driver.
#[derive(Debug, Clone)]
pub struct FakeSystem {
    pub name: String,
    /// Set by the builder when empty (the emulator's storage tables are keyed by UUID).
    pub uuid: String,
    pub power_on: bool,
    pub macs: Vec<String>,
    pub cpus: u32,
    pub memory_gib: u32,
    pub disk_bytes: Vec<u64>,
}

impl FakeSystem {
    /// Off, one NIC, 2 CPUs, 4 GiB, one 20 GiB disk.
    pub fn new(name: &str) -> FakeSystem {
        FakeSystem {
            name: name.into(),
            uuid: String::new(),
            power_on: false,
            macs: vec!["52:54:00:12:34:56".into()],
            cpus: 2,
            memory_gib: 4,
            disk_bytes: vec![20 << 30],
        }
    }
    pub fn macs(mut self, macs: &[&str]) -> Self {
        self.macs = macs.iter().map(|m| m.to_string()).collect();
        self
    }
    pub fn cpus(mut self, n: u32) -> Self {
        self.cpus = n;
        self
    }
    pub fn memory_gib(mut self, n: u32) -> Self {
        self.memory_gib = n;
        self
    }
    pub fn disks(mut self, bytes: &[u64]) -> Self {
        self.disk_bytes = bytes.to_vec();
        self
    }
    pub fn powered_on(mut self) -> Self {
        self.power_on = true;
        self
    }
}

/// Configures and starts an [`Emulator`].
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    systems: Vec<FakeSystem>,
    users: Vec<(String, String)>,
    tls: Option<(String, String)>,
    program: String,
    startup_timeout: Duration,
}

/// Where `cargo xtask deps` installs sushy-emulator.
pub fn default_program() -> String {
    std::env::var("FERRITE_SUSHY_EMULATOR").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/sushy-venv/bin/sushy-emulator")
            .display()
            .to_string()
    })
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        EmulatorBuilder {
            systems: Vec::new(),
            users: Vec::new(),
            tls: None,
            program: default_program(),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

impl EmulatorBuilder {
    /// Adds a system (without any call: one `FakeSystem::new("node-0")`).
    pub fn system(mut self, s: FakeSystem) -> Self {
        self.systems.push(s);
        self
    }
    /// Requires basic auth with these credentials (the emulator's htpasswd file).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.into(), password.into()));
        self
    }
    /// Serves HTTPS with this PEM certificate and key.
    pub fn tls(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    pub fn start(mut self) -> Result<Emulator, EmulatorError> {
        if self.systems.is_empty() {
            self.systems.push(FakeSystem::new("node-0"));
        }
        for (i, s) in self.systems.iter_mut().enumerate() {
            if s.uuid.is_empty() {
                s.uuid = format!("5e7f0000-0000-4000-8000-{:012x}", i + 1);
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("ferrite-sushy-")
            .tempdir()
            .map_err(EmulatorError::Io)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(EmulatorError::Io)?
            .port();
        let mut cfg = String::new();
        cfg.push_str(&format!(
            "import json\nSUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\n\
             SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_STATE_DIR = {}\n",
            py_str(&dir.path().join("state"))
        ));
        let systems: Vec<_> = self
            .systems
            .iter()
            .map(|s| {
                json!({
                    "uuid": s.uuid, "name": s.name,
                    "power_state": if s.power_on { "On" } else { "Off" },
                    "external_notifier": false,
                    "nics": s.macs.iter().map(|m| json!({"mac": m})).collect::<Vec<_>>(),
                    "ferrite_cpus": s.cpus, "ferrite_memory_gib": s.memory_gib,
                })
            })
            .collect();
        let mut storage = serde_json::Map::new();
        let mut drives = serde_json::Map::new();
        for s in &self.systems {
            let ids: Vec<String> = (0..s.disk_bytes.len())
                .map(|i| format!("disk{i}"))
                .collect();
            storage.insert(
                s.uuid.clone(),
                json!([{"Id": "1", "Name": "Local Storage Controller",
                        "StorageControllers": [{"MemberId": "0", "Name": "Contoso Integrated RAID",
                                                "SpeedGbps": 12}],
                        "Drives": ids}]),
            );
            let list: Vec<_> = s
                .disk_bytes
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    json!({"Id": format!("disk{i}"), "Name": format!("Drive {i}"),
                           "CapacityBytes": b, "Protocol": "SATA"})
                })
                .collect();
            drives.insert(format!("{}|1", s.uuid), json!(list));
        }
        cfg.push_str(&format!(
            "SUSHY_EMULATOR_FAKE_SYSTEMS = json.loads({})\n\
             SUSHY_EMULATOR_STORAGE = json.loads({})\n\
             SUSHY_EMULATOR_DRIVES = {{tuple(k.split('|')): v for k, v in json.loads({}).items()}}\n",
            py_json(&json!(systems)),
            py_json(&json!(storage)),
            py_json(&json!(drives)),
        ));
        cfg.push_str(FAKE_DRIVER_EXTENSION);
        if !self.users.is_empty() {
            let mut lines = String::new();
            for (u, p) in &self.users {
                let h = bcrypt::hash(p, 4).map_err(EmulatorError::Hash)?;
                lines.push_str(&format!("{u}:{h}\n"));
            }
            let f = dir.path().join("htpasswd");
            std::fs::write(&f, lines).map_err(EmulatorError::Io)?;
            cfg.push_str(&format!("SUSHY_EMULATOR_AUTH_FILE = {}\n", py_str(&f)));
        }
        if let Some((cert, key)) = &self.tls {
            let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&c, cert).map_err(EmulatorError::Io)?;
            std::fs::write(&k, key).map_err(EmulatorError::Io)?;
            cfg.push_str(&format!(
                "SUSHY_EMULATOR_SSL_CERT = {}\nSUSHY_EMULATOR_SSL_KEY = {}\n",
                py_str(&c),
                py_str(&k)
            ));
        }
        let cfg_path = dir.path().join("emulator.conf");
        std::fs::write(&cfg_path, cfg).map_err(EmulatorError::Io)?;
        let log_path = dir.path().join("emulator.log");
        let log = std::fs::File::create(&log_path).map_err(EmulatorError::Io)?;
        let log2 = log.try_clone().map_err(EmulatorError::Io)?;
        let child = Command::new(&self.program)
            .arg("--config")
            .arg(&cfg_path)
            // Inserted virtual media images are downloaded to the temporary directory.
            .env("TMPDIR", dir.path())
            .env_remove("SUSHY_EMULATOR_CONFIG")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| EmulatorError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        let mut emu = Emulator {
            child,
            port,
            https: self.tls.is_some(),
            systems: self.systems,
            log_path,
            _dir: dir,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        loop {
            if let Some(status) = emu.child.try_wait().map_err(EmulatorError::Io)? {
                return Err(EmulatorError::Exited {
                    status: status.to_string(),
                    output: emu.output(),
                });
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(emu);
            }
            if start.elapsed() > self.startup_timeout {
                return Err(EmulatorError::NoAnswer {
                    addr,
                    waited: start.elapsed(),
                    output: emu.output(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Python added to the emulator's configuration: CPU, memory and processor data for the
/// fake driver's systems, read from their `ferrite_*` configuration entries.
const FAKE_DRIVER_EXTENSION: &str = r#"
from sushy_tools.emulator.resources.systems import fakedriver as _fakedriver


def _ferrite_cpus(self, identity):
    return self._get(identity).get('ferrite_cpus')


def _ferrite_memory(self, identity):
    return self._get(identity).get('ferrite_memory_gib')


def _ferrite_processors(self, identity):
    n = self._get(identity).get('ferrite_cpus') or 1
    return [{'id': 'CPU0', 'Id': 'CPU0', 'socket': 'CPU 0', 'model': 'QEMU Virtual CPU',
             'vendor': 'QEMU', 'cores': n, 'threads': n}]


_fakedriver.FakeDriver.get_total_cpus = _ferrite_cpus
_fakedriver.FakeDriver.get_total_memory = _ferrite_memory
_fakedriver.FakeDriver.get_processors = _ferrite_processors
"#;

fn py_str(p: &Path) -> String {
    // A JSON string is a valid Python string literal.
    serde_json::to_string(&p.display().to_string()).expect("strings serialize")
}

fn py_json(v: &serde_json::Value) -> String {
    serde_json::to_string(&v.to_string()).expect("strings serialize")
}

/// A running sushy-emulator; killed (and reaped) on drop.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    port: u16,
    https: bool,
    systems: Vec<FakeSystem>,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Emulator {
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// `http://127.0.0.1:PORT` (https with `tls`).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
    pub fn systems(&self) -> &[FakeSystem] {
        &self.systems
    }
    /// `/redfish/v1/Systems/<uuid>` of system `i`.
    pub fn system_path(&self, i: usize) -> String {
        format!("/redfish/v1/Systems/{}", self.systems[i].uuid)
    }
    /// What the emulator wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
