//! `cargo xtask bench fleet`: three `ferrite conductor` processes on one PostgreSQL drive a
//! `ferrite-sim` fleet (simulated servers: IPMI BMCs on UDP, agents over HTTP, real
//! protocols). N nodes (default 10,000; `--nodes`) are enrolled through the API, two waves
//! (default 1,000 each; `--wave`) are managed and cleaned, then the first is deployed at
//! once with a simulated boot of 5 s and image write of 10 s. The agents' lookups and
//! heartbeats go to one conductor (one address, as behind a load balancer), which forwards
//! each to the node's owner; the bench's API requests go round-robin to the three.
//! Figures: wall time from the first deploy request to the last `active` against the
//! simulated per-node work (boot + write + reboot), conductor CPU seconds per deploy (the
//! three summed), PostgreSQL statements and transactions per deploy, heartbeat p99 during
//! the wave (measured by the simulated agents), peak RSS per conductor, enrollment rate.
//! Then the takeover: the second wave is deployed and one conductor (not the one the
//! agents talk to) is killed with SIGKILL while its nodes are mid-deploy; the time until
//! none of the wave's nodes is reserved by or assigned to it, and whether they all end
//! `active`. Baseline in the same run: OpenStack Ironic 39 (standalone, PostgreSQL,
//! `ipmi` hardware type with ipmitool, `ipxe` boot, `direct` deploy) drives its own
//! ferrite-sim fleet through a wave of `--ironic-wave` nodes (default 100: Ironic's API
//! enrolls a few nodes a second and runs ipmitool processes for every BMC call, so 10,000
//! enrolled and 1,000 at once do not fit a run on 2 cores); the three Ferrite conductors
//! deploy a wave of the same size from their fleet for the ratio.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::conductor::{free_port, peak_rss_mib, postgres_with, wait_port, Guard};
use super::{conductor_ironic, Record, Size};

/// `--nodes` / `--wave` / `--ironic-wave` of `cargo xtask bench fleet`.
static SIZES: OnceLock<(Option<usize>, Option<usize>, Option<usize>)> = OnceLock::new();

pub fn set_sizes(nodes: Option<usize>, wave: Option<usize>, ironic_wave: Option<usize>) {
    let _ = SIZES.set((nodes, wave, ironic_wave));
}

const VERSION: &str = "1.68";
/// Deploy and setup requests in flight at once.
const CONCURRENCY: usize = 64;
/// Conductor processes sharing the database.
const CONDUCTORS: usize = 3;
/// The one the agents' lookups and heartbeats go to (and enrollment), never killed.
const FRONT: usize = 0;
/// The one killed for the takeover figure.
const VICTIM: usize = CONDUCTORS - 1;

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
    /// Conductor API URLs, used round-robin; a killed conductor's is removed.
    bases: RwLock<Vec<String>>,
    next: AtomicUsize,
    http: reqwest::Client,
}

impl Api {
    fn base(&self) -> String {
        let bases = self.bases.read().unwrap_or_else(|p| p.into_inner());
        bases[self.next.fetch_add(1, Ordering::Relaxed) % bases.len()].clone()
    }

    fn forget(&self, url: &str) {
        self.bases
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|b| b != url);
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base()))
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

/// Runs one SQL statement with psql against `db`; its unaligned output.
fn sql(db: &str, query: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .arg(db)
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", query])
        .output()
        .context("running psql (PostgreSQL's client)")?;
    if !out.status.success() {
        bail!(
            "psql {query:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// PostgreSQL's counters: statements (pg_stat_statements, BEGIN/COMMIT included), of
/// which INSERT/UPDATE/DELETE, and transactions (pg_stat_database).
#[derive(Debug, Clone, Copy, Default)]
struct PgCounts {
    statements: f64,
    writes: f64,
    xacts: f64,
}

impl PgCounts {
    fn read(db: &str) -> anyhow::Result<PgCounts> {
        let row = sql(
            db,
            "SELECT coalesce(sum(calls), 0), \
                    coalesce(sum(calls) FILTER (WHERE query ~* '^\\s*(insert|update|delete)'), 0), \
                    (SELECT xact_commit + xact_rollback FROM pg_stat_database \
                      WHERE datname = current_database()) \
             FROM pg_stat_statements WHERE query !~* 'pg_stat'",
        )?;
        let v: Vec<f64> = row
            .split('|')
            .map(|x| x.parse().unwrap_or(f64::NAN))
            .collect();
        match v[..] {
            [statements, writes, xacts] => Ok(PgCounts {
                statements,
                writes,
                xacts,
            }),
            _ => bail!("unexpected pg_stat_statements answer {row:?}"),
        }
    }

    fn minus(self, o: PgCounts) -> PgCounts {
        PgCounts {
            statements: self.statements - o.statements,
            writes: self.writes - o.writes,
            xacts: self.xacts - o.xacts,
        }
    }
}

/// The nodes of `names` that meet the SQL condition `cond`, with their provision states.
fn nodes_where(db: &str, names: &[String], cond: &str) -> anyhow::Result<Vec<(String, String)>> {
    let list = names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(",");
    let out = sql(
        db,
        &format!("SELECT name, provision_state FROM nodes WHERE name IN ({list}) AND ({cond})"),
    )?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect())
}

/// Counts of each provision state in `rows`, as "state: n, …".
fn histogram(rows: &[(String, String)]) -> String {
    let mut h = std::collections::BTreeMap::<&str, usize>::new();
    for (_, s) in rows {
        *h.entry(s.as_str()).or_default() += 1;
    }
    h.iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Wave {
    enroll_s: f64,
    setup_s: f64,
    wall_s: f64,
    cpu_per_deploy_s: f64,
    cpu_by_conductor: Vec<f64>,
    pg_cpu_per_deploy_s: f64,
    pg: PgCounts,
    rss_mib: Vec<f64>,
    sim: Value,
    failed: usize,
    takeover: Option<Takeover>,
    /// The wave of the Ironic baseline's size.
    small: Option<Small>,
}

/// A wave's wall time, CPU per deploy (all conductor processes) and the simulator's
/// counters over it.
struct Small {
    wall_s: f64,
    cpu_per_deploy_s: f64,
    sim: Value,
}

struct Takeover {
    wave: usize,
    /// The victim's nodes in the wave when it was killed, and their states then.
    owned: usize,
    states_at_kill: String,
    /// Kill to no wave node reserved by or assigned to the dead conductor.
    owned_again_s: f64,
    /// Kill to the last of the victim's nodes `active`.
    active_s: f64,
    active: usize,
    failed: Vec<(String, Value)>,
    writes_max: Value,
}

/// Cluster timings: the conductors' heartbeat period and dead-after, and the periodic tick
/// that runs takeovers.
struct Timings {
    heartbeat_s: f64,
    dead_after_s: f64,
    periodic_s: Option<f64>,
}

pub fn run(size: Size) -> anyhow::Result<Vec<Record>> {
    let (nodes_flag, wave_flag, ironic_flag) = SIZES.get().copied().unwrap_or((None, None, None));
    let nodes = size.pick(nodes_flag.unwrap_or(10_000), nodes_flag.unwrap_or(23));
    let wave = size
        .pick(wave_flag.unwrap_or(1_000), wave_flag.unwrap_or(10))
        .min(nodes);
    // The same-size comparison with Ironic takes the nodes after the first wave.
    let small = size
        .pick(ironic_flag.unwrap_or(100), ironic_flag.unwrap_or(3))
        .min(nodes - wave);
    // The smoke run writes for 2 s so that the takeover has a mid-deploy to interrupt.
    let (boot_s, write_s) = size.pick((5.0, 10.0), (0.2, 2.0));
    // Full: the conductors' defaults but for a 1 s heartbeat and 10 s dead-after (the
    // default periodic tick, 10 s, runs the takeover). Smoke: everything short.
    let timings = size.pick(
        Timings {
            heartbeat_s: 1.0,
            dead_after_s: 10.0,
            periodic_s: None,
        },
        Timings {
            heartbeat_s: 0.5,
            dead_after_s: 2.0,
            periodic_s: Some(1.0),
        },
    );
    let profile = size.pick("release", "dev");
    // With the conductor bench's example: the same feature set, so one (slow, fat-LTO)
    // release build of `ferrite` serves both benches.
    let out = super::build(
        size,
        &[
            "-p",
            "ferrite-conductor",
            "--bin",
            "ferrite",
            "--example",
            "heartbeat_load",
            "-p",
            "ferrite-sim",
            "--bin",
            "ferrite-sim",
        ],
    )?;
    println!(
        "bench fleet: {CONDUCTORS} conductors, {nodes} nodes, a wave of {wave}, boot {boot_s} s, \
         write {write_s} s ({profile} build)"
    );
    let w = measure(&out, nodes, (wave, small), boot_s, write_s, &timings, size)?;
    println!("bench fleet: OpenStack Ironic, a wave of {small} on its own fleet of {small}");
    let ironic = if small == 0 {
        Err("no nodes left for a same-size wave".to_string())
    } else {
        ironic_wave(&out, small, boot_s, write_s, size)
    };
    if let Err(why) = &ironic {
        println!("  {why}");
    }
    let work = boot_s + write_s + boot_s;
    let sim = &w.sim;
    let periodic = timings
        .periodic_s
        .map_or("default 10 s".to_string(), |p| format!("{p} s"));
    let base_note = format!(
        "{nodes} nodes enrolled, a wave of {wave} deployed at once; {CONDUCTORS} ferrite \
         conductors ({profile} build, --heartbeat-interval {} --dead-after {}, periodic tick \
         {periodic}) on one PostgreSQL; the simulated agents' lookups and heartbeats (and the \
         enrollment) go to conductor {FRONT}, which forwards each to the node's owner; the \
         bench's manage/provide/deploy requests and polls go round-robin to the three; \
         ferrite-sim in another process (boot {boot_s} s, write {write_s} s, agents heartbeat \
         as the real agent: heartbeat_timeout × 0.3–0.6, early after a command)",
        timings.heartbeat_s, timings.dead_after_s
    );
    let verified = format!(
        "each wave node reached active through the API ({} failed); the simulator counted {} \
         image writes (at most {} per node), {} heartbeats with {} errors over the wave",
        w.failed,
        sim["writes"],
        sim["max_writes_per_node"],
        sim["heartbeats"],
        sim["heartbeat_errors"]
    );
    let per = |v: f64| v / wave as f64;
    let mut records = vec![
        Record::new(
            &format!("fleet wave wall time ({wave} deploys, {CONDUCTORS} conductors)"),
            "s",
            w.wall_s,
            "lower",
        )
        .baseline("simulated per-node work (boot + write + reboot)", work)
        .notes(format!(
            "first deploy request to the last node active; {:.2}x the per-node work of {work:.1} s \
             (the issue's bound: 1.5x); a node is active once its instance is powered on (the \
             conductor does not wait for the OS to boot), so the wave holds boot + write and \
             the orchestration: {:.2}x boot + write ({:.1} s); wave setup (manage, automated \
             cleaning of both waves) {:.1} s; {base_note}",
            w.wall_s / work,
            w.wall_s / (boot_s + write_s),
            boot_s + write_s,
            w.setup_s
        ))
        .verified(verified.clone()),
        Record::new(
            "conductor CPU per deploy (3 conductors summed)",
            "s",
            w.cpu_per_deploy_s,
            "lower",
        )
        .notes(format!(
            "user + system CPU of the {CONDUCTORS} conductor processes during the wave / \
             {wave}; by conductor (s per deploy): {}; {base_note}",
            w.cpu_by_conductor
                .iter()
                .map(|c| format!("{:.4}", per(*c)))
                .collect::<Vec<_>>()
                .join(", ")
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
            "PostgreSQL statements per deploy",
            "1",
            per(w.pg.statements),
            "lower",
        )
        .notes(format!(
            "pg_stat_statements (shared_preload_libraries, reset before the wave): sum of calls \
             during the wave / {wave}, BEGIN/COMMIT included; {:.1} of them INSERT/UPDATE/DELETE \
             per deploy; transactions (pg_stat_database xact_commit + xact_rollback delta, \
             flushed by the backends up to 10 s late) {:.1} per deploy; includes the \
             conductors' background work (membership heartbeats and reads, power sync, \
             periodic checks) and the bench's state polls (GET /v1/nodes every 250 ms) during \
             the wave; {base_note}",
            per(w.pg.writes),
            per(w.pg.xacts)
        ))
        .verified(verified.clone()),
        Record::new(
            "heartbeat p99 during the wave",
            "ms",
            sim["heartbeat_p99_ms"].as_f64().unwrap_or(f64::NAN),
            "lower",
        )
        .notes(format!(
            "round trip seen by the simulated agents, to conductor {FRONT} and forwarded to \
             the node's owner for 2 in 3 nodes (p50 {} ms, max {} ms); {base_note}",
            sim["heartbeat_p50_ms"], sim["heartbeat_max_ms"]
        ))
        .verified(verified.clone()),
    ];
    for (i, rss) in w.rss_mib.iter().enumerate() {
        records.push(
            Record::new(
                &format!("conductor {i} peak RSS (fleet)"),
                "MiB",
                *rss,
                "lower",
            )
            .notes(format!(
                "VmHWM of conductor {i}{} over enrollment, setup and the wave{}; {base_note}",
                if i == FRONT {
                    " (receives every agent lookup and heartbeat, and the enrollment)"
                } else {
                    ""
                },
                if i == VICTIM {
                    " (read before it is killed)"
                } else {
                    ""
                }
            ))
            .verified(verified.clone()),
        );
    }
    records.push(
        Record::new(
            &format!("enroll {nodes} nodes (node + 2 ports each)"),
            "nodes/s",
            nodes as f64 / w.enroll_s,
            "higher",
        )
        .notes(format!(
            "through conductor {FRONT}'s API by ferrite-sim --enroll, {CONCURRENCY} requests in \
             flight, {:.1} s; {base_note}",
            w.enroll_s
        ))
        .verified(verified),
    );
    records.extend(ironic_records(&w, &ironic, small, &base_note));
    let bound = timings.dead_after_s + 15.0;
    match &w.takeover {
        Some(t) => records.push(
            Record::new(
                &format!("takeover after SIGKILL of 1 of {CONDUCTORS} conductors"),
                "s",
                t.owned_again_s,
                "lower",
            )
            .baseline("--dead-after + 15 s (the issue's bound)", bound)
            .notes(format!(
                "a second wave of {} deployed at once; conductor {VICTIM} killed (SIGKILL) while \
                 it held {} of the wave's nodes ({}); the figure is the time from the kill to \
                 no node of the wave with reservation or conductor naming it (PostgreSQL polled \
                 every 250 ms); ratio against --dead-after ({} s) + 15 s, not a competitor; \
                 its nodes were all active {:.1} s after the kill ({} of {} active, {} failed{}); \
                 {base_note}",
                t.wave,
                t.owned,
                t.states_at_kill,
                timings.dead_after_s,
                t.active_s,
                t.active,
                t.owned,
                t.failed.len(),
                t.failed
                    .first()
                    .map(|(n, e)| format!(", first: {n}: {e}"))
                    .unwrap_or_default()
            ))
            .verified(format!(
                "every node of the second wave polled through the API until active or failed; \
                 the simulator counted at most {} image writes per node over both waves",
                t.writes_max
            )),
        ),
        None => println!(
            "  takeover not measured: {nodes} nodes leave none for a second wave of {wave}"
        ),
    }
    Ok(records)
}

/// Starts conductor `i` of the cluster.
fn start_conductor(
    out: &std::path::Path,
    i: usize,
    state: &std::path::Path,
    db: &str,
    timings: &Timings,
) -> anyhow::Result<(Guard, String)> {
    let port = free_port()?;
    let dir = state.join(format!("conductor-{i}"));
    std::fs::create_dir_all(&dir)?;
    let mut cmd = Command::new(out.join("ferrite"));
    cmd.args([
        "conductor",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--host",
        &format!("fleet-{i}"),
        "--heartbeat-interval",
        &timings.heartbeat_s.to_string(),
        "--dead-after",
        &timings.dead_after_s.to_string(),
    ])
    .arg("--state-dir")
    .arg(&dir)
    .args(["--database-url", db])
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(p) = timings.periodic_s {
        cmd.args(["--periodic-interval", &p.to_string()]);
    }
    let g = Guard::new(
        cmd.spawn()
            .with_context(|| format!("starting ferrite conductor {i}"))?,
        libc::SIGTERM,
    );
    wait_port(port, "ferrite conductor")?;
    Ok((g, format!("http://127.0.0.1:{port}")))
}

fn measure(
    out: &std::path::Path,
    nodes: usize,
    (wave, small): (usize, usize),
    boot_s: f64,
    write_s: f64,
    timings: &Timings,
    size: Size,
) -> anyhow::Result<Wave> {
    let pg_dir = tempfile::tempdir()?;
    let (pg, db) = postgres_with(
        pg_dir.path(),
        &["shared_preload_libraries=pg_stat_statements"],
    )?;
    sql(&db, "CREATE EXTENSION pg_stat_statements")?;
    let state = tempfile::tempdir()?;
    // One at a time: the first creates the schema.
    let mut conductors = vec![];
    for i in 0..CONDUCTORS {
        conductors.push(start_conductor(out, i, state.path(), &db, timings)?);
    }
    let urls: Vec<String> = conductors.iter().map(|(_, u)| u.clone()).collect();
    let front = urls[FRONT].clone();
    // 100 MiB/s: the image size sets the write time.
    let image_mib = ((write_s * 100.0).round() as u64).max(1);
    let mut sim_cmd = Command::new(out.join("ferrite-sim"));
    sim_cmd
        .args([
            "--nodes",
            &nodes.to_string(),
            "--conductor",
            &front,
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
            bases: RwLock::new(urls.clone()),
            next: AtomicUsize::new(0),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(CONCURRENCY)
                .build()?,
        };
        // Every conductor must see the others before work is spread (a read of
        // /v1/conductors also refreshes the reader's membership snapshot).
        let t = Instant::now();
        for url in &urls {
            loop {
                let v: Value = api
                    .http
                    .get(format!("{url}/v1/conductors"))
                    .header("X-OpenStack-Ironic-API-Version", VERSION)
                    .send()
                    .await?
                    .json()
                    .await?;
                let alive = v["conductors"]
                    .as_array()
                    .map_or(0, |c| c.iter().filter(|c| c["alive"] == true).count());
                if alive == CONDUCTORS {
                    break;
                }
                if t.elapsed() > Duration::from_secs(60) {
                    bail!("{url} sees {alive} of {CONDUCTORS} conductors alive after 60 s: {v}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let named = |r: std::ops::Range<usize>| -> Vec<String> {
            r.map(|i| format!("sim-{i:05}")).collect()
        };
        let names = named(0..wave);
        let same_size = named(wave..wave + small);
        let second = wave.min(nodes - wave - small);
        let names2 = named(wave + small..wave + small + second);
        let both: Vec<String> = names
            .iter()
            .chain(&same_size)
            .chain(&names2)
            .cloned()
            .collect();
        let setup = Instant::now();
        let provision = |n: &str| format!("/v1/nodes/{n}/states/provision");
        api.each(
            &both,
            reqwest::Method::PUT,
            provision,
            json!({"target": "manage"}),
            202,
        )
        .await?;
        api.wait_for("manageable", "enroll", &both, Duration::from_secs(600))
            .await?;
        api.each(
            &both,
            reqwest::Method::PUT,
            provision,
            json!({"target": "provide"}),
            202,
        )
        .await?;
        api.wait_for("available", "clean failed", &both, Duration::from_secs(900))
            .await?;
        let patch = json!([{"op": "add", "path": "/instance_info", "value": {
            "image_source": "http://images.invalid/fleet.raw",
            "image_os_hash_algo": "sha256", "image_os_hash_value": "0".repeat(64),
            "image_disk_format": "raw"}}]);
        api.each(
            &both,
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
        let pids: Vec<u32> = conductors.iter().map(|(g, _)| g.child.id()).collect();
        let cpu0: Vec<f64> = pids.iter().map(|p| cpu_secs(*p)).collect();
        let pg0 = tree_cpu_secs(pg.child.id());
        sql(&db, "SELECT pg_stat_statements_reset()")?;
        let counts0 = PgCounts::read(&db)?;
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
        let cpu_by_conductor: Vec<f64> = pids
            .iter()
            .zip(&cpu0)
            .map(|(p, c0)| cpu_secs(*p) - c0)
            .collect();
        let pg_cpu = tree_cpu_secs(pg.child.id()) - pg0;
        let pg_counts = PgCounts::read(&db)?.minus(counts0);
        let sim_stats: Value = api
            .http
            .get(format!("{sim_url}/sim/stats"))
            .send()
            .await?
            .json()
            .await?;
        let failed = api.in_state("deploy failed").await?.len();
        let rss_mib = pids.iter().map(|p| peak_rss_mib(*p)).collect();
        // The wave of Ironic's size, for the same-size ratio.
        let mut small_wave = None;
        if !same_size.is_empty() {
            api.http
                .post(format!("{sim_url}/sim/stats/reset"))
                .send()
                .await?;
            let cpu0: f64 = pids.iter().map(|p| cpu_secs(*p)).sum();
            let t = Instant::now();
            api.each(
                &same_size,
                reqwest::Method::PUT,
                provision,
                json!({"target": "active"}),
                202,
            )
            .await?;
            api.wait_for(
                "active",
                "deploy failed",
                &same_size,
                Duration::from_secs(900),
            )
            .await?;
            let wall = t.elapsed().as_secs_f64();
            let cpu: f64 = pids.iter().map(|p| cpu_secs(*p)).sum::<f64>() - cpu0;
            let stats: Value = api
                .http
                .get(format!("{sim_url}/sim/stats"))
                .send()
                .await?
                .json()
                .await?;
            small_wave = Some(Small {
                wall_s: wall,
                cpu_per_deploy_s: cpu / same_size.len() as f64,
                sim: stats,
            });
        }
        let takeover = if names2.is_empty() {
            None
        } else {
            Some(
                takeover(
                    &api,
                    &db,
                    &names2,
                    &mut conductors[VICTIM].0,
                    &urls[VICTIM],
                    boot_s + write_s / 2.0,
                    &sim_url,
                )
                .await?,
            )
        };
        Ok::<_, anyhow::Error>(Wave {
            enroll_s,
            setup_s,
            wall_s,
            cpu_per_deploy_s: cpu_by_conductor.iter().sum::<f64>() / wave as f64,
            cpu_by_conductor,
            pg_cpu_per_deploy_s: pg_cpu / wave as f64,
            pg: pg_counts,
            rss_mib,
            sim: sim_stats,
            failed,
            takeover,
            small: small_wave,
        })
    });
    drop(sim);
    drop(conductors);
    drop(pg);
    r
}

/// Deploys `names` at once, kills the victim conductor while it holds some of them
/// mid-deploy, and times the takeover.
async fn takeover(
    api: &Api,
    db: &str,
    names: &[String],
    victim: &mut Guard,
    victim_url: &str,
    mid_deploy_s: f64,
    sim_url: &str,
) -> anyhow::Result<Takeover> {
    let host = format!("fleet-{VICTIM}");
    let provision = |n: &str| format!("/v1/nodes/{n}/states/provision");
    let start = Instant::now();
    api.each(
        names,
        reqwest::Method::PUT,
        provision,
        json!({"target": "active"}),
        202,
    )
    .await?;
    // Mid-deploy: the agents are writing (half-way through boot + write after the first
    // request), and some of the victim's nodes wait for or run steps.
    let mine = format!("conductor = '{host}' OR reservation = '{host}'");
    let owned = loop {
        let rows = nodes_where(db, names, &mine)?;
        let mid = rows
            .iter()
            .filter(|(_, s)| s == "wait call-back" || s == "deploying")
            .count();
        let t = start.elapsed().as_secs_f64();
        if (mid > 0 && t >= mid_deploy_s) || t > 3.0 * mid_deploy_s {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // SAFETY: kill(2) on a child this process spawned and has not reaped.
    unsafe {
        libc::kill(victim.child.id() as i32, libc::SIGKILL);
    }
    let killed = Instant::now();
    let _ = victim.child.wait();
    api.forget(victim_url);
    let states_at_kill = histogram(&owned);
    println!(
        "  killed conductor {VICTIM} at +{:.1} s holding {} nodes ({states_at_kill})",
        killed.duration_since(start).as_secs_f64(),
        owned.len()
    );
    let owned_names: Vec<String> = owned.iter().map(|(n, _)| n.clone()).collect();
    let limit = Duration::from_secs(600);
    let mut owned_again_s = None;
    let (active_s, active, failed) = loop {
        if owned_again_s.is_none() && nodes_where(db, names, &mine)?.is_empty() {
            owned_again_s = Some(killed.elapsed().as_secs_f64());
        }
        let active = nodes_where(db, &owned_names, "provision_state = 'active'")?.len();
        let failed = nodes_where(db, &owned_names, "provision_state = 'deploy failed'")?;
        if owned_again_s.is_some() && active + failed.len() >= owned_names.len() {
            let errors: Vec<(String, Value)> = api
                .in_state("deploy failed")
                .await?
                .into_iter()
                .filter(|(n, _)| owned_names.contains(n))
                .collect();
            break (killed.elapsed().as_secs_f64(), active, errors);
        }
        if killed.elapsed() > limit {
            bail!(
                "takeover: {} of the dead conductor's {} nodes active after {limit:?}, still \
                 held by it: {:?}",
                active,
                owned_names.len(),
                nodes_where(db, names, &mine)?
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The rest of the wave must end too, on the live conductors.
    api.wait_for("active", "deploy failed", names, limit)
        .await
        .or_else(|e| {
            if failed.is_empty() {
                Err(e)
            } else {
                Ok(Duration::ZERO)
            }
        })?;
    let sim: Value = api
        .http
        .get(format!("{sim_url}/sim/stats"))
        .send()
        .await?
        .json()
        .await?;
    Ok(Takeover {
        wave: names.len(),
        owned: owned_names.len(),
        states_at_kill,
        owned_again_s: owned_again_s.unwrap_or(f64::NAN),
        active_s,
        active,
        failed,
        writes_max: sim["max_writes_per_node"].clone(),
    })
}

/// OpenStack Ironic on its own fresh PostgreSQL drives a fleet of `wave` simulated
/// servers (enrolled with `ipxe` boot for it) through manage, provide and one wave of
/// deploys; or why it could not.
fn ironic_wave(
    out: &std::path::Path,
    wave: usize,
    boot_s: f64,
    write_s: f64,
    size: Size,
) -> Result<Small, String> {
    if let Some(why) = conductor_ironic::missing() {
        return Err(why);
    }
    let r = (|| {
        let pg_dir = tempfile::tempdir()?;
        let (pg, db) = postgres_with(pg_dir.path(), &[])?;
        let ironic = conductor_ironic::start_with(&db, conductor_ironic::Flavor::Ipmi)?;
        let image_mib = ((write_s * 100.0).round() as u64).max(1);
        let mut sim_cmd = Command::new(out.join("ferrite-sim"));
        sim_cmd
            .args(["--nodes", &wave.to_string(), "--conductor", &ironic.url])
            .args(["--enroll", "--boot-interface", "ipxe"])
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
            sim_cmd.args(["--early-heartbeat-gap", "0", "--lookup-interval", "0.2"]);
            sim_cmd.args(["--heartbeat-interval", "1", "--erase-time", "0.1"]);
        }
        let mut sim = Guard::new(
            sim_cmd.spawn().context("starting ferrite-sim")?,
            libc::SIGTERM,
        );
        let stdout = sim.child.stdout.take().context("ferrite-sim stdout")?;
        let sim_url = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("READY ").map(String::from))
            .context("ferrite-sim exited before it was ready (enrollment in Ironic failed?)")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let pid = ironic.guard.child.id();
        let r = rt.block_on(async {
            let api = Api {
                bases: RwLock::new(vec![ironic.url.clone()]),
                next: AtomicUsize::new(0),
                http: reqwest::Client::builder()
                    .pool_max_idle_per_host(CONCURRENCY)
                    .build()?,
            };
            let names: Vec<String> = (0..wave).map(|i| format!("sim-{i:05}")).collect();
            let provision = |n: &str| format!("/v1/nodes/{n}/states/provision");
            api.each(
                &names,
                reqwest::Method::PUT,
                provision,
                json!({"target": "manage"}),
                202,
            )
            .await?;
            api.wait_for("manageable", "enroll", &names, Duration::from_secs(900))
                .await?;
            api.each(
                &names,
                reqwest::Method::PUT,
                provision,
                json!({"target": "provide"}),
                202,
            )
            .await?;
            api.wait_for("available", "clean failed", &names, Duration::from_secs(900))
                .await?;
            // The simulator serves the image (4 KiB of zeros), so Ironic can check its URL.
            let patch = json!([{"op": "add", "path": "/instance_info", "value": {
                "image_source": format!("{sim_url}/sim/files/fleet.raw"),
                "image_os_hash_algo": "sha256",
                "image_os_hash_value": "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7",
                "image_disk_format": "raw"}}]);
            api.each(
                &names,
                reqwest::Method::PATCH,
                |n| format!("/v1/nodes/{n}"),
                patch,
                200,
            )
            .await?;
            api.http
                .post(format!("{sim_url}/sim/stats/reset"))
                .send()
                .await?;
            let cpu0 = conductor_ironic::tree_cpu_secs(pid);
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
            let cpu = conductor_ironic::tree_cpu_secs(pid) - cpu0;
            let stats: Value = api
                .http
                .get(format!("{sim_url}/sim/stats"))
                .send()
                .await?
                .json()
                .await?;
            Ok::<_, anyhow::Error>(Small {
                wall_s,
                cpu_per_deploy_s: cpu / wave as f64,
                sim: stats,
            })
        });
        drop(sim);
        drop(ironic);
        drop(pg);
        r
    })();
    r.map_err(|e| format!("OpenStack Ironic baseline failed in this run: {e:#}"))
}

/// The same-size wave of Ferrite against Ironic's: wall time and CPU per deploy.
fn ironic_records(
    w: &Wave,
    ironic: &Result<Small, String>,
    small: usize,
    base_note: &str,
) -> Vec<Record> {
    let Some(f) = &w.small else {
        println!("  no same-size Ferrite wave: {small} nodes");
        return vec![];
    };
    let name = format!(
        "OpenStack Ironic 39, a wave of {small} on its own fleet of {small} (same simulator)"
    );
    let side = |s: &Small| {
        format!(
            "{} image writes (at most {} per node), {} heartbeats with {} errors, heartbeat p99 \
             {} ms",
            s.sim["writes"],
            s.sim["max_writes_per_node"],
            s.sim["heartbeats"],
            s.sim["heartbeat_errors"],
            s.sim["heartbeat_p99_ms"]
        )
    };
    let ironic_note = match ironic {
        Ok(i) => format!(
            "Ironic: standalone (noauth, no message bus) in one `ironic` process with API workers \
             = cores, on its own PostgreSQL, WARNING logs; ipmi hardware type (an ipmitool \
             process per BMC call, [ipmi]min_command_interval 1 s where the default is 5), \
             ipxe boot (stages the deploy kernel and ramdisk from the simulator; nothing \
             network-boots; its master image cache races at 100 deploys at once: 7 of 100 failed \
             with one deploy kernel URL for all, 8 of 100 with one per node, and an empty \
             [pxe]tftp_master_path fails every deploy in statvfs(None)), direct deploy to the \
             simulated agents, no automated cleaning; \
             CPU: the ironic process tree with its reaped children (ipmitool); {}",
            side(i)
        ),
        Err(why) => why.clone(),
    };
    let verified = format!(
        "both waves polled through their API until every node was active, none failed; \
         ferrite: {}{}",
        side(f),
        match ironic {
            Ok(i) => format!("; Ironic: {}", side(i)),
            Err(_) => String::new(),
        }
    );
    let fig = |g: fn(&Small) -> f64| ironic.as_ref().map(g).unwrap_or(f64::NAN);
    vec![
        Record::new(
            &format!("wave wall time ({small} deploys), ferrite vs OpenStack Ironic"),
            "s",
            f.wall_s,
            "lower",
        )
        .baseline(&name, fig(|s| s.wall_s))
        .notes(format!(
            "first deploy request to the last node active, same boot and write times; ferrite: \
             a wave of {small} from its own fleet (right after the first wave), the same \
             3 conductors; {ironic_note}; {base_note}"
        ))
        .verified(verified.clone()),
        Record::new(
            &format!("CPU per deploy ({small} deploys), ferrite vs OpenStack Ironic"),
            "s",
            f.cpu_per_deploy_s,
            "lower",
        )
        .baseline(&name, fig(|s| s.cpu_per_deploy_s))
        .notes(format!(
            "user + system CPU during the wave / {small}: ferrite's 3 conductor processes \
             (PostgreSQL not counted on either side); {ironic_note}; {base_note}"
        ))
        .verified(verified),
    ]
}
