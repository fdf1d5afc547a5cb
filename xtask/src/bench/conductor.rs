//! `cargo xtask bench conductor`: one `ferrite conductor` process, simulated agents
//! (conductor/examples/heartbeat_load.rs: tokio tasks over real HTTP on loopback)
//! heartbeating against it at 1,000 and 10,000 nodes on SQLite and PostgreSQL;
//! heartbeats/s, p50/p99, conductor RSS, and `GET /v1/nodes?detail=true` latency.
//! Baseline in the same run: OpenStack Ironic in standalone mode (conductor_ironic.rs) when
//! target/ironic-venv exists. The conductor is the `--release` build, as deployed.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::{conductor_ironic, Record};
use crate::util;

/// A child process stopped (the signal, then SIGKILL) and reaped on drop; with `group`,
/// its whole process group (the child leads it) gets the signals.
pub struct Guard {
    pub child: Child,
    sig: i32,
    group: bool,
}

impl Guard {
    fn new(child: Child, sig: i32) -> Guard {
        Guard {
            child,
            sig,
            group: false,
        }
    }

    /// For a child started with `process_group(0)`: SIGTERM to the group.
    pub fn group(child: Child) -> Guard {
        Guard {
            child,
            sig: libc::SIGTERM,
            group: true,
        }
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.id() as i32;
        kill(if self.group { -pid } else { pid }, sig);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.signal(self.sig);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                if self.group {
                    self.signal(libc::SIGKILL); // workers left behind
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a child (or the process group it leads) this process spawned
    // and has not reaped.
    unsafe {
        libc::kill(pid, sig);
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not listen on port {port} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Peak resident memory of a process in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn postgres(dir: &Path) -> anyhow::Result<(Guard, String)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let ids = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"postgres") && f.len() > 3)
        .context("no postgres user: run `cargo xtask deps`")?;
    let (uid, gid): (u32, u32) = (ids[2].parse()?, ids[3].parse()?);
    let bin = ["17", "16", "15"]
        .iter()
        .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
        .find(|p| p.join("postgres").exists())
        .context("PostgreSQL binaries missing: run `cargo xtask deps`")?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    let data = dir.join("data");
    let out = Command::new(bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .uid(uid)
        .gid(gid)
        .output()?;
    if !out.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let port = free_port()?;
    let child = Command::new(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
        ])
        .arg("-k")
        .arg(dir)
        .uid(uid)
        .gid(gid)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let g = Guard::new(child, libc::SIGQUIT);
    wait_port(port, "postgres")?;
    Ok((g, format!("postgres://postgres@127.0.0.1:{port}/postgres")))
}

struct Run {
    figures: Value,
    rss_mib: f64,
}

/// Agents of the lighter heartbeat phase (run before the 64-agent one).
const LOW_AGENTS: usize = 8;

/// Runs the load generator against `url`; its JSON figures.
fn load(load: &Path, url: &str, nodes: usize, mode: &str) -> anyhow::Result<Value> {
    let setup = if mode == "ironic" { "16" } else { "64" };
    let out = Command::new(load)
        .args([
            "--url",
            url,
            "--nodes",
            &nodes.to_string(),
            "--seconds",
            "10",
        ])
        .args([
            "--concurrency",
            "64",
            "--mode",
            mode,
            "--setup-concurrency",
            setup,
        ])
        .args(["--low-concurrency", &LOW_AGENTS.to_string()])
        .output()
        .context("running heartbeat_load")?;
    if !out.status.success() {
        bail!(
            "heartbeat_load --mode {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("heartbeat_load output")
}

fn run_one(bin: &Path, load_bin: &Path, nodes: usize, pg: bool) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let pg_dir = tempfile::tempdir()?;
    let pg = if pg {
        Some(postgres(pg_dir.path())?)
    } else {
        None
    };
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args([
        "conductor",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--host",
        "bench",
    ])
    .arg("--state-dir")
    .arg(dir.path())
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some((_, url)) = &pg {
        cmd.args(["--database-url", url]);
    }
    let conductor = Guard::new(
        cmd.spawn().context("starting ferrite conductor")?,
        libc::SIGTERM,
    );
    wait_port(port, "ferrite conductor")?;
    let figures = load(
        load_bin,
        &format!("http://127.0.0.1:{port}"),
        nodes,
        "ferrite",
    )?;
    let rss_mib = peak_rss_mib(conductor.child.id());
    drop(conductor);
    drop(pg);
    Ok(Run { figures, rss_mib })
}

/// Ironic at `nodes`, or why not.
fn run_ironic(load_bin: &Path, nodes: usize) -> Result<Run, String> {
    if let Some(why) = conductor_ironic::missing() {
        return Err(why);
    }
    let r = (|| {
        let ironic = conductor_ironic::start()?;
        let figures = load(load_bin, &ironic.url, nodes, "ironic")?;
        let rss_mib = conductor_ironic::tree_peak_rss_mib(ironic.guard.child.id());
        Ok::<_, anyhow::Error>(Run { figures, rss_mib })
    })();
    r.map_err(|e| format!("OpenStack Ironic baseline failed in this run: {e:#}"))
}

/// Node counts Ironic is measured at: preparing a node through its API (create, manage,
/// power on, lookup) takes ~0.5 s here (1,000 nodes: ~8 min),
/// so 10,000 nodes only with FERRITE_BENCH_IRONIC_10K=1.
fn ironic_counts() -> Vec<usize> {
    if std::env::var("FERRITE_BENCH_IRONIC_10K").is_ok_and(|v| v == "1") {
        vec![1000, 10_000]
    } else {
        vec![1000]
    }
}

pub fn run() -> anyhow::Result<Vec<Record>> {
    // The deployed build: `cargo build --release`.
    util::cargo(&[
        "build",
        "--release",
        "-p",
        "ferrite-conductor",
        "--bin",
        "ferrite",
        "--example",
        "heartbeat_load",
    ])?;
    let out = util::project_root().join("target/release");
    let (bin, load_bin) = (out.join("ferrite"), out.join("examples/heartbeat_load"));
    let mut ironic = std::collections::HashMap::new();
    for nodes in ironic_counts() {
        println!("bench conductor: OpenStack Ironic, {nodes} nodes");
        let r = run_ironic(&load_bin, nodes);
        if let Err(why) = &r {
            println!("  {why}");
        }
        ironic.insert(nodes, r);
    }
    const IRONIC: &str =
        "OpenStack Ironic (standalone, SQLite, fake-hardware + direct deploy, fast track)";
    let mut records = vec![];
    for (backend, pg) in [("sqlite", false), ("postgres", true)] {
        for nodes in [1000usize, 10_000] {
            println!("bench conductor: {backend}, {nodes} nodes");
            let r = run_one(&bin, &load_bin, nodes, pg)?;
            let f = &r.figures;
            let num = |f: &Value, k: &str| f[k].as_f64().unwrap_or(f64::NAN);
            let tag = format!("{backend} {nodes} nodes");
            // Ironic is measured on SQLite only; PostgreSQL rows get no baseline.
            let base: Result<&Run, String> = match (pg, ironic.get(&nodes)) {
                (true, _) => Err("baseline: Ironic is measured on SQLite only".into()),
                (false, Some(Ok(b))) => Ok(b),
                (false, Some(Err(why))) => Err(why.clone()),
                (false, None) => Err(format!(
                    "OpenStack Ironic not measured at {nodes} nodes in this run (enrolling \
                     through its API is slow; set FERRITE_BENCH_IRONIC_10K=1)"
                )),
            };
            let base_note = match &base {
                Ok(b) => format!(
                    "Ironic: {} heartbeats, {} errors{}, setup {:.0} s",
                    b.figures["heartbeats"],
                    b.figures["errors"],
                    b.figures["first_error"]
                        .as_str()
                        .map(|e| format!(" (first: {e})"))
                        .unwrap_or_default(),
                    num(&b.figures, "setup_s")
                ),
                Err(why) => why.clone(),
            };
            let note = format!(
                "{} heartbeats in 10 s by 64 simulated agents, {} errors; release build; {base_note}",
                f["heartbeats"], f["errors"]
            );
            let rec = |metric: String,
                       unit: &str,
                       v: f64,
                       better: &'static str,
                       key: Option<&str>,
                       note: String| {
                let r = Record::new(&metric, unit, v, better).notes(note);
                match (&base, key) {
                    (Ok(b), Some(k)) => r.baseline(IRONIC, num(&b.figures, k)),
                    (Ok(b), None) => r.baseline(IRONIC, b.rss_mib),
                    _ => r,
                }
            };
            records.push(rec(
                format!("heartbeats/s ({tag})"),
                "1/s",
                num(f, "heartbeats_per_s"),
                "higher",
                Some("heartbeats_per_s"),
                note.clone(),
            ));
            records.push(rec(
                format!("heartbeat p50 ({tag})"),
                "ms",
                num(f, "p50_ms"),
                "lower",
                Some("p50_ms"),
                note.clone(),
            ));
            records.push(rec(
                format!("heartbeat p99 ({tag})"),
                "ms",
                num(f, "p99_ms"),
                "lower",
                Some("p99_ms"),
                note,
            ));
            let low = |k: &str| f["low"][k].as_f64().unwrap_or(f64::NAN);
            let low_note = match &base {
                Ok(b) => format!(
                    "{} heartbeats in 10 s by {LOW_AGENTS} agents (before the 64-agent phase), {} errors; Ironic: {} heartbeats, {} errors{}",
                    f["low"]["heartbeats"], f["low"]["errors"], b.figures["low"]["heartbeats"], b.figures["low"]["errors"],
                    b.figures["low"]["first_error"].as_str().map(|e| format!(" (first: {e})")).unwrap_or_default()
                ),
                Err(why) => format!(
                    "{} heartbeats in 10 s by {LOW_AGENTS} agents, {} errors; {why}",
                    f["low"]["heartbeats"], f["low"]["errors"]
                ),
            };
            for (metric, unit, key, better) in [
                ("heartbeats/s", "1/s", "heartbeats_per_s", "higher"),
                ("heartbeat p99", "ms", "p99_ms", "lower"),
            ] {
                let r = Record::new(
                    &format!("{metric}, {LOW_AGENTS} agents ({tag})"),
                    unit,
                    low(key),
                    better,
                )
                .notes(low_note.clone());
                records.push(match &base {
                    Ok(b) => r.baseline(IRONIC, b.figures["low"][key].as_f64().unwrap_or(f64::NAN)),
                    Err(_) => r,
                });
            }
            records.push(rec(
                format!("conductor peak RSS ({tag})"),
                "MiB",
                r.rss_mib,
                "lower",
                None,
                format!("VmHWM of the ferrite conductor process over setup, heartbeats and listings; Ironic: sum over its processes; {base_note}"),
            ));
            records.push(rec(
                format!("GET /v1/nodes?detail=true ({tag})"),
                "ms",
                num(f, "list_detail_ms"),
                "lower",
                Some("list_detail_ms"),
                format!("first page (1,000 nodes, Ironic's max_limit), median of 5; {base_note}"),
            ));
        }
    }
    Ok(records)
}
