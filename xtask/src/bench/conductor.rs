//! `cargo xtask bench conductor`: one `ferrite conductor` process, simulated agents
//! (conductor/examples/heartbeat_load.rs: tokio tasks over real HTTP on loopback)
//! heartbeating against it at 1,000 and 10,000 nodes on SQLite and PostgreSQL;
//! heartbeats/s, p50/p99, conductor RSS, and `GET /v1/nodes?detail=true` latency.
//! Baseline: OpenStack Ironic in standalone mode when a venv with it exists.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use super::Record;
use crate::util;

/// A child process stopped (SIGTERM, then SIGKILL) and reaped on drop.
struct Guard(Child, i32);

impl Drop for Guard {
    fn drop(&mut self) {
        kill(self.0.id(), self.1);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill(self.0.id(), libc::SIGKILL);
        let _ = self.0.wait();
    }
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child this process spawned and has not reaped.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
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
fn peak_rss_mib(pid: u32) -> f64 {
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
    let g = Guard(child, libc::SIGQUIT);
    wait_port(port, "postgres")?;
    Ok((g, format!("postgres://postgres@127.0.0.1:{port}/postgres")))
}

struct Run {
    figures: Value,
    rss_mib: f64,
}

fn run_one(bin: &Path, load: &Path, nodes: usize, pg: bool) -> anyhow::Result<Run> {
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
    let conductor = Guard(
        cmd.spawn().context("starting ferrite conductor")?,
        libc::SIGTERM,
    );
    wait_port(port, "ferrite conductor")?;
    let out = Command::new(load)
        .args([
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--nodes",
            &nodes.to_string(),
            "--seconds",
            "10",
            "--concurrency",
            "64",
        ])
        .output()
        .context("running heartbeat_load")?;
    if !out.status.success() {
        bail!(
            "heartbeat_load failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let figures: Value = serde_json::from_slice(&out.stdout).context("heartbeat_load output")?;
    let rss_mib = peak_rss_mib(conductor.0.id());
    drop(conductor);
    drop(pg);
    Ok(Run { figures, rss_mib })
}

pub fn run() -> anyhow::Result<Vec<Record>> {
    // FERRITE_BENCH_PROFILE=dev reuses the test build when disk or time is short.
    let profile =
        std::env::var("FERRITE_BENCH_PROFILE").unwrap_or_else(|_| "bench-conductor".into());
    util::cargo(&[
        "build",
        "--profile",
        &profile,
        "-p",
        "ferrite-conductor",
        "--bin",
        "ferrite",
        "--example",
        "heartbeat_load",
    ])?;
    let dir = if profile == "dev" {
        "debug"
    } else {
        profile.as_str()
    };
    let out = util::project_root().join("target").join(dir);
    let (bin, load) = (out.join("ferrite"), out.join("examples/heartbeat_load"));
    let baseline_note =
        "OpenStack Ironic baseline not measured in this run: the standalone Ironic \
        harness for heartbeats (nodes with agent tokens) is not written yet";
    let mut records = vec![];
    for (backend, pg) in [("sqlite", false), ("postgres", true)] {
        for nodes in [1000usize, 10_000] {
            println!("bench conductor: {backend}, {nodes} nodes");
            let r = run_one(&bin, &load, nodes, pg)?;
            let f = &r.figures;
            let num = |k: &str| f[k].as_f64().unwrap_or(f64::NAN);
            let tag = format!("{backend} {nodes} nodes");
            let note = format!("{} heartbeats in 10 s by 64 simulated agents, {} errors; cargo profile {profile}; {baseline_note}", f["heartbeats"], f["errors"]);
            records.push(
                Record::new(
                    &format!("heartbeats/s ({tag})"),
                    "1/s",
                    num("heartbeats_per_s"),
                    "higher",
                )
                .notes(note.clone()),
            );
            records.push(
                Record::new(
                    &format!("heartbeat p50 ({tag})"),
                    "ms",
                    num("p50_ms"),
                    "lower",
                )
                .notes(note.clone()),
            );
            records.push(
                Record::new(
                    &format!("heartbeat p99 ({tag})"),
                    "ms",
                    num("p99_ms"),
                    "lower",
                )
                .notes(note),
            );
            records.push(
                Record::new(
                    &format!("conductor peak RSS ({tag})"),
                    "MiB",
                    r.rss_mib,
                    "lower",
                )
                .notes(
                    "VmHWM of the ferrite conductor process over setup, heartbeats and listings",
                ),
            );
            records.push(
                Record::new(
                    &format!("GET /v1/nodes?detail=true ({tag})"),
                    "ms",
                    num("list_detail_ms"),
                    "lower",
                )
                .notes("first page (1,000 nodes, Ironic's max_limit), median of 5"),
            );
        }
    }
    Ok(records)
}
