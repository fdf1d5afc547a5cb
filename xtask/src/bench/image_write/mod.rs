//! `cargo xtask bench image-write`: the agent's image pipeline against the usual tools,
//! everything served by a loopback HTTP server in the same run, each output checked byte
//! for byte against its source (sha256):
//! - raw: ferrite vs `curl | dd` at its best (buffered, `conv=fsync`) and with `O_DIRECT`,
//!   and against the physical limit (fio's O_DIRECT sequential write to the same target,
//!   sha256 on one core);
//! - qcow2: ferrite's streaming vs IPA's tmpfs download + `qemu-img convert`, and vs
//!   `qemu-img convert` reading straight over HTTP (its curl driver);
//! - sparse: one sparse image onto a loop device by ferrite, `qemu-img convert` and
//!   `bmaptool copy`.

mod qcow2;
mod raw;
mod sparse;
mod tools;

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::{Record, Size};
use ferrite_qemu_harness::http::HttpServer;
use tools::MIB;

/// Bytes and rounds of one run.
pub struct Sizes {
    /// The raw image, and the data of the qcow2 one.
    pub image: u64,
    /// The sparse image: its virtual size and how much of it is data.
    pub sparse_virtual: u64,
    pub sparse_data: u64,
    /// Alternating rounds of each comparison.
    pub rounds: usize,
    /// Seconds any one program may take.
    pub timeout_secs: u64,
}

impl Sizes {
    fn of(size: Size) -> Sizes {
        size.pick(
            Sizes {
                image: 1024 * MIB,
                sparse_virtual: 2048 * MIB,
                sparse_data: 256 * MIB,
                rounds: 3,
                timeout_secs: 600,
            },
            Sizes {
                image: 16 * MIB,
                sparse_virtual: 64 * MIB,
                sparse_data: 4 * MIB,
                rounds: 2,
                timeout_secs: 60,
            },
        )
    }
}

/// What every section works with.
pub struct Ctx {
    pub agent: PathBuf,
    /// On this machine's disk: the targets.
    pub dir: PathBuf,
    /// In tmpfs: the served images and IPA's tmpfs copies.
    pub srv: PathBuf,
    pub server: HttpServer,
    pub sizes: Sizes,
    /// sha256 of srv/[`RAW_NAME`]: random data, the raw image and the qcow2's content.
    pub raw_sha: String,
}

/// The served raw image of `Sizes::image` random bytes.
pub const RAW_NAME: &str = "data.img";

impl Ctx {
    /// `ferrite-agent write-image` of `url` onto `disk`, which it verifies against `sha`.
    pub fn ferrite(&self, disk: &Path, url: &str, sha: &str) -> anyhow::Result<tools::Measured> {
        tools::measured(
            tools::timed(&self.agent)
                .args(["write-image", "--disk"])
                .arg(disk)
                .args(["--url", url, "--os-hash-value", sha])
                .stdout(std::process::Stdio::null()),
        )
    }
}

pub fn run(size: Size) -> anyhow::Result<Vec<Record>> {
    tools::require(&[
        ("curl", "curl"),
        ("dd", "coreutils"),
        ("sha256sum", "coreutils"),
        ("openssl", "openssl"),
        ("qemu-img", "qemu-utils"),
        ("fio", "fio"),
        ("bmaptool", "bmap-tools"),
        ("losetup", "mount"),
    ])?;
    let agent = crate::build_agent()?;
    // Served images live in tmpfs (they would sit in the page cache anyway) so that the
    // disk only holds the targets.
    let name = size.pick("image-write", "image-write-smoke");
    let dir = crate::util::project_root().join("target/bench").join(name);
    let srv = PathBuf::from(format!("/dev/shm/ferrite-{name}"));
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_dir_all(&srv);
    fs::create_dir_all(&dir)?;
    fs::create_dir_all(&srv)?;
    let result = (|| {
        let sizes = Sizes::of(size);
        tools::set_timeout(sizes.timeout_secs);
        println!("image-write: generating images in {}", srv.display());
        let raw_sha = random_image(&srv.join(RAW_NAME), sizes.image, 7)?;
        let ctx = Ctx {
            agent,
            server: HttpServer::start(srv.clone())?,
            dir: dir.clone(),
            srv: srv.clone(),
            sizes,
            raw_sha,
        };
        let (mut records, limit) = raw::measure(&ctx)?;
        records.extend(qcow2::measure(&ctx, &limit)?);
        records.extend(sparse::measure(&ctx)?);
        Ok(records)
    })();
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_dir_all(&srv);
    result
}

/// Writes `bytes` of random data to `path` in tmpfs; its sha256.
pub fn random_image(path: &Path, bytes: u64, seed: u64) -> anyhow::Result<String> {
    tools::fill_random(&mut BufWriter::new(File::create(path)?), bytes, seed)?;
    tools::sha256(path)
}

/// `qemu-img convert -f raw -O qcow2 raw qcow2`; the qcow2's sha256.
pub fn to_qcow2(raw: &Path, qcow2: &Path) -> anyhow::Result<String> {
    crate::util::run(
        tools::timed("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(raw)
            .arg(qcow2),
    )?;
    tools::sha256(qcow2)
}
