//! `cargo xtask bench image-write`: the agent's image pipeline against the usual tools,
//! all from a loopback HTTP server in the same run: raw 2 GiB vs `curl | dd oflag=direct`,
//! qcow2 with 2 GiB of data vs IPA's tmpfs download + `qemu-img convert -t none` (wall
//! time and peak RSS), and a sparse image (8 GiB virtual, 512 MiB data) vs a full write.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

use super::fileserver::FileServer;
use super::Record;

const MIB: u64 = 1 << 20;
const RAW_BYTES: u64 = 2048 * MIB;
const SPARSE_VIRTUAL: u64 = 8192 * MIB;
const SPARSE_DATA: u64 = 512 * MIB;
const RAW_RUNS: usize = 3;

/// Pseudo-random, incompressible bytes (xorshift), so no side gains from zeroes.
fn fill_random(f: &mut impl Write, mut n: u64, seed: u64) -> std::io::Result<()> {
    let mut x = seed | 1;
    let mut buf = vec![0u8; 4 << 20];
    while n > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let k = n.min(buf.len() as u64) as usize;
        f.write_all(&buf[..k])?;
        n -= k as u64;
    }
    Ok(())
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    let s = String::from_utf8_lossy(&out.stdout);
    Ok(s.split_whitespace()
        .next()
        .context("sha256sum output")?
        .to_owned())
}

/// Run `cmd`, returning (wall seconds, peak RSS in MiB of it and its waited children).
fn measured(cmd: &mut Command) -> anyhow::Result<(f64, f64)> {
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let (status, maxrss_kib) = wait4(child.id() as libc::pid_t)?;
    let secs = start.elapsed().as_secs_f64();
    if status != 0 {
        bail!("{cmd:?} failed (wait status {status})");
    }
    Ok((secs, maxrss_kib as f64 / 1024.0))
}

fn wait4(pid: libc::pid_t) -> anyhow::Result<(i32, i64)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes into `status` and `usage`, both alive for the call; `pid` is
    // our own child, not yet reaped.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    Ok((status, usage.ru_maxrss))
}

fn fresh(path: &Path, size: u64) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    File::create(path)?.set_len(size)?;
    Ok(())
}

fn ferrite(agent: &Path, disk: &Path, url: &str, sha: &str) -> anyhow::Result<(f64, f64)> {
    measured(
        Command::new(agent)
            .args(["write-image", "--disk"])
            .arg(disk)
            .args(["--url", url, "--os-hash-value", sha])
            .stdout(std::process::Stdio::null()),
    )
}

fn curl_dd(url: &str, out: &Path) -> anyhow::Result<(f64, f64)> {
    let _ = fs::remove_file(out);
    measured(Command::new("sh").arg("-c").arg(format!(
        "curl -sf {url} | dd of={} bs=4M oflag=direct status=none",
        out.display()
    )))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run() -> anyhow::Result<Vec<Record>> {
    let agent = crate::build_agent()?;
    for tool in ["curl", "dd", "qemu-img", "sha256sum"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()?
            .stdout
            .is_empty()
        {
            bail!("{tool} is missing: run `cargo xtask deps`");
        }
    }
    // Served images live in tmpfs (they would sit in the page cache anyway) so that the
    // disk only holds one target at a time; the 8 GiB full write needs 8 GiB free.
    let dir: PathBuf = crate::util::project_root().join("target/bench/image-write");
    let srv = PathBuf::from("/dev/shm/ferrite-image-write");
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_dir_all(&srv);
    fs::create_dir_all(&dir)?;
    fs::create_dir_all(&srv)?;
    let result = measure(&agent, &dir, &srv);
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_dir_all(&srv);
    result
}

/// Bytes free on the filesystem holding `path`.
fn free_bytes(path: &Path) -> anyhow::Result<u64> {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .context("parsing df output")
}

fn need_space(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let free = free_bytes(path)?;
    if free < bytes + 4 * 1024 * MIB {
        bail!(
            "{} has {} MiB free; this step needs {} MiB plus 4 GiB of headroom for others",
            path.display(),
            free / MIB,
            bytes / MIB
        );
    }
    Ok(())
}

fn measure(agent: &Path, dir: &Path, srv: &Path) -> anyhow::Result<Vec<Record>> {
    need_space(srv, 6 * 1024 * MIB)?;
    need_space(dir, 2 * RAW_BYTES)?;
    println!("image-write: generating images in {}", dir.display());
    let raw = srv.join("raw2g.img");
    fill_random(&mut BufWriter::new(File::create(&raw)?), RAW_BYTES, 7)?;
    let q2g = srv.join("data2g.qcow2");
    crate::util::run(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&q2g),
    )?;
    let sparse_raw = srv.join("sparse8g.img");
    {
        let f = File::create(&sparse_raw)?;
        f.set_len(SPARSE_VIRTUAL)?;
        let chunks = 64;
        let chunk = SPARSE_DATA / chunks;
        let mut w = BufWriter::new(&f);
        for i in 0..chunks {
            std::io::Seek::seek(
                &mut w,
                std::io::SeekFrom::Start(i * (SPARSE_VIRTUAL / chunks)),
            )?;
            fill_random(&mut w, chunk, 100 + i)?;
        }
        w.flush()?;
    }
    let sparse_q = srv.join("sparse8g.qcow2");
    crate::util::run(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&sparse_raw)
            .arg(&sparse_q),
    )?;
    let server = FileServer::start(srv.to_owned())?;
    let (raw_sha, q_sha, sq_sha, sr_sha) = (
        sha256(&raw)?,
        sha256(&q2g)?,
        sha256(&sparse_q)?,
        sha256(&sparse_raw)?,
    );
    let mut records = vec![];

    // 1. raw 2 GiB → file: ferrite vs curl | dd, alternating runs.
    let target = dir.join("target.img");
    let (mut ours, mut theirs, mut rss) = (vec![], vec![], 0f64);
    for _ in 0..RAW_RUNS {
        fresh(&target, RAW_BYTES)?;
        let (t, r) = ferrite(agent, &target, &server.url("raw2g.img"), &raw_sha)?;
        ours.push(RAW_BYTES as f64 / MIB as f64 / t);
        rss = rss.max(r);
        let (t, _) = curl_dd(&server.url("raw2g.img"), &target)?;
        theirs.push(RAW_BYTES as f64 / MIB as f64 / t);
    }
    records.push(
        Record::new("raw 2 GiB image to file, throughput (median)", "MiB/s", median(&mut ours), "higher")
            .baseline("curl -s URL | dd of=FILE bs=4M oflag=direct", median(&mut theirs))
            .notes(format!("{RAW_RUNS} alternating runs; ferrite also verifies sha256 and fsyncs; incompressible data")),
    );
    records.push(
        Record::new("raw 2 GiB: ferrite peak RSS", "MiB", rss, "lower")
            .notes("whole agent process (runtime, HTTP client, buffers)"),
    );

    // 2. qcow2 with 2 GiB of data: streaming vs tmpfs download + qemu-img convert,
    //    alternating runs (the machine is shared; one run of each is noise).
    let shm = srv.join("ipa-tmpfs-copy.qcow2");
    let (mut ours, mut theirs) = (vec![], vec![]);
    let (mut rss_ours, mut rss_curl, mut rss_qemu) = (0f64, 0f64, 0f64);
    let mut shm_bytes = 0;
    for _ in 0..RAW_RUNS {
        fresh(&target, RAW_BYTES)?;
        let (t, r) = ferrite(agent, &target, &server.url("data2g.qcow2"), &q_sha)?;
        ours.push(t);
        rss_ours = rss_ours.max(r);
        let _ = fs::remove_file(&target);
        let start = Instant::now();
        let (_, r) = measured(
            Command::new("curl")
                .args(["-sf", "-o"])
                .arg(&shm)
                .arg(server.url("data2g.qcow2")),
        )?;
        rss_curl = rss_curl.max(r);
        let (_, r) = measured(
            Command::new("qemu-img")
                .args(["convert", "-f", "qcow2", "-O", "raw", "-t", "none"])
                .arg(&shm)
                .arg(&target),
        )?;
        rss_qemu = rss_qemu.max(r);
        theirs.push(start.elapsed().as_secs_f64());
        shm_bytes = fs::metadata(&shm)?.len();
        let _ = fs::remove_file(&shm);
    }
    let (t_ours, t_theirs) = (median(&mut ours), median(&mut theirs));
    records.push(
        Record::new("qcow2 (2 GiB data) deploy wall time", "s", t_ours, "lower")
            .baseline("curl to tmpfs + qemu-img convert -O raw -t none (IPA)", t_theirs)
            .notes(format!("median of {RAW_RUNS} alternating runs; ferrite streams qcow2→raw from HTTP with Range-first table reads and verifies sha256, the baseline verifies nothing")),
    );
    records.push(
        Record::new("qcow2 (2 GiB data) peak RSS", "MiB", rss_ours, "lower")
            .baseline("max(curl, qemu-img) RSS", rss_curl.max(rss_qemu))
            .notes(format!(
                "the baseline also holds the whole image in tmpfs ({} MiB of RAM) during the convert; not counted in its RSS",
                shm_bytes / MIB
            )),
    );

    // 3. sparse image, 8 GiB virtual / 512 MiB data: ferrite (qcow2, zero runs skipped)
    //    vs writing all 8 GiB.
    let _ = fs::remove_file(&target);
    need_space(dir, SPARSE_VIRTUAL)?;
    fresh(&target, SPARSE_VIRTUAL)?;
    let (t_sparse, _) = ferrite(agent, &target, &server.url("sparse8g.qcow2"), &sq_sha)?;
    fresh(&target, SPARSE_VIRTUAL)?;
    let (t_sparse_raw, _) = ferrite(agent, &target, &server.url("sparse8g.img"), &sr_sha)?;
    let (t_full, _) = curl_dd(&server.url("sparse8g.img"), &target)?;
    let _ = fs::remove_file(&target);
    records.push(
        Record::new("sparse image (8 GiB virtual, 512 MiB data) deploy wall time", "s", t_sparse, "lower")
            .baseline("full write: curl -s RAW | dd bs=4M oflag=direct", t_full)
            .notes("ferrite deploys the qcow2 of the sparse image onto a fresh sparse file; holes are skipped"),
    );
    records.push(
        Record::new(
            "sparse image as 8 GiB raw: ferrite wall time",
            "s",
            t_sparse_raw,
            "lower",
        )
        .baseline("full write: curl -s RAW | dd bs=4M oflag=direct", t_full)
        .notes("downloads and hashes all 8 GiB, skips writing the zero runs"),
    );
    Ok(records)
}
