//! `erase_devices` on an NVMe namespace: a QEMU q35 guest with an emulated NVMe controller
//! (`-device nvme`) backed by a file this test fills with a non-zero pattern boots the Debian
//! kernel with the nvme driver and runs `ferrite-agent erase-disk --disk /dev/nvme0n1` from
//! its initramfs, so the Identify and Format NVM commands go through the kernel's admin
//! passthrough ioctl to QEMU's controller. QEMU 7.2's controller offers Format NVM (OACS
//! bit 1) without cryptographic erase (FNA 0) or Sanitize, and implements the format by
//! writing zeroes over the namespace: the agent must report a user-data erase, and the
//! backing file must read back zeroes, its middle included (the agent's own signature wipe
//! only touches the first and last MiB). A second namespace on the same controller keeps its
//! data: QEMU's format acts on one namespace (FNA 0), and nothing else is touched.
//!
//! Needs the static agent (`cargo xtask agent`) and qemu-system-x86. Skipped by
//! `cargo xtask test --quick` (FERRITE_SKIP_VM_TESTS).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrite_ramdisk_build::cpio::Archive;
use ferrite_ramdisk_build::{deb, initramfs, kmod::ModuleTree};

const BEGIN: &str = "FERRITE-ERASE-BEGIN";
const END: &str = "FERRITE-ERASE-END";
const DISK_BYTES: u64 = 64 << 20;
const PATTERN: u8 = 0xA5;
const OTHER_BYTES: u64 = 16 << 20;
const OTHER_PATTERN: u8 = 0x3C;

/// Kills and reaps a child process when the test ends, passed or failed.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the test's directory when it ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Kernel + initramfs whose init loads the nvme driver, erases /dev/nvme0n1 between markers
/// on the console and powers off.
fn build_guest(dir: &Path, agent: &Path) -> (PathBuf, PathBuf) {
    let cache = project_root().join("target/ramdisk-cache");
    let kernel_dir = deb::KERNEL.unpack(&cache).expect("Debian kernel package");
    let busybox_dir = deb::BUSYBOX.unpack(&cache).expect("busybox-static package");
    let tree = ModuleTree::scan(&kernel_dir.join("lib/modules").join(deb::KERNEL_RELEASE))
        .expect("kernel modules");
    // Debian builds the NVMe driver as modules (CONFIG_BLK_DEV_NVME=m).
    let modules = tree.closure(&["nvme"]).expect("the nvme module");
    let init = format!(
        "#!/bin/sh\nexport PATH=/bin:/sbin:/usr/bin:/usr/sbin\n\
         mount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs devtmpfs /dev\n\
         while read -r ko; do insmod \"$ko\"; done </{list}\n\
         i=0; while [ ! -b /dev/nvme0n2 ] && [ $i -lt 300 ]; do usleep 100000; i=$((i+1)); done\n\
         ls -l /dev/nvme*\necho {BEGIN}\n/bin/ferrite-agent erase-disk --disk /dev/nvme0n1\n\
         echo \"exit=$?\"\necho {END}\npoweroff -f\n",
        list = initramfs::LOAD_LIST
    );
    let mut archive = Archive::new();
    initramfs::add_skeleton(&mut archive).unwrap();
    initramfs::add_busybox(&mut archive, &busybox_dir.join("bin/busybox")).unwrap();
    initramfs::add_modules(&mut archive, deb::KERNEL_RELEASE, &modules).unwrap();
    archive.file("init", init.into_bytes(), 0o755).unwrap();
    archive
        .file("bin/ferrite-agent", fs::read(agent).unwrap(), 0o755)
        .unwrap();
    let initrd = dir.join("initrd.gz");
    fs::write(
        &initrd,
        initramfs::gzip(&archive.to_bytes(initramfs::MTIME)).unwrap(),
    )
    .unwrap();
    let kernel = kernel_dir.join(format!("boot/vmlinuz-{}", deb::KERNEL_RELEASE));
    (kernel, initrd)
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn erase_devices_formats_an_nvme_namespace_in_a_vm() {
    if ferrite_tests::skip_vm_tests() {
        eprintln!("skipped: FERRITE_SKIP_VM_TESTS is set");
        return;
    }
    let agent = project_root().join("target/agent/ferrite-agent");
    assert!(
        agent.exists(),
        "{} is missing: build the static agent first with `cargo xtask agent`",
        agent.display()
    );
    let dir = std::env::temp_dir().join(format!("ferrite-nvme-vm-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let dir = TempDir(dir);
    let (kernel, initrd) = build_guest(&dir.0, &agent);

    let disk = dir.0.join("nvme.img");
    fs::File::create(&disk)
        .unwrap()
        .write_all_at(&vec![PATTERN; DISK_BYTES as usize], 0)
        .unwrap();
    let other = dir.0.join("other.img");
    fs::File::create(&other)
        .unwrap()
        .write_all_at(&vec![OTHER_PATTERN; OTHER_BYTES as usize], 0)
        .unwrap();
    let drive = |path: &Path, id: &str| {
        format!(
            "file={},if=none,id={id},format=raw,cache=none,aio=threads",
            path.display()
        )
    };

    let console = dir.0.join("console.log");
    let qemu = Command::new("qemu-system-x86_64")
        .args(["-M", "q35", "-accel", "tcg", "-m", "512", "-smp", "1"])
        .args(["-display", "none", "-no-reboot", "-net", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 loglevel=1 panic=-1"])
        .arg("-drive")
        .arg(drive(&disk, "nvm1"))
        .arg("-drive")
        .arg(drive(&other, "nvm2"))
        .args(["-device", "nvme,id=nvme0,serial=FERRITE-NVME-1"])
        .args(["-device", "nvme-ns,bus=nvme0,drive=nvm1,nsid=1"])
        .args(["-device", "nvme-ns,bus=nvme0,drive=nvm2,nsid=2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (Debian package qemu-system-x86) must be installed");
    let mut qemu = Reaped(qemu);
    let read_console = || fs::read_to_string(&console).unwrap_or_default();
    wait_until(
        Duration::from_secs(180),
        "the erase result on the console",
        || {
            if read_console().contains(END) {
                return true;
            }
            if let Ok(Some(status)) = qemu.0.try_wait() {
                panic!("QEMU exited ({status}) early; console:\n{}", read_console());
            }
            false
        },
    );
    // The guest powers off right after the marker: wait for QEMU to let go of the disk.
    wait_until(Duration::from_secs(30), "QEMU to exit", || {
        matches!(qemu.0.try_wait(), Ok(Some(_)))
    });
    let text = read_console();
    let out = text
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(out, _)| out.trim().to_string())
        .unwrap_or_else(|| panic!("no output between the markers:\n{text}"));
    assert!(out.ends_with("exit=0"), "erase-disk failed:\n{text}");
    let (before, _) = text.split_once(BEGIN).unwrap();
    assert!(
        before.contains("/dev/nvme0n2"),
        "the guest sees both namespaces:\n{before}"
    );
    let json = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON result:\n{text}"));
    let v: serde_json::Value =
        serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json}"));
    eprintln!("guest erase result: {v}");
    assert_eq!(v["device"], "/dev/nvme0n1", "{v}");
    assert_eq!(v["method"], "nvme user-data erase", "{v}");
    assert_eq!(v["nsid"], 1, "{v}");
    assert_eq!(v["model"], "QEMU NVMe Ctrl", "{v}");
    assert_eq!(v["reads_back_zeroes"], true, "{v}");
    let evidence = v["zeroes_evidence"].as_str().unwrap();
    assert!(
        evidence.contains(&format!("read back {DISK_BYTES} bytes")),
        "{v}"
    );

    // The host's view: QEMU's format wrote zeroes over the whole backing file.
    let data = fs::read(&disk).unwrap();
    assert_eq!(data.len() as u64, DISK_BYTES);
    let first = data.iter().position(|&b| b != 0);
    assert_eq!(
        first, None,
        "the backing file still holds data at {first:?}"
    );
    let kept = fs::read(&other).unwrap();
    assert!(
        kept.iter().all(|&b| b == OTHER_PATTERN),
        "the other namespace of the controller was touched"
    );
}
