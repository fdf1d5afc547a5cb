//! `cargo xtask bench fleet`: one `ferrite conductor` on PostgreSQL drives a `ferrite-sim`
//! fleet (simulated servers: IPMI BMCs on UDP, agents over HTTP, real protocols). N nodes
//! (default 10,000; `--nodes`) are enrolled through the API, a wave (default 1,000;
//! `--wave`) is managed and cleaned, then deployed at once with a simulated boot of 5 s and
//! image write of 10 s. Figures: wall time from the first deploy request to the last
//! `active` against the simulated per-node work (boot + write + reboot), conductor CPU
//! seconds per deploy, heartbeat p99 during the wave (measured by the simulated agents),
//! conductor peak RSS, enrollment rate. The OpenStack Ironic baseline on the same fleet is
//! not wired yet (issue 19): the records say so.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::conductor::{free_port, peak_rss_mib, postgres, wait_port, Guard};
use super::{Record, Size};
use crate::util;

/// `--nodes` / `--wave` of `cargo xtask bench fleet`.
static SIZES: OnceLock<(Option<usize>, Option<usize>)> = OnceLock::new();

pub fn set_sizes(nodes: Option<usize>, wave: Option<usize>) {
    let _ = SIZES.set((nodes, wave));
}

const VERSION: &str = "1.68";
/// Deploy and setup requests in flight at once.
const CONCURRENCY: usize = 64;

/// Fields of /proc/<pid>/stat from the third (state) on; empty when the process is gone.
fn stat_fields(pid: u32) -> Vec<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name, which may hold spaces, in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN))
        .collect()
}

fn ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: u32) -> f64 {
    let f = stat_fields(pid);
    // utime and stime are fields 14 and 15 of proc(5); index 0 is field 3.
    match (f.get(11), f.get(12)) {
        (Some(u), Some(s)) => (u + s) / ticks(),
        _ => f64::NAN,
    }
}

/// CPU seconds of a server and its workers: its own, its reaped children's, and its live
/// children's (PostgreSQL: the postmaster and its backends).
fn tree_cpu_secs(pid: u32) -> f64 {
    let f = stat_fields(pid);
    let own: f64 = f.get(11..15).map(|v| v.iter().sum()).unwrap_or(f64::NAN);
    let mut children = 0.0;
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let c = stat_fields(child);
            if c.get(1).copied() == Some(pid as f64) {
                children += c.get(11).unwrap_or(&0.0) + c.get(12).unwrap_or(&0.0);
            }
        }
    }
    (own + children) / ticks()
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-OpenStack-Ironic-API-Version", VERSION);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.with_context(|| format!("sending {path}"))?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Sends `body` to `path_of(name)` for every name, CONCURRENCY at a time; every answer
    /// must be `want`.
    async fn each(
        &self,
        names: &[String],
        method: reqwest::Method,
        path_of: impl Fn(&str) -> String,
        body: Value,
        want: u16,
    ) -> anyhow::Result<()> {
        use futures_util::stream::{self, StreamExt};
        let results: Vec<anyhow::Result<(u16, Value)>> = stream::iter(names)
            .map(|n| {
                let path = path_of(n);
                let (method, body) = (method.clone(), body.clone());
                async move { self.call(method, &path, Some(body)).await }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for r in results {
            let (s, v) = r?;
            if s != want {
                bail!("{method} answered {s} (wanted {want}): {v}");
            }
        }
        Ok(())
    }

    /// Names of the nodes in `state`.
    async fn in_state(&self, state: &str) -> anyhow::Result<Vec<(String, Value)>> {
        let mut out = vec![];
        let mut marker = String::new();
        loop {
            let path = format!(
                "/v1/nodes?provision_state={}&fields=uuid,name,last_error&limit=1000{marker}",
                state.replace(' ', "%20")
            );
            let (s, v) = self.call(reqwest::Method::GET, &path, None).await?;
            if s != 200 {
                bail!("listing nodes in {state}: {s} {v}");
            }
            let page = v["nodes"].as_array().cloned().unwrap_or_default();
            let last = page
                .last()
                .and_then(|n| n["uuid"].as_str())
                .map(String::from);
            out.extend(page.into_iter().map(|n| {
                (
                    n["name"].as_str().unwrap_or_default().to_string(),
                    n["last_error"].clone(),
                )
            }));
            match last {
                Some(u) if v["next"].is_string() => marker = format!("&marker={u}"),
                _ => return Ok(out),
            }
        }
    }

    /// Waits until the `wave` nodes are in `state` (bails when one lands in `failed`); the
    /// time it took.
    async fn wait_for(
        &self,
        state: &str,
        failed: &str,
        wave: &[String],
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let count = wave.len();
        let ours = |v: Vec<(String, Value)>| -> Vec<(String, Value)> {
            v.into_iter().filter(|(n, _)| wave.contains(n)).collect()
        };
        loop {
            let done = ours(self.in_state(state).await?).len();
            // A node in `enroll` without an error is one the wave has not touched yet.
            let bad: Vec<(String, Value)> = ours(self.in_state(failed).await?)
                .into_iter()
                .filter(|(_, e)| failed != "enroll" || !e.is_null())
                .collect();
            if let Some((name, err)) = bad.first() {
                bail!(
                    "{} nodes ended {failed} (first: {name}: {err}) while waiting for {state}",
                    bad.len()
                );
            }
            if done >= count {
                return Ok(t.elapsed());
            }
            if t.elapsed() > limit {
                bail!("only {done} of {count} nodes reached {state} within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

struct Wave {
    enroll_s: f64,
    setup_s: f64,
    wall_s: f64,
    cpu_per_deploy_s: f64,
    pg_cpu_per_deploy_s: f64,
    rss_mib: f64,
    sim: Value,
    failed: usize,
}

pub fn run(size: Size) -> anyhow::Result<Vec<Record>> {
    let (nodes_flag, wave_flag) = SIZES.get().copied().unwrap_or((None, None));
    let nodes = size.pick(nodes_flag.unwrap_or(10_000), nodes_flag.unwrap_or(20));
    let wave = size
        .pick(wave_flag.unwrap_or(1_000), wave_flag.unwrap_or(10))
        .min(nodes);
    let (boot_s, write_s) = size.pick((5.0, 10.0), (0.2, 0.3));
    let profile = size.pick("release", "dev");
    util::cargo(&[
        "build",
        "--profile",
        profile,
        "-p",
        "ferrite-conductor",
        "--bin",
        "ferrite",
        "-p",
        "ferrite-sim",
        "--bin",
        "ferrite-sim",
    ])?;
    let out = util::project_root()
        .join("target")
        .join(size.pick("release", "debug"));
    println!("bench fleet: {nodes} nodes, a wave of {wave}, boot {boot_s} s, write {write_s} s ({profile} build)");
    let w = measure(&out, nodes, wave, boot_s, write_s, size)?;
    let work = boot_s + write_s + boot_s;
    let sim = &w.sim;
    let base_note = format!(
        "{nodes} nodes enrolled, a wave of {wave} deployed at once; ferrite conductor ({profile} \
         build) on PostgreSQL, one process; ferrite-sim in another process (boot {boot_s} s, \
         write {write_s} s, agents heartbeat as the real agent: heartbeat_timeout × 0.3–0.6, \
         early after a command); OpenStack Ironic on the same fleet: not run yet (issue 19 \
         item 5 baseline left)"
    );
    let verified = format!(
        "each wave node reached active through the API ({} failed); the simulator counted {} \
         image writes (at most {} per node), {} heartbeats with {} errors over the whole run",
        w.failed,
        sim["writes"],
        sim["max_writes_per_node"],
        sim["heartbeats"],
        sim["heartbeat_errors"]
    );
    Ok(vec![
        Record::new(
            &format!("fleet wave wall time ({wave} deploys)"),
            "s",
            w.wall_s,
            "lower",
        )
        .baseline("simulated per-node work (boot + write + reboot)", work)
        .notes(format!(
            "first deploy request to the last node active; {:.2}x the per-node work of {work} s \
                 (the issue's bound: 1.5x); a node is active once its instance is powered on (the \
                 conductor does not wait for the OS to boot), so the wave holds boot + write and \
                 the orchestration: {:.2}x boot + write ({} s); {base_note}",
            w.wall_s / work,
            w.wall_s / (boot_s + write_s),
            boot_s + write_s
        ))
        .verified(verified.clone()),
        Record::new("conductor CPU per deploy", "s", w.cpu_per_deploy_s, "lower")
            .notes(format!(
                "user + system CPU of the conductor process during the wave / {wave}; {base_note}"
            ))
            .verified(verified.clone()),
        Record::new(
            "PostgreSQL CPU per deploy",
            "s",
            w.pg_cpu_per_deploy_s,
            "lower",
        )
        .notes(format!(
            "user + system CPU of the postmaster and its backends during the wave / {wave}; \
                 {base_note}"
        ))
        .verified(verified.clone()),
        Record::new(
            "heartbeat p99 during the wave",
            "ms",
            sim["heartbeat_p99_ms"].as_f64().unwrap_or(f64::NAN),
            "lower",
        )
        .notes(format!(
            "round trip seen by the simulated agents (p50 {} ms, max {} ms); {base_note}",
            sim["heartbeat_p50_ms"], sim["heartbeat_max_ms"]
        ))
        .verified(verified.clone()),
        Record::new("conductor peak RSS (fleet)", "MiB", w.rss_mib, "lower")
            .notes(format!(
                "VmHWM of the conductor over enrollment, setup and the wave; {base_note}"
            ))
            .verified(verified.clone()),
        Record::new(
            &format!("enroll {nodes} nodes (node + 2 ports each)"),
            "nodes/s",
            nodes as f64 / w.enroll_s,
            "higher",
        )
        .notes(format!(
            "through the API, {CONCURRENCY} requests in flight, {:.1} s; wave setup (manage, \
                 automated cleaning) {:.1} s; {base_note}",
            w.enroll_s, w.setup_s
        ))
        .verified(verified),
    ])
}

fn measure(
    out: &std::path::Path,
    nodes: usize,
    wave: usize,
    boot_s: f64,
    write_s: f64,
    size: Size,
) -> anyhow::Result<Wave> {
    let pg_dir = tempfile::tempdir()?;
    let (pg, db) = postgres(pg_dir.path())?;
    let state = tempfile::tempdir()?;
    let port = free_port()?;
    let conductor = Guard::new(
        Command::new(out.join("ferrite"))
            .args([
                "conductor",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--host",
                "fleet",
            ])
            .arg("--state-dir")
            .arg(state.path())
            .args(["--database-url", &db])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting ferrite conductor")?,
        libc::SIGTERM,
    );
    wait_port(port, "ferrite conductor")?;
    let url = format!("http://127.0.0.1:{port}");
    // 100 MiB/s: the image size sets the write time.
    let image_mib = ((write_s * 100.0).round() as u64).max(1);
    let mut sim_cmd = Command::new(out.join("ferrite-sim"));
    sim_cmd
        .args([
            "--nodes",
            &nodes.to_string(),
            "--conductor",
            &url,
            "--enroll",
        ])
        .args(["--enroll-concurrency", &CONCURRENCY.to_string()])
        .args([
            "--boot-time",
            &boot_s.to_string(),
            "--image-mib",
            &image_mib.to_string(),
        ])
        .args(["--write-mib-s", "100", "--seed", "19"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if size == Size::Smoke {
        // Tiny times: heartbeats every second (a heartbeat that finds the node locked is
        // otherwise retried a real agent's period later).
        sim_cmd.args(["--early-heartbeat-gap", "0", "--lookup-interval", "0.2"]);
        sim_cmd.args(["--heartbeat-interval", "1", "--erase-time", "0.1"]);
    }
    let mut sim = Guard::new(
        sim_cmd.spawn().context("starting ferrite-sim")?,
        libc::SIGTERM,
    );
    let stdout = sim.child.stdout.take().context("ferrite-sim stdout")?;
    let mut enroll_s = f64::NAN;
    let mut sim_url = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("ENROLLED ") {
            enroll_s = rest
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN);
        }
        if let Some(u) = line.strip_prefix("READY ") {
            sim_url = u.to_string();
            break;
        }
    }
    if sim_url.is_empty() {
        bail!("ferrite-sim exited before it was ready (enrollment failed?)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let r = rt.block_on(async {
        let api = Api {
            base: url.clone(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(CONCURRENCY)
                .build()?,
        };
        let names: Vec<String> = (0..wave).map(|i| format!("sim-{i:05}")).collect();
        let setup = Instant::now();
        let provision = |n: &str| format!("/v1/nodes/{n}/states/provision");
        api.each(
            &names,
            reqwest::Method::PUT,
            provision,
            json!({"target": "manage"}),
            202,
        )
        .await?;
        api.wait_for("manageable", "enroll", &names, Duration::from_secs(600))
            .await?;
        api.each(
            &names,
            reqwest::Method::PUT,
            provision,
            json!({"target": "provide"}),
            202,
        )
        .await?;
        api.wait_for(
            "available",
            "clean failed",
            &names,
            Duration::from_secs(900),
        )
        .await?;
        let patch = json!([{"op": "add", "path": "/instance_info", "value": {
            "image_source": "http://images.invalid/fleet.raw",
            "image_os_hash_algo": "sha256", "image_os_hash_value": "0".repeat(64),
            "image_disk_format": "raw"}}]);
        api.each(
            &names,
            reqwest::Method::PATCH,
            |n| format!("/v1/nodes/{n}"),
            patch,
            200,
        )
        .await?;
        let setup_s = setup.elapsed().as_secs_f64();
        api.http
            .post(format!("{sim_url}/sim/stats/reset"))
            .send()
            .await?;
        let cpu0 = cpu_secs(conductor.child.id());
        let pg0 = tree_cpu_secs(pg.child.id());
        let t = Instant::now();
        api.each(
            &names,
            reqwest::Method::PUT,
            provision,
            json!({"target": "active"}),
            202,
        )
        .await?;
        api.wait_for("active", "deploy failed", &names, Duration::from_secs(1800))
            .await?;
        let wall_s = t.elapsed().as_secs_f64();
        let cpu = cpu_secs(conductor.child.id()) - cpu0;
        let pg_cpu = tree_cpu_secs(pg.child.id()) - pg0;
        let sim_stats: Value = api
            .http
            .get(format!("{sim_url}/sim/stats"))
            .send()
            .await?
            .json()
            .await?;
        let failed = api.in_state("deploy failed").await?.len();
        Ok::<_, anyhow::Error>(Wave {
            enroll_s,
            setup_s,
            wall_s,
            cpu_per_deploy_s: cpu / wave as f64,
            pg_cpu_per_deploy_s: pg_cpu / wave as f64,
            rss_mib: peak_rss_mib(conductor.child.id()),
            sim: sim_stats,
            failed,
        })
    });
    drop(sim);
    drop(conductor);
    drop(pg);
    r
}
