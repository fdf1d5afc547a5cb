//! One-shot QEMU guests for tests: the Debian kernel and an initramfs whose init loads a few
//! modules, waits for a device, runs one command with its output between console markers
//! and powers off. The tests that check what the agent sees on live hardware (IPMI KCS,
//! NVMe) use it; the conductor-driven ones use qemu-harness's lab instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ferrite_ramdisk_build::cpio::Archive;
use ferrite_ramdisk_build::{deb, initramfs, kmod::ModuleTree};

const BEGIN: &str = "FERRITE-GUEST-BEGIN";
const END: &str = "FERRITE-GUEST-END";

pub use ferrite_testkit::{wait_until, Reaped};

/// Removes a test's directory when it ends.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh `<tmp>/<prefix>-<pid>`.
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating the test directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The static agent built by `cargo xtask agent`; fails the test if it is missing.
pub fn static_agent() -> PathBuf {
    let agent = crate::target_dir().join("agent/ferrite-agent");
    assert!(
        agent.exists(),
        "{} is missing: build the static agent first with `cargo xtask agent`",
        agent.display()
    );
    agent
}

/// What the guest's init does.
pub struct Script<'a> {
    /// Modules to load, with their dependencies (Debian's kernel).
    pub modules: &'a [&'a str],
    /// A device node to wait for (up to 30 s) before going on.
    pub wait_for: &'a str,
    /// Shell lines run before the markers (diagnostics for the console).
    pub before: &'a str,
    /// The command whose output the test reads.
    pub command: &'a str,
}

/// The kernel and an initramfs (in `dir`) with busybox, the modules and `agent` at
/// `/bin/ferrite-agent`, whose init runs `script` and powers off.
pub fn build(dir: &Path, agent: &Path, script: &Script) -> (PathBuf, PathBuf) {
    let cache = crate::target_dir().join("ramdisk-cache");
    let kernel_dir = deb::KERNEL.unpack(&cache).expect("Debian kernel package");
    let busybox_dir = deb::BUSYBOX.unpack(&cache).expect("busybox-static package");
    let tree = ModuleTree::scan(&kernel_dir.join("lib/modules").join(deb::KERNEL_RELEASE))
        .expect("kernel modules");
    let modules = tree.closure(script.modules).expect("the guest's modules");
    let init = format!(
        "#!/bin/sh\nexport PATH=/bin:/sbin:/usr/bin:/usr/sbin\n\
         mount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs devtmpfs /dev\n\
         while read -r ko; do insmod \"$ko\"; done </{list}\n\
         i=0; while [ ! -e {dev} ] && [ $i -lt 300 ]; do usleep 100000; i=$((i+1)); done\n\
         {before}\necho {BEGIN}\n{command}\necho \"exit=$?\"\necho {END}\npoweroff -f\n",
        list = initramfs::LOAD_LIST,
        dev = script.wait_for,
        before = script.before,
        command = script.command,
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

/// What the guest printed.
pub struct Run {
    /// The whole serial console.
    pub console: String,
    /// The command's output (between the markers, without the exit line).
    pub output: String,
    /// The command's exit status.
    pub exit: i32,
}

/// Boots `kernel`/`initrd` on a q35 TCG machine (512 MiB, 1 CPU, no network) with
/// `devices` (extra QEMU arguments), waits up to `limit` for the command's output, then for
/// QEMU to exit (so files it used as disks are released).
pub fn run(dir: &Path, kernel: &Path, initrd: &Path, devices: &[String], limit: Duration) -> Run {
    let console = dir.join("console.log");
    let qemu = Command::new("qemu-system-x86_64")
        .args(["-M", "q35", "-accel", "tcg", "-m", "512", "-smp", "1"])
        .args(["-display", "none", "-no-reboot", "-net", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 loglevel=1 panic=-1"])
        .args(devices)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (Debian package qemu-system-x86) must be installed");
    let mut qemu = Reaped(qemu);
    let read_console = || fs::read_to_string(&console).unwrap_or_default();
    wait_until("the guest's output on the console", limit, || {
        // The guest powers off right after the marker: look at the console first.
        if read_console().contains(END) {
            return true;
        }
        if let Ok(Some(status)) = qemu.0.try_wait() {
            panic!("QEMU exited ({status}) early; console:\n{}", read_console());
        }
        false
    });
    wait_until("QEMU to exit", Duration::from_secs(30), || {
        matches!(qemu.0.try_wait(), Ok(Some(_)))
    });
    let text = read_console();
    let between = text
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(out, _)| out.trim().to_string())
        .unwrap_or_else(|| panic!("no output between the markers:\n{text}"));
    let (output, exit) = match between.rsplit_once("exit=") {
        Some((out, code)) => (out.trim().to_string(), code.trim().parse().unwrap_or(-1)),
        None => (between.clone(), -1),
    };
    Run {
        console: text,
        output,
        exit,
    }
}
