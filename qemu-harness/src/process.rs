//! Starting QEMU and stopping it again: as a child of this process ([`QemuChild`], reaped on
//! drop) or detached for the BMC's chassis program, tracked through a pid file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::spec::{BootDevice, VmSpec};
use crate::Error;

/// QEMU's own stderr (argument errors, device errors) goes here, next to the console.
pub fn qemu_log(spec: &VmSpec) -> PathBuf {
    spec.console.with_extension("qemu.log")
}

/// Starts QEMU; it is running (or has failed) when this returns.
pub fn spawn(spec: &VmSpec, boot: BootDevice) -> Result<Child, Error> {
    let netbooted;
    let spec = match netboot(spec, boot) {
        Some(s) => {
            netbooted = s;
            &netbooted
        }
        None => spec,
    };
    let log_path = qemu_log(spec);
    let io = |e| Error::Io(format!("opening {}", log_path.display()), e);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io)?;
    let log2 = log.try_clone().map_err(io)?;
    let mut child = Command::new(&spec.qemu)
        .args(spec.qemu_args(boot))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| Error::Tool {
            tool: spec.qemu.clone(),
            why: format!(
                "cannot start it ({e}): install the Debian package qemu-system-x86 \
                 (`cargo xtask deps`)"
            ),
        })?;
    // QEMU creates the console file once its devices are up; fail fast on bad arguments.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::QemuFailed {
                status: status.to_string(),
                log: std::fs::read_to_string(&log_path).unwrap_or_default(),
            });
        }
        if spec.console.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// A UEFI node booting from the network with a [`VmSpec::netboot`] script: the spec with
/// the kernel and initrd the script names ([`crate::netboot`]). When the script gives no
/// kernel, the node boots without one (its firmware finds nothing to boot, as a server
/// whose PXE boot failed) and the reason is written to its console.
fn netboot(spec: &VmSpec, boot: BootDevice) -> Option<VmSpec> {
    let url = spec.netboot.as_ref()?;
    if boot != BootDevice::Network || !matches!(spec.firmware, crate::spec::Firmware::Uefi { .. }) {
        return None;
    }
    let mac = spec.nics.first().map(|n| n.mac.clone()).unwrap_or_default();
    let dir = spec.console.parent().unwrap_or(std::path::Path::new("."));
    let mut s = spec.clone();
    match crate::netboot::resolve(url, &mac, dir) {
        Ok(k) => s.kernel = Some(k),
        Err(e) => {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&spec.console)
            {
                let _ = writeln!(f, "harness netboot failed: {e}");
            }
        }
    }
    Some(s)
}

/// A QEMU started by this process: killed and reaped when dropped.
#[derive(Debug)]
pub struct QemuChild {
    child: Child,
}

impl QemuChild {
    pub fn new(child: Child) -> QemuChild {
        QemuChild { child }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Ok while running; the exit status once it has ended.
    pub fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("QEMU exited: {status}")),
            Err(e) => Err(format!("cannot query QEMU: {e}")),
        }
    }

    /// Waits until QEMU exits (e.g. the guest powered off), up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for QemuChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `pid` is a live process whose command line mentions `marker` (our console path),
/// so a recycled pid is never mistaken for our QEMU.
pub fn is_our_process(pid: u32, marker: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let marker = marker.display().to_string();
    let cmdline = String::from_utf8_lossy(&cmdline);
    // A zombie has an empty command line: it is no longer running.
    !cmdline.is_empty() && cmdline.contains(&marker)
}

/// Sends `signal` to `pid`.
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only yields ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Stops a detached QEMU: SIGTERM (QEMU quits at once, like pulling the plug), then SIGKILL
/// if it is still there after 5 s.
pub fn stop_detached(pid: u32, marker: &Path) {
    if !is_our_process(pid, marker) {
        return;
    }
    signal(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !is_our_process(pid, marker) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(pid, libc::SIGKILL);
}
