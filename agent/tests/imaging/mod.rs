//! Shared helpers of the agent's integration tests: test images made with sfdisk and
//! qemu-img, sparse target files, loop devices that are always detached, table oracles.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferrite_image::http::HttpConfig;

use rand::{RngCore, SeedableRng};

pub const MIB: u64 = 1 << 20;

/// An HTTP configuration for loopback servers: short timeouts and back-off, two attempts,
/// and `max_resumes` resumes of a cut download.
pub fn fast_http(max_resumes: u32) -> HttpConfig {
    HttpConfig {
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
        attempts: 2,
        backoff: Duration::from_millis(10),
        max_resumes,
    }
}

/// Run a command, panicking with its stderr if it fails (test setup only).
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A GPT disk image of `size` bytes with two partitions, random data in scattered 1 MiB
/// pieces and zeroes elsewhere (so sparse handling and qcow2 holes get exercised).
pub fn make_disk_image(dir: &Path, name: &str, size: u64, seed: u64) -> (PathBuf, Vec<u8>) {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    let mut sf = Command::new("sfdisk");
    sf.arg("--quiet")
        .arg(&path)
        .stdin(std::process::Stdio::piped());
    let mut child = sf.spawn().expect("sfdisk");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: gpt\n,4M,L\n,,L\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let mut data = std::fs::read(&path).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut off = MIB; // partitions start at 1 MiB; keep the GPT intact
    while off + MIB < size - MIB {
        if rng.next_u32() % 3 != 0 {
            let len = (MIB as usize) - (rng.next_u32() as usize % 4096);
            rng.fill_bytes(&mut data[off as usize..off as usize + len]);
        }
        off += MIB;
    }
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// `qemu-img convert -O qcow2` with extra options (e.g. `-c`, `-o compression_type=zstd`).
pub fn to_qcow2(raw: &Path, out: &Path, extra: &[&str]) -> Vec<u8> {
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .args(extra)
        .arg(raw)
        .arg(out));
    std::fs::read(out).unwrap()
}

/// A sparse file standing for a disk.
pub fn sparse_disk(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

/// Give `disk` an old GPT with one partition, as a previously deployed disk would have.
pub fn old_partition_table(disk: &Path) {
    let mut child = Command::new("sfdisk")
        .arg("--quiet")
        .arg(disk)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"label: gpt\n,,L\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(
        sfdisk_json(disk).is_some(),
        "setup: the old table is readable"
    );
}

/// The partition table as `sfdisk --json` reads it (an independent oracle), or None when
/// sfdisk finds no table.
pub fn sfdisk_json(disk: &Path) -> Option<serde_json::Value> {
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(disk)
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// True when the first `len` bytes of `disk` equal `expected`.
pub fn same_bytes(disk: &Path, expected: &[u8]) -> bool {
    use std::io::Read;
    let mut f = std::fs::File::open(disk).unwrap();
    let mut got = vec![0u8; expected.len()];
    f.read_exact(&mut got).unwrap();
    if got != expected {
        let first = got.iter().zip(expected).position(|(a, b)| a != b);
        eprintln!("first difference at byte {first:?}");
        return false;
    }
    true
}

/// A loop device over a file, detached on drop (even when the test fails).
pub struct LoopDevice {
    pub dev: PathBuf,
}

impl LoopDevice {
    pub fn attach(file: &Path) -> LoopDevice {
        let dev = run(Command::new("losetup")
            .args(["--find", "--show", "--partscan"])
            .arg(file));
        LoopDevice {
            dev: PathBuf::from(dev.trim()),
        }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// A tokio runtime for the server and the agent's HTTP client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
