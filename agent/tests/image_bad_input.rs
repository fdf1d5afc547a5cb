//! Bad input for whole-disk deploys: each case must fail with a message naming the cause
//! and leave the target without a partition table (it had one before).

mod imaging;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferrite_agent::disk::safety::Choice;
use ferrite_agent::image::deploy::{deploy_whole_disk, TargetDisk};
use ferrite_image::http::HttpConfig;
use ferrite_image::Progress;
use ferrite_proto::image::ImageInfo;
use ferrite_testkit::http::{ImageServer, Mode};
use imaging::*;

const IMAGE: u64 = 8 * MIB;
const DISK: u64 = 16 * MIB;

struct Case {
    rt: tokio::runtime::Runtime,
    srv: ImageServer,
    dir: tempfile::TempDir,
    raw: Vec<u8>,
    raw_path: std::path::PathBuf,
}

fn case() -> Case {
    let rt = runtime();
    let srv = ImageServer::start(&rt);
    let dir = tempfile::tempdir().unwrap();
    let (raw_path, raw) = make_disk_image(dir.path(), "disk.raw", IMAGE, 9);
    Case {
        rt,
        srv,
        dir,
        raw,
        raw_path,
    }
}

impl Case {
    /// Serve `data`, deploy it onto a disk that had a partition table, and return the
    /// error message after checking that no table remains.
    fn fails(
        &self,
        name: &str,
        data: Vec<u8>,
        mode: Mode,
        edit: impl FnOnce(&mut ImageInfo),
        disk_size: u64,
    ) -> String {
        let sha = sha256_hex(&data);
        let url = self.srv.put(name, data, mode);
        let mut info = ImageInfo {
            id: name.into(),
            urls: vec![url],
            os_hash_algo: Some("sha256".into()),
            os_hash_value: Some(sha),
            ..ImageInfo::default()
        };
        edit(&mut info);
        let disk = sparse_disk(self.dir.path(), &format!("{name}.disk"), disk_size);
        old_partition_table(&disk);
        let cfg = HttpConfig {
            backoff: Duration::from_millis(5),
            ..fast_http(3)
        };
        let target = TargetDisk {
            path: disk.clone(),
            choice: Choice::Explicit,
        };
        let err = deploy_whole_disk(self.rt.handle(), &info, &target, &cfg, &Progress::new())
            .err()
            .unwrap_or_else(|| panic!("{name}: the deploy should fail"));
        assert!(
            sfdisk_json(&disk).is_none(),
            "{name}: a partition table survived the failure"
        );
        let msg = ferrite_proto::error::chain(&err);
        eprintln!("{name}: {msg}");
        msg
    }

    fn qcow2(&self, extra: &[&str]) -> Vec<u8> {
        to_qcow2(&self.raw_path, &self.dir.path().join("x.qcow2"), extra)
    }
}

fn assert_contains(msg: &str, want: &str) {
    assert!(
        msg.contains(want),
        "message {msg:?} should contain {want:?}"
    );
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn wrong_checksum() {
    let c = case();
    let msg = c.fails(
        "sum",
        c.raw.clone(),
        Mode::Range,
        |i| i.os_hash_value = Some("0".repeat(64)),
        DISK,
    );
    assert_contains(&msg, "checksum mismatch");
    assert_contains(&msg, &"0".repeat(64));
}

#[test]
fn truncated_download() {
    let c = case();
    let msg = c.fails("trunc", c.raw.clone(), Mode::Truncate, |_| {}, DISK);
    assert_contains(&msg, "stopped at byte");
    assert_contains(&msg, &format!("of {IMAGE}"));
}

#[test]
fn not_found_and_server_errors_after_retries() {
    let c = case();
    let msg = c.fails("gone", c.raw.clone(), Mode::Status(404), |_| {}, DISK);
    assert_contains(&msg, "HTTP 404");
    let msg = c.fails("broken", c.raw.clone(), Mode::Status(503), |_| {}, DISK);
    assert_contains(&msg, "HTTP 503");
    assert_contains(&msg, "after 2 attempts");
    // Both URLs are tried, in order, and both failures are named.
    let second = c.srv.put("also-gone", vec![1u8], Mode::Status(500));
    let msg = c.fails(
        "first",
        c.raw.clone(),
        Mode::Status(404),
        |i| i.urls.push(second.clone()),
        DISK,
    );
    assert_contains(&msg, "first: HTTP 404");
    assert_contains(&msg, "also-gone: HTTP 500");
}

#[test]
fn qcow2_with_a_backing_file() {
    let c = case();
    let over = c.dir.path().join("over.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&c.raw_path)
        .arg(&over));
    let msg = c.fails(
        "backing",
        std::fs::read(&over).unwrap(),
        Mode::Range,
        |_| {},
        DISK,
    );
    assert_contains(&msg, "backing file");
}

#[test]
fn qcow2_with_an_external_data_file() {
    let c = case();
    let img = c.dir.path().join("df.qcow2");
    let opt = format!("data_file={}", c.dir.path().join("data.raw").display());
    run(Command::new("qemu-img")
        .args(["create", "-f", "qcow2", "-o", &opt])
        .arg(&img)
        .arg("8M"));
    let msg = c.fails(
        "datafile",
        std::fs::read(&img).unwrap(),
        Mode::NoRange,
        |_| {},
        DISK,
    );
    assert_contains(&msg, "external data file");
}

#[test]
fn qcow2_with_a_broken_l2_table() {
    let c = case();
    let mut q = c.qcow2(&[]);
    let l1 = be64(&q, 40) as usize;
    let l2 = (be64(&q, l1) & 0x00ff_ffff_ffff_fe00) as usize;
    // Entry of the first cluster: a data offset that is not cluster aligned.
    q[l2..l2 + 8].copy_from_slice(&(0x8000_0000_0001_0200u64).to_be_bytes());
    let msg = c.fails("badl2", q, Mode::Range, |_| {}, DISK);
    assert_contains(&msg, "L2 entry for guest offset 0x0 is invalid");
}

#[test]
fn qcow2_with_l1_past_the_end() {
    let c = case();
    let mut q = c.qcow2(&[]);
    let past = (q.len() as u64).next_multiple_of(65536) + 16 * 65536;
    q[40..48].copy_from_slice(&past.to_be_bytes());
    for mode in [Mode::Range, Mode::NoRange] {
        let msg = c.fails(&format!("l1end-{mode:?}"), q.clone(), mode, |_| {}, DISK);
        assert_contains(&msg, "L1 table");
        assert_contains(&msg, "past the end");
    }
}

#[test]
fn images_larger_than_the_disk() {
    let c = case();
    let small = 6 * MIB;
    let zst = zstd::encode_all(&c.raw[..], 1).unwrap();
    let msg = c.fails("big-zst", zst, Mode::NoRange, |_| {}, small);
    assert_contains(&msg, "larger than the 6291456-byte disk");
    let msg = c.fails("big-qcow2", c.qcow2(&["-c"]), Mode::Range, |_| {}, small);
    assert_contains(&msg, "larger than the 6291456-byte disk");
    let msg = c.fails("big-raw", c.raw.clone(), Mode::Range, |_| {}, small);
    assert_contains(&msg, "larger than the 6291456-byte disk");
}

#[test]
fn disk_format_must_match_the_bytes() {
    let c = case();
    let msg = c.fails(
        "fmt",
        c.qcow2(&[]),
        Mode::Range,
        |i| i.disk_format = Some("raw".into()),
        DISK,
    );
    assert_contains(&msg, "disk_format \"raw\" but the image is qcow2");
}

#[test]
fn corrupt_compressed_stream() {
    let c = case();
    let mut gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
        e.write_all(&c.raw).unwrap();
        e.finish().unwrap()
    };
    let mid = gz.len() / 2;
    gz[mid..mid + 64].fill(0xff);
    let msg = c.fails("corrupt-gz", gz, Mode::Range, |_| {}, DISK);
    assert_contains(&msg, "corrupt compressed image");
}

#[test]
fn a_real_disk_is_refused_unless_in_the_ramdisk() {
    let c = case();
    let info = ImageInfo {
        urls: vec!["http://127.0.0.1:9/x".into()],
        ..ImageInfo::default()
    };
    let file = sparse_disk(c.dir.path(), "d", DISK);
    let target = TargetDisk {
        path: file,
        choice: Choice::Discovered,
    };
    let err = deploy_whole_disk(
        c.rt.handle(),
        &info,
        &target,
        &HttpConfig::default(),
        &Progress::new(),
    )
    .unwrap_err();
    assert_contains(
        &ferrite_proto::error::chain(&err),
        "not running from its ramdisk",
    );
    let _ = Path::new("/");
}
