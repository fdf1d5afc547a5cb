//! Whole-disk deploys over a loopback HTTP server onto sparse files and loop devices:
//! raw, gzip, xz, zstd and qcow2 (made by qemu-img, with zlib and zstd compressed
//! clusters), with and without Range support and with connections cut at random offsets.
//! Bytes are compared with the source image and the table is read back by sfdisk.

mod imaging;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use ferrite_agent::disk::safety::Choice;
use ferrite_agent::image::deploy::{deploy_whole_disk, DeployError, Deployed, TargetDisk};
use ferrite_image::Progress;
use ferrite_proto::image::ImageInfo;
use ferrite_testkit::http::{ImageServer, Mode};
use imaging::*;

const IMAGE: u64 = 24 * MIB;
const DISK: u64 = 40 * MIB;

fn info(url: &str, sha256: &str, format: &str) -> ImageInfo {
    ImageInfo {
        id: "test".into(),
        urls: vec![url.into()],
        disk_format: Some(format.into()),
        image_type: Some("whole-disk".into()),
        os_hash_algo: Some("sha256".into()),
        os_hash_value: Some(sha256.into()),
        ..ImageInfo::default()
    }
}

fn deploy(
    rt: &tokio::runtime::Runtime,
    info: &ImageInfo,
    disk: &Path,
) -> Result<Deployed, DeployError> {
    let target = TargetDisk {
        path: disk.to_owned(),
        choice: Choice::Explicit,
    };
    deploy_whole_disk(rt.handle(), info, &target, &fast_http(40), &Progress::new())
}

/// Deploy `served` (the transport bytes) and check the disk holds `raw`, with a GPT
/// whose backup now sits at the end of the larger disk.
fn deploy_and_check(
    f: &Fixture,
    name: &str,
    served: Vec<u8>,
    mode: Mode,
    format: &str,
    disk: &Path,
) -> Deployed {
    let (rt, raw) = (&f.rt, &f.raw);
    let sha = sha256_hex(&served);
    let url = f.srv.put(name, served, mode);
    let d = deploy(rt, &info(&url, &sha, format), disk)
        .unwrap_or_else(|e| panic!("{name}: {}", ferrite_proto::error::chain(&e)));
    // The primary GPT header (LBA 1) changed when the backup moved; the image's old
    // backup in its last MiB is outside the compared range.
    let mut want = raw[..raw.len() - MIB as usize].to_vec();
    let mut got = std::fs::read(disk).unwrap();
    got.truncate(want.len());
    got[512..1024].fill(0);
    want[512..1024].fill(0);
    assert!(
        got == want,
        "{name}: bytes differ at {:?}",
        got.iter().zip(&want).position(|(a, b)| a != b)
    );
    let table = sfdisk_json(disk).unwrap_or_else(|| panic!("{name}: sfdisk finds no table"));
    let pt = &table["partitiontable"];
    assert_eq!(pt["label"], "gpt", "{name}");
    assert_eq!(
        pt["partitions"].as_array().map(Vec::len),
        Some(2),
        "{name}: {table}"
    );
    assert_eq!(
        pt["lastlba"].as_u64().unwrap() + 34,
        DISK / 512,
        "{name}: backup GPT not at the end: {table}"
    );
    assert!(d.backup_gpt_moved, "{name}");
    d
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    srv: ImageServer,
    dir: tempfile::TempDir,
    raw: Vec<u8>,
    raw_path: std::path::PathBuf,
}

fn fixture(seed: u64) -> Fixture {
    let rt = runtime();
    let srv = ImageServer::start(&rt);
    let dir = tempfile::tempdir().unwrap();
    let (raw_path, raw) = make_disk_image(dir.path(), "disk.raw", IMAGE, seed);
    Fixture {
        rt,
        srv,
        dir,
        raw,
        raw_path,
    }
}

#[test]
fn raw_image_with_and_without_range_support() {
    let f = fixture(1);
    for mode in [Mode::Range, Mode::NoRange] {
        let disk = sparse_disk(f.dir.path(), "t.img", DISK);
        let before = f.srv.requests.load(std::sync::atomic::Ordering::SeqCst);
        let d = deploy_and_check(
            &f,
            &format!("raw-{mode:?}"),
            f.raw.clone(),
            mode,
            "raw",
            &disk,
        );
        // One GET: reading on after the end must not reconnect (it once downloaded the
        // whole image a second time).
        assert_eq!(
            f.srv.requests.load(std::sync::atomic::Ordering::SeqCst) - before,
            1,
            "{mode:?}: requests for one uncut download"
        );
        assert_eq!(d.outcome.format, "raw");
        assert_eq!(d.outcome.disk_bytes, IMAGE);
        assert!(
            d.outcome.zero_bytes_skipped > 0,
            "zero runs are skipped on a fresh sparse file"
        );
    }
}

#[test]
fn compressed_raw_images_gzip_xz_zstd() {
    let f = fixture(2);
    let gz = {
        let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
        e.write_all(&f.raw).unwrap();
        e.finish().unwrap()
    };
    let xz = {
        let mut e = xz2::write::XzEncoder::new(vec![], 0);
        e.write_all(&f.raw).unwrap();
        e.finish().unwrap()
    };
    let zst = zstd::encode_all(&f.raw[..], 1).unwrap();
    for (name, data, want) in [("gz", gz, "gzip"), ("xz", xz, "xz"), ("zst", zst, "zstd")] {
        let disk = sparse_disk(f.dir.path(), "t.img", DISK);
        let d = deploy_and_check(&f, name, data, Mode::NoRange, "raw", &disk);
        assert_eq!(d.outcome.compression, want);
    }
}

/// A connection cut a few bytes into the body must not fool the format sniffing: the
/// resumed download is still seen as gzip (or qcow2), not written as raw bytes.
#[test]
fn a_cut_within_the_magic_bytes_still_sniffs_the_format() {
    let f = fixture(6);
    let gz = {
        let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
        e.write_all(&f.raw).unwrap();
        e.finish().unwrap()
    };
    let q = to_qcow2(&f.raw_path, &f.dir.path().join("cut.qcow2"), &[]);
    for (name, data, format, k) in [("gz-cut1", gz, "raw", 1), ("qcow2-cut2", q, "qcow2", 2)] {
        let srv = ImageServer::start(&f.rt);
        let sha = sha256_hex(&data);
        let url = srv.put(name, data, Mode::CutFirst(k));
        let disk = sparse_disk(f.dir.path(), "t.img", DISK);
        let d = deploy(&f.rt, &info(&url, &sha, format), &disk)
            .unwrap_or_else(|e| panic!("{name}: {}", ferrite_proto::error::chain(&e)));
        assert!(d.outcome.disk_bytes == IMAGE, "{name}: {:?}", d.outcome);
        let got = std::fs::read(&disk).unwrap();
        assert!(
            got[MIB as usize..(IMAGE - MIB) as usize]
                == f.raw[MIB as usize..(IMAGE - MIB) as usize],
            "{name}: the image's bytes, not the transport's"
        );
        assert!(
            srv.requests.load(std::sync::atomic::Ordering::SeqCst) >= 2,
            "{name}: resumed"
        );
    }
}

#[test]
fn qcow2_images_from_qemu_img_plain_and_compressed() {
    let f = fixture(3);
    let cases: [(&str, &[&str], Mode); 5] = [
        ("plain-range", &[], Mode::Range),
        ("plain-norange", &[], Mode::NoRange),
        ("zlib-range", &["-c"], Mode::Range),
        ("zlib-norange", &["-c"], Mode::NoRange),
        (
            "zstd-cut",
            &["-c", "-o", "compression_type=zstd"],
            Mode::Cut,
        ),
    ];
    for (name, opts, mode) in cases {
        let q = to_qcow2(
            &f.raw_path,
            &f.dir.path().join(format!("{name}.qcow2")),
            opts,
        );
        let disk = sparse_disk(f.dir.path(), "t.img", DISK);
        let d = deploy_and_check(&f, name, q, mode, "qcow2", &disk);
        let q = d.outcome.qcow2.expect("converted as qcow2");
        assert_eq!(q.virtual_size, IMAGE, "{name}");
        assert_eq!(q.used_ranges, mode != Mode::NoRange, "{name}");
        if opts.contains(&"-c") {
            assert!(q.compressed_clusters > 0, "{name}: {q:?}");
        }
    }
}

#[test]
fn cut_connections_resume_with_range_and_give_identical_bytes() {
    let f = fixture(4);
    let disk = sparse_disk(f.dir.path(), "t.img", DISK);
    let before = f
        .srv
        .range_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    deploy_and_check(&f, "cut.raw", f.raw.clone(), Mode::Cut, "raw", &disk);
    let resumed = f
        .srv
        .range_requests
        .load(std::sync::atomic::Ordering::SeqCst)
        - before;
    assert!(
        resumed >= 2,
        "the server cut the download, so it must have resumed ({resumed})"
    );
}

#[test]
fn loop_device_target_gets_the_image_and_a_reread_table() {
    let f = fixture(5);
    let backing = sparse_disk(f.dir.path(), "loop.img", DISK);
    old_partition_table(&backing);
    // Old non-zero data where the image has holes: a block device is not zeroed first,
    // so the holes must be written as zeroes.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&backing)
            .unwrap();
        f.write_all_at(&vec![0x5a; (IMAGE - 2 * MIB) as usize], MIB)
            .unwrap();
    }
    let lo = LoopDevice::attach(&backing);
    let q = to_qcow2(&f.raw_path, &f.dir.path().join("l.qcow2"), &["-c"]);
    let d = deploy_and_check(&f, "loop.qcow2", q, Mode::Range, "qcow2", &lo.dev);
    assert!(d.partitions_reread, "BLKRRPART on the loop device");
    let name = lo.dev.file_name().unwrap().to_str().unwrap().to_owned();
    // Some kernels (this one: no CONFIG_EFI_PARTITION) never create partition devices;
    // check them only where the kernel can parse a GPT.
    let parses_gpt = std::process::Command::new("zgrep")
        .args(["-q", "CONFIG_EFI_PARTITION=y", "/proc/config.gz"])
        .status()
        .is_ok_and(|s| s.success());
    for p in [1, 2].into_iter().filter(|_| parses_gpt) {
        let part = Path::new("/sys/block")
            .join(&name)
            .join(format!("{name}p{p}"));
        assert!(
            part.exists(),
            "the kernel sees partition {p} after BLKRRPART"
        );
    }
}

/// Issue 15 finding 10: while a whole-disk image is being written to a block device (the
/// pipeline holds the image's own first MiB back until the end), the device's old
/// partition tables are already gone: neither the old MBR/primary GPT at the start nor the
/// old backup GPT at the end survives past the first image byte, so a crash mid-write
/// leaves nothing bootable. Observed mid-write through a slowly served image.
#[test]
fn a_block_device_loses_its_old_tables_before_the_image_is_written() {
    use std::os::unix::fs::FileExt;
    let f = fixture(7);
    let backing = sparse_disk(f.dir.path(), "rebuild.img", DISK);
    old_partition_table(&backing);
    let read = |at: u64, len: usize| {
        let mut buf = vec![0u8; len];
        std::fs::File::open(&backing)
            .unwrap()
            .read_exact_at(&mut buf, at)
            .unwrap();
        buf
    };
    assert_eq!(&read(512, 8), b"EFI PART", "the old primary GPT is there");
    assert_eq!(
        &read(DISK - 512, 8),
        b"EFI PART",
        "the old backup GPT is there"
    );
    let lo = LoopDevice::attach(&backing);

    let sha = sha256_hex(&f.raw);
    // 64 KiB every 20 ms: the 24 MiB image takes ~8 s to arrive.
    let url = f.srv.put("slow.raw", f.raw.clone(), Mode::Slow(20));
    let progress = Progress::new();
    let job = {
        let (rt, progress, dev) = (f.rt.handle().clone(), progress.clone(), lo.dev.clone());
        let info = info(&url, &sha, "raw");
        std::thread::spawn(move || {
            let target = TargetDisk {
                path: dev,
                choice: Choice::Explicit,
            };
            deploy_whole_disk(&rt, &info, &target, &fast_http(40), &progress)
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while progress.snapshot()["bytes_done"].as_u64().unwrap_or(0) < 4 * MIB {
        assert!(!job.is_finished(), "the deploy ended before 4 MiB arrived");
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !job.is_finished(),
        "observe while the image is being written"
    );
    let head = read(0, MIB as usize);
    assert_ne!(
        &head[510..512],
        &[0x55, 0xaa],
        "an old MBR signature is left mid-write"
    );
    assert_ne!(
        &head[512..520],
        b"EFI PART",
        "the old primary GPT is left mid-write"
    );
    assert!(
        read(DISK - MIB, MIB as usize).iter().all(|&b| b == 0),
        "the old backup GPT at the end is left mid-write"
    );
    let d = job
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{}", ferrite_proto::error::chain(&e)));
    assert!(d.backup_gpt_moved);
    // The image's head, at last (LBA 1 changed when the backup GPT moved to the end).
    assert_eq!(read(0, 512), f.raw[..512]);
    assert_eq!(read(1024, MIB as usize - 1024), f.raw[1024..MIB as usize]);
}
