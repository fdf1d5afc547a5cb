//! `cargo xtask bench agent`: the static agent's inventory time against lshw + lsblk + ip,
//! its start-to-first-lookup time against a loopback conductor double, and its size.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::Record;

const INVENTORY_RUNS: usize = 15;
const START_RUNS: usize = 10;
/// The issue's budget for the static binary.
const SIZE_BUDGET: u64 = 8 * 1024 * 1024;

pub fn run() -> anyhow::Result<Vec<Record>> {
    let agent = crate::build_agent()?;
    let size = std::fs::metadata(&agent)?.len();

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..INVENTORY_RUNS {
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

    let mut starts = Vec::new();
    for _ in 0..START_RUNS {
        starts.push(start_to_first_lookup(&agent)?);
    }

    Ok(vec![
        Record::new(
            "inventory wall time (median)",
            "ms",
            median(&mut ours),
            "lower",
        )
        .baseline("lshw -json + lsblk -bJO + ip -j addr", median(&mut theirs))
        .notes(format!(
            "{INVENTORY_RUNS} runs each on this machine, alternating; baseline is the sum of the three"
        )),
        Record::new(
            "agent start to first lookup received (median)",
            "ms",
            median(&mut starts),
            "lower",
        )
        .notes(format!(
            "{START_RUNS} starts of the static agent with --cmdline at a loopback double; \
             includes inventory of this machine, TLS key generation and version discovery; \
             no same-run baseline (IPA is not installed here)"
        )),
        Record::new("static agent binary size", "bytes", size as f64, "lower")
            .baseline("issue 3 budget (8 MiB)", SIZE_BUDGET as f64)
            .notes("target/agent/ferrite-agent, x86_64-unknown-linux-musl, static-pie"),
    ])
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
