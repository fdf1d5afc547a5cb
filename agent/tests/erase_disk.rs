//! `ferrite-agent erase-disk` on targets the tests create: a loop device that is not NVMe
//! falls back to zeroing (and says why), metadata-only keeps the data, and a device that is
//! neither a file nor a loop device is refused before anything is touched.

mod imaging;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

use imaging::*;

const DISK: u64 = 8 * MIB;

fn erase_disk(args: &[&str], disk: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrite-agent"))
        .arg("erase-disk")
        .arg("--disk")
        .arg(disk)
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "erase-disk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A disk file full of a non-zero pattern, with a GPT at the start.
fn patterned_disk(dir: &Path) -> std::path::PathBuf {
    let disk = sparse_disk(dir, "disk.img", DISK);
    let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.write_all_at(&vec![0xA5; DISK as usize], 0).unwrap();
    old_partition_table(&disk);
    disk
}

#[test]
fn a_loop_device_that_is_not_nvme_is_zeroed_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let backing = patterned_disk(dir.path());
    let lo = LoopDevice::attach(&backing);
    let v = json_of(&erase_disk(&[], &lo.dev));
    assert_eq!(v["method"], "zeroed", "{v}");
    assert_eq!(v["reads_back_zeroes"], true, "{v}");
    // The loop driver takes a write-zeroes that may unmap by punching a hole in its backing
    // file: the erase gives the space back instead of filling the host's disk.
    assert_eq!(
        v["zeroes_evidence"], "device write-zeroes with unmap (fallocate PUNCH_HOLE)",
        "{v}"
    );
    assert_eq!(v["signatures"], serde_json::json!(["gpt"]), "{v}");
    assert!(
        v["nvme_skipped"]
            .as_str()
            .unwrap()
            .contains("not a whole NVMe namespace"),
        "{v}"
    );
    drop(lo);
    assert!(
        std::fs::read(&backing).unwrap().iter().all(|&b| b == 0),
        "the backing file reads back zeroes"
    );
    use std::os::unix::fs::MetadataExt;
    let allocated = std::fs::metadata(&backing).unwrap().blocks() * 512;
    assert!(
        // The metadata wipe that follows writes its two MiB of zeroes; the rest is holes.
        allocated <= DISK / 4,
        "the erase left {allocated} of {DISK} bytes allocated in the backing file"
    );
}

#[test]
fn metadata_only_wipes_the_ends_and_keeps_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let disk = patterned_disk(dir.path());
    let v = json_of(&erase_disk(&["--metadata-only"], &disk));
    assert_eq!(v["method"], "metadata wiped", "{v}");
    assert!(v.get("reads_back_zeroes").is_none(), "{v}");
    let data = std::fs::read(&disk).unwrap();
    let mib = MIB as usize;
    assert!(data[..mib].iter().all(|&b| b == 0));
    assert!(data[data.len() - mib..].iter().all(|&b| b == 0));
    assert!(data[mib..data.len() - mib].iter().all(|&b| b == 0xA5));
    assert!(sfdisk_json(&disk).is_none(), "no partition table left");
}

#[test]
fn a_file_is_zeroed_by_punching_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let disk = patterned_disk(dir.path());
    let v = json_of(&erase_disk(&[], &disk));
    assert_eq!(v["method"], "zeroed", "{v}");
    assert_eq!(v["zeroes_evidence"], "hole punched in the file", "{v}");
    assert!(
        v.get("nvme_skipped").is_none(),
        "files are not NVMe candidates: {v}"
    );
    assert!(std::fs::read(&disk).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn a_device_that_is_neither_a_file_nor_a_loop_device_is_refused() {
    // /dev/zero: a character device, the stand-in for a disk the agent was not meant for.
    let out = erase_disk(&[], Path::new("/dev/zero"));
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no result printed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to erase"), "{err}");
    assert!(
        err.contains("neither a regular file nor a loop device"),
        "{err}"
    );
    let missing = erase_disk(&[], Path::new("/nonexistent/disk"));
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

/// Issue 15 finding 9: a disk holding a shared cluster filesystem (GPFS or VMFS partition
/// made by sfdisk, a GFS2 superblock) is refused, untouched, unless forced.
#[test]
fn shared_cluster_filesystems_are_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let gpt_with = |name: &str, guid: &str| {
        let disk = sparse_disk(dir.path(), name, DISK);
        let f = std::fs::OpenOptions::new().write(true).open(&disk).unwrap();
        f.write_all_at(&vec![0xA5; DISK as usize], 0).unwrap();
        let mut child = Command::new("sfdisk")
            .arg("--quiet")
            .arg(&disk)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let script = format!("label: gpt\n,2M,L\n,,{guid}\n");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        disk
    };
    let gpfs = gpt_with("gpfs.img", "37AFFC90-EF7D-4E96-91C3-2D7AE055B174");
    let vmfs = gpt_with("vmfs.img", "AA31E02A-400F-11DB-9590-000C2911D1B8");
    let gfs2 = patterned_disk(dir.path());
    {
        let f = std::fs::OpenOptions::new().write(true).open(&gfs2).unwrap();
        let mut sb = 0x0116_1970u32.to_be_bytes().to_vec();
        sb.extend(1u32.to_be_bytes());
        f.write_all_at(&sb, 65536).unwrap();
    }
    for (disk, what) in [
        (&gpfs, "IBM GPFS partition"),
        (&vmfs, "VMware VMFS partition"),
        (&gfs2, "Red Hat Global File System 2"),
    ] {
        let before = std::fs::read(disk).unwrap();
        for args in [&[][..], &["--metadata-only"][..]] {
            let out = erase_disk(args, disk);
            assert!(!out.status.success(), "{what} erased with {args:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(what) && err.contains("force"), "{err}");
            assert_eq!(std::fs::read(disk).unwrap(), before, "{what} touched");
        }
    }
    let v = json_of(&erase_disk(&["--metadata-only", "--force"], &vmfs));
    assert_eq!(v["method"], "metadata wiped", "{v}");
    assert!(sfdisk_json(&vmfs).is_none(), "forced: no table left");
}
