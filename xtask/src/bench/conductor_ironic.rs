//! The same-run baseline of `cargo xtask bench conductor`: OpenStack Ironic from PyPI in
//! standalone mode (noauth, no message bus, fake-hardware with fast track) on PostgreSQL,
//! API workers = cores, logging at WARNING like ours, on a free loopback port, driven by
//! the same load generator in `--mode ironic`.
//!
//! `cargo xtask deps` makes `target/ironic-venv` (ironic and psycopg2 from PyPI); without
//! it the baseline is reported as missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use super::conductor::{free_port, wait_port, Guard};
use crate::util;

/// Where the bench looks for Ironic.
pub fn venv() -> PathBuf {
    util::project_root().join("target/ironic-venv")
}

/// Why Ironic cannot be measured, or `None` when its venv is there.
pub fn missing() -> Option<String> {
    let bin = venv().join("bin/ironic");
    if bin.exists() {
        return None;
    }
    Some(format!(
        "OpenStack Ironic baseline not measured: {} is missing (run `cargo xtask deps`: \
         it makes target/ironic-venv with ironic and psycopg2-binary from PyPI)",
        bin.display()
    ))
}

/// ../shared/baselines/ironic-standalone.conf, plus what heartbeats need: the `direct`
/// deploy interface (it records heartbeats; `fake` ignores them), fast track (lookup and
/// heartbeat of a powered-on `manageable` node), and plain-HTTP agent callbacks; and what
/// makes it Ironic's best standalone configuration here: PostgreSQL at `database`, one API
/// worker per core, and WARNING-level logging (ours runs at `warn`).
fn config(state: &Path, port: u16, database: &str, workers: usize) -> String {
    let s = state.display();
    format!(
        "[DEFAULT]
debug = false
default_log_levels = ironic=WARNING,ironic_lib=WARNING,oslo_db=WARNING,oslo_service=WARNING,oslo_concurrency=WARNING,oslo_messaging=WARNING,oslo_policy=WARNING,sqlalchemy=WARNING,stevedore=WARNING,cotyledon=WARNING,futurist=WARNING,keystonemiddleware=WARNING,urllib3=WARNING,wsgi=WARNING,eventlet=WARNING,werkzeug=WARNING
auth_strategy = noauth
rpc_transport = none
host = bench
enabled_hardware_types = fake-hardware
enabled_boot_interfaces = fake
enabled_deploy_interfaces = direct,fake
enabled_power_interfaces = fake
enabled_management_interfaces = fake
enabled_inspect_interfaces = no-inspect
enabled_network_interfaces = noop
enabled_console_interfaces = no-console
enabled_raid_interfaces = no-raid
enabled_rescue_interfaces = no-rescue
enabled_bios_interfaces = no-bios
enabled_vendor_interfaces = no-vendor
enabled_firmware_interfaces = no-firmware
default_network_interface = noop
[database]
connection = {database}
[api]
host_ip = 127.0.0.1
port = {port}
api_workers = {workers}
[conductor]
automated_clean = false
[deploy]
fast_track = true
[agent]
require_tls = false
[dhcp]
dhcp_provider = none
[oslo_concurrency]
lock_path = {s}/locks
"
    )
}

/// The fleet bench's Ironic: the `ipmi` hardware type (ipmitool against ferrite-sim's
/// RMCP+ BMCs, at most one command a second per BMC: `[ipmi]min_command_interval` 1, where
/// the default is 5 and 0 divides by zero), `ipxe` boot (its `ipmi` type has no fake boot:
/// it stages the deploy kernel and ramdisk the simulator serves and writes iPXE scripts
/// nobody fetches), `direct` deploy to the simulated agents, no automated cleaning (the
/// wave measures deploys), the API URL for agents from `[service_catalog]endpoint_override`
/// (there is no Keystone), PostgreSQL at `database`, one API worker per core, WARNING logs.
fn fleet_config(state: &Path, port: u16, database: &str, workers: usize) -> String {
    let s = state.display();
    format!(
        "[DEFAULT]
debug = false
default_log_levels = ironic=WARNING,ironic_lib=WARNING,oslo_db=WARNING,oslo_service=WARNING,oslo_concurrency=WARNING,oslo_messaging=WARNING,oslo_policy=WARNING,sqlalchemy=WARNING,stevedore=WARNING,cotyledon=WARNING,futurist=WARNING,keystonemiddleware=WARNING,urllib3=WARNING,wsgi=WARNING,eventlet=WARNING,werkzeug=WARNING
auth_strategy = noauth
rpc_transport = none
host = bench
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
enabled_vendor_interfaces = no-vendor,ipmitool
enabled_firmware_interfaces = no-firmware
default_network_interface = noop
[database]
connection = {database}
[api]
host_ip = 127.0.0.1
port = {port}
api_workers = {workers}
[service_catalog]
endpoint_override = http://127.0.0.1:{port}
[conductor]
automated_clean = false
[deploy]
http_url = http://127.0.0.1:{port}/unused
http_root = {s}/http
[pxe]
tftp_root = {s}/tftp
tftp_master_path = {s}/tftp/master
[ipmi]
min_command_interval = 1
[agent]
require_tls = false
[dhcp]
dhcp_provider = none
[oslo_concurrency]
lock_path = {s}/locks
"
    )
}

/// Which Ironic configuration [`start_with`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// fake-hardware, for the heartbeat bench.
    Fake,
    /// ipmi + ipxe + direct, for the fleet bench.
    Ipmi,
}

/// A running standalone Ironic: its process group and API URL.
pub struct Ironic {
    pub guard: Guard,
    pub url: String,
    _dir: tempfile::TempDir,
}

/// Starts Ironic on the PostgreSQL database at `database` (a `postgres://` URL).
pub fn start(database: &str) -> anyhow::Result<Ironic> {
    start_with(database, Flavor::Fake)
}

/// [`start`] with the configuration of `flavor`.
pub fn start_with(database: &str, flavor: Flavor) -> anyhow::Result<Ironic> {
    let dir = tempfile::tempdir()?;
    for d in ["locks", "http", "tftp/master"] {
        std::fs::create_dir_all(dir.path().join(d))?;
    }
    let port = free_port()?;
    let conf = dir.path().join("ironic.conf");
    let database = database.replacen("postgres://", "postgresql+psycopg2://", 1);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let text = match flavor {
        Flavor::Fake => config(dir.path(), port, &database, workers),
        Flavor::Ipmi => fleet_config(dir.path(), port, &database, workers),
    };
    std::fs::write(&conf, text)?;
    let bin = venv().join("bin");
    let out = Command::new(bin.join("ironic-dbsync"))
        .arg("--config-file")
        .arg(&conf)
        .arg("create_schema")
        .output()
        .context("running ironic-dbsync")?;
    if !out.status.success() {
        bail!(
            "ironic-dbsync create_schema failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = std::fs::File::create(dir.path().join("ironic.log"))?;
    let mut cmd = Command::new(bin.join("ironic"));
    cmd.arg("--config-file")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log);
    // Its own process group, so the guard stops the API workers with the master.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let guard = Guard::group(cmd.spawn().context("starting ironic")?);
    wait_port(port, "ironic").with_context(|| {
        let log = std::fs::read_to_string(dir.path().join("ironic.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        format!(
            "ironic log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    })?;
    Ok(Ironic {
        guard,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    })
}

/// User + system CPU seconds of `pid` and all its descendants, each with its reaped
/// children's (ipmitool runs, API workers that ended).
pub fn tree_cpu_secs(pid: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    descendants(pid)
        .iter()
        .map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let f: Vec<f64> = stat
                .rsplit_once(')')
                .map(|(_, r)| r)
                .unwrap_or("")
                .split_whitespace()
                .map(|v| v.parse().unwrap_or(0.0))
                .collect();
            // utime, stime, cutime, cstime: fields 14–17 of proc(5); index 0 is field 3.
            f.get(11..15).map_or(0.0, |v| v.iter().sum::<f64>())
        })
        .sum::<f64>()
        / ticks
}

/// `pid` and its descendants.
fn descendants(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let mut i = 0;
    while i < pids.len() {
        let parent = pids[i];
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let stat =
                    std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
                // The parent pid is the second field after the parenthesised command.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) && !pids.contains(&child) {
                    pids.push(child);
                }
            }
        }
        i += 1;
    }
    pids
}

/// Sum of the peak RSS (VmHWM) of `pid` and its descendants, in MiB.
pub fn tree_peak_rss_mib(pid: u32) -> f64 {
    descendants(pid)
        .iter()
        .map(|p| super::conductor::peak_rss_mib(*p))
        .sum()
}
