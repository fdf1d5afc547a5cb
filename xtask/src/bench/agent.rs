//! `cargo xtask bench agent`: the static agent's inventory time against lshw + lsblk + ip
//! and against ironic-python-agent's own `list_hardware_info` in-process, its
//! start-to-first-lookup time against a loopback conductor double, and its size.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{Record, Size};

/// The in-process IPA baseline, run with target/ipa-venv's interpreter.
const IPA_SCRIPT: &str = include_str!("py/ipa_inventory.py");
/// What both inventories must hold.
const INVENTORY_KEYS: &[&str] = &[
    "cpu",
    "memory",
    "interfaces",
    "disks",
    "system_vendor",
    "boot",
    "bmc_address",
    "hostname",
];
/// The issue's budget for the static binary.
const SIZE_BUDGET: u64 = 8 * 1024 * 1024;

pub fn run(size: Size) -> anyhow::Result<Vec<Record>> {
    let inventory_runs = size.pick(15, 2);
    let start_runs = size.pick(10, 1);
    let ipa_calls = size.pick(15, 2);
    let agent = crate::build_agent()?;
    let bytes = std::fs::metadata(&agent)?.len();
    check_inventory(&agent)?;

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..inventory_runs {
        ours.push(time_ok(Command::new(&agent).arg("inventory"))?);
        let mut sum = 0.0;
        for (prog, args) in [
            ("lshw", &["-json"][..]),
            ("lsblk", &["-bJO"][..]),
            ("ip", &["-j", "addr"][..]),
        ] {
            sum += time_ok(Command::new(prog).args(args))
                .with_context(|| format!("baseline {prog} (run `cargo xtask deps`)"))?;
        }
        theirs.push(sum);
    }

    let (ipa_first, mut ipa_later) = ipa_inventory(ipa_calls)?;

    let mut starts = Vec::new();
    for _ in 0..start_runs {
        starts.push(start_to_first_lookup(&agent)?);
    }

    let ours = median(&mut ours);
    let ipa = "ironic-python-agent 13 GenericHardwareManager.list_hardware_info(), in-process";
    let inventories_checked = "ferrite's inventory JSON parsed with cpu, memory, interfaces, \
                               disks (non-empty), system_vendor, boot, bmc_address, hostname; \
                               IPA's returned dict has the same keys, non-empty disks and \
                               interfaces";
    Ok(vec![
        Record::new("inventory wall time (median)", "ms", ours, "lower")
            .baseline("lshw -json + lsblk -bJO + ip -j addr", median(&mut theirs))
            .notes(format!(
                "{inventory_runs} runs each on this machine, alternating; ferrite is the \
                 whole `ferrite-agent inventory` process; the baseline is the sum of the \
                 three processes"
            ))
            .verified("ferrite's inventory JSON parsed and checked; each tool exited 0"),
        Record::new("inventory wall time vs IPA (median)", "ms", ours, "lower")
            .baseline(&format!("{ipa}, later calls"), median(&mut ipa_later))
            .notes(format!(
                "ferrite: median of {inventory_runs} whole processes (start included); IPA: \
                 median of {} calls after the first in one Python process (interpreter start \
                 and imports not counted: they favour IPA); IPA's tools (lshw, lsblk, ip, \
                 udevadm, dmidecode...) run as it runs them",
                ipa_calls - 1
            ))
            .verified(inventories_checked),
        Record::new(
            "inventory wall time vs IPA, first call",
            "ms",
            ours,
            "lower",
        )
        .baseline(&format!("{ipa}, first call"), ipa_first)
        .notes("IPA's first call in a fresh process (what one inspection pays); ferrite as above")
        .verified(inventories_checked),
        Record::new(
            "agent start to first lookup received (median)",
            "ms",
            median(&mut starts),
            "lower",
        )
        .notes(format!(
            "{start_runs} starts of the static agent with --cmdline at a loopback double; \
             includes inventory of this machine, TLS key generation and version discovery; \
             no same-run baseline (IPA's agent start needs a ramdisk, not measured here)"
        ))
        .verified("the double received GET /v1/lookup from the agent"),
        Record::new("static agent binary size", "bytes", bytes as f64, "lower")
            .baseline("issue 3 budget (8 MiB)", SIZE_BUDGET as f64)
            .notes("target/agent/ferrite-agent, x86_64-unknown-linux-musl, static-pie")
            .verified("xtask checked the ELF is statically linked"),
    ])
}

/// Runs `ferrite-agent inventory` once and checks what it prints.
fn check_inventory(agent: &Path) -> anyhow::Result<()> {
    let out = Command::new(agent)
        .arg("inventory")
        .output()
        .context("running ferrite-agent inventory")?;
    if !out.status.success() {
        bail!(
            "ferrite-agent inventory failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let inv: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("ferrite-agent inventory's JSON")?;
    for key in INVENTORY_KEYS {
        if inv.get(key).is_none() {
            bail!("ferrite-agent inventory has no {key:?}");
        }
    }
    for key in ["disks", "interfaces"] {
        if inv[key].as_array().is_none_or(|a| a.is_empty()) {
            bail!("ferrite-agent inventory found no {key}");
        }
    }
    Ok(())
}

/// IPA's `list_hardware_info` `calls` times in one process: the first call's ms and the
/// later calls' ms.
fn ipa_inventory(calls: usize) -> anyhow::Result<(f64, Vec<f64>)> {
    let python = super::venv_python("ipa-venv", "ironic-python-agent")?;
    let out = Command::new(&python)
        .arg("-c")
        .arg(IPA_SCRIPT)
        .arg(calls.to_string())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "IPA's list_hardware_info failed (it needs lshw, udevadm and dmidecode: run \
             `cargo xtask deps`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("the IPA baseline's output")?;
    let keys: Vec<&str> = v["keys"]
        .as_array()
        .map(|a| a.iter().filter_map(|k| k.as_str()).collect())
        .unwrap_or_default();
    for key in INVENTORY_KEYS {
        if !keys.contains(key) {
            bail!("IPA's inventory has no {key:?}: {v}");
        }
    }
    if v["disks"].as_u64() == Some(0) || v["interfaces"].as_u64() == Some(0) {
        bail!("IPA's inventory found no disks or no interfaces: {v}");
    }
    let ms: Vec<f64> = v["ms"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    match ms.split_first() {
        Some((first, later)) if !later.is_empty() => Ok((*first, later.to_vec())),
        _ => bail!("the IPA baseline timed fewer than 2 calls: {v}"),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs a command to completion, output discarded; wall time in ms. Fails on non-zero exit.
fn time_ok(cmd: &mut Command) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("starting {cmd:?}"))?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(ms)
}

/// Kills the agent even when the measurement fails.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the agent pointed at a one-shot HTTP double and measures until its first
/// `GET /v1/lookup` arrives (ms).
fn start_to_first_lookup(agent: &Path) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || serve_double(listener, tx));
    let cmdline = format!(
        "ipa-api-url=http://127.0.0.1:{port} BOOTIF=01-52-54-00-12-34-56 ipa-lookup-interval=0.05"
    );
    let t0 = Instant::now();
    let child = Command::new(agent)
        .args(["--cmdline", &cmdline, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the agent")?;
    let mut child = Reap(child);
    let got = rx.recv_timeout(Duration::from_secs(30));
    if let Ok(Some(status)) = child.0.try_wait() {
        bail!("the agent exited before its first lookup: {status}");
    }
    let at: Instant = got.context("no lookup within 30 s")?;
    Ok((at - t0).as_secs_f64() * 1000.0)
}

/// Answers `GET /` with a version document and reports the arrival time of the first
/// lookup; everything else gets 404. One request per connection.
fn serve_double(listener: TcpListener, found: mpsc::Sender<Instant>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let Ok(Some((line, at))) = read_head(&stream) else {
            continue;
        };
        let path = line.split_whitespace().nth(1).unwrap_or("");
        let (status, body) = if path == "/" {
            (
                "200 OK",
                r#"{"default_version": {"id": "v1", "version": "1.68", "min_version": "1.1"}}"#,
            )
        } else {
            ("404 Not Found", r#"{"error_message": "no such node"}"#)
        };
        let _ = write!(
            &stream,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        if path.starts_with("/v1/lookup") {
            let _ = found.send(at);
            return;
        }
    }
}

/// Reads a request head; returns its first line and when that line arrived.
fn read_head(stream: &TcpStream) -> std::io::Result<Option<(String, Instant)>> {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    if reader.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let at = Instant::now();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    Ok(Some((first.trim_end().to_string(), at)))
}
