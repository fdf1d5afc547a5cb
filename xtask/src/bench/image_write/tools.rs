//! What the image-write sections share: test data, timed child processes with their peak
//! RSS, sha256 of outputs, fresh targets and loop devices, free-space checks.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{bail, Context};

pub const MIB: u64 = 1 << 20;

/// Pseudo-random, incompressible bytes (xorshift), so no side gains from zeroes.
pub fn fill_random(f: &mut impl Write, mut n: u64, seed: u64) -> std::io::Result<()> {
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

/// sha256 of a file or block device, as `sha256sum` computes it.
pub fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("running sha256sum")?;
    if !out.status.success() {
        bail!(
            "sha256sum {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s = String::from_utf8_lossy(&out.stdout);
    Ok(s.split_whitespace()
        .next()
        .context("sha256sum output")?
        .to_owned())
}

/// Fails unless `path` holds exactly the bytes whose sha256 is `want`.
pub fn verify(path: &Path, want: &str, who: &str) -> anyhow::Result<()> {
    let got = sha256(path)?;
    if got != want {
        bail!(
            "{who} wrote the wrong bytes: sha256 of {} is {got}, the source's is {want}",
            path.display()
        );
    }
    Ok(())
}

/// A finished child: wall seconds, peak RSS (MiB) and CPU seconds (user + system).
pub struct Measured {
    pub secs: f64,
    pub rss_mib: f64,
    pub cpu_secs: f64,
}

/// Runs `cmd` to success and measures it (with its waited-for children).
pub fn measured(cmd: &mut Command) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let (status, usage) = wait4(child.id() as libc::pid_t)?;
    let secs = start.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        let timed_out = libc::WIFEXITED(status) && [124, 137].contains(&libc::WEXITSTATUS(status));
        bail!(
            "{cmd:?} failed (wait status {status}){}",
            if timed_out { ": timed out" } else { "" }
        );
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measured {
        secs,
        rss_mib: usage.ru_maxrss as f64 / 1024.0,
        cpu_secs: tv(usage.ru_utime) + tv(usage.ru_stime),
    })
}

/// Seconds any one program of the bench may take before it is killed (a hung baseline
/// fails the bench instead of hanging it); set per run.
static TIMEOUT_SECS: AtomicU64 = AtomicU64::new(600);

pub fn set_timeout(secs: u64) {
    TIMEOUT_SECS.store(secs, Ordering::Relaxed);
}

/// `program` under coreutils `timeout` (TERM at the limit, KILL 5 s later).
pub fn timed(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("timeout");
    c.args([
        "--kill-after=5",
        &TIMEOUT_SECS.load(Ordering::Relaxed).to_string(),
    ])
    .arg(program);
    c
}

/// `script` under bash with pipefail (a failing curl fails the pipeline), timed.
pub fn shell(script: &str) -> Command {
    let mut c = timed("bash");
    c.args(["-c", &format!("set -o pipefail; {script}")]);
    c
}

fn wait4(pid: libc::pid_t) -> anyhow::Result<(i32, libc::rusage)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 writes into `status` and `usage`, both alive for the call; `pid` is
    // our own child, not yet reaped.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    Ok((status, usage))
}

/// A new sparse file of `size` bytes at `path` (any old one removed).
pub fn fresh(path: &Path, size: u64) -> anyhow::Result<()> {
    let _ = fs::remove_file(path);
    File::create(path)
        .and_then(|f| f.set_len(size))
        .with_context(|| format!("creating {}", path.display()))
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// MiB/s of `bytes` in `secs`.
pub fn rate(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / MIB as f64 / secs
}

/// A loop device over a file the bench created; detached on drop, whatever happened.
pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    pub fn attach(file: &Path) -> anyhow::Result<Loop> {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .context("running losetup")?;
        if !out.status.success() {
            bail!(
                "losetup --find --show {} failed (the sparse section needs root and a free \
                 loop device): {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !dev.starts_with("/dev/loop") {
            bail!("losetup printed {dev:?}, not a loop device");
        }
        Ok(Loop {
            dev: PathBuf::from(dev),
        })
    }
}

impl Loop {
    /// Detaches loop devices an interrupted earlier run left on `file`.
    pub fn detach_leftovers(file: &Path) {
        let Ok(out) = Command::new("losetup").arg("-j").arg(file).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(dev) = line
                .split(':')
                .next()
                .filter(|d| d.starts_with("/dev/loop"))
            {
                let _ = Command::new("losetup").args(["-d", dev]).status();
            }
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
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

/// Fails unless `path`'s filesystem has `bytes` free plus headroom for others.
pub fn need_space(path: &Path, bytes: u64, headroom: u64) -> anyhow::Result<()> {
    let free = free_bytes(path)?;
    if free < bytes + headroom {
        bail!(
            "{} has {} MiB free; this step needs {} MiB plus {} MiB of headroom for others",
            path.display(),
            free / MIB,
            bytes / MIB,
            headroom / MIB
        );
    }
    Ok(())
}

/// Fails with what to install when a program is not on PATH.
pub fn require(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    for (tool, package) in tools {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            bail!("{tool} is missing: run `cargo xtask deps` (Debian package {package})");
        }
    }
    Ok(())
}
