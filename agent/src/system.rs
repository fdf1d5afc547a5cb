//! System-wide actions (sync, power off, reboot, network lockdown) behind the injectable
//! [`SystemHooks`] trait: a real implementation that only acts inside the deploy ramdisk,
//! and a recording fake for tests.

use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Why a system action was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// Power actions are refused outside the ramdisk so that a test or a standalone agent
    /// never powers off the machine it runs on.
    #[error(
        "refusing to {action}: this agent is not running as the ramdisk agent \
         (the root filesystem is not the initramfs); run it from the Ferrite ramdisk"
    )]
    NotInRamdisk { action: SystemAction },
    #[error("{action} failed")]
    Io {
        action: SystemAction,
        #[source]
        source: std::io::Error,
    },
}

/// The actions [`SystemHooks`] performs; recorded by [`RecordingHooks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemAction {
    Sync,
    PowerOff,
    Reboot,
    LockdownNetwork,
    Kexec,
}

impl fmt::Display for SystemAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SystemAction::Sync => "sync file systems",
            SystemAction::PowerOff => "power off",
            SystemAction::Reboot => "reboot",
            SystemAction::LockdownNetwork => "bring network interfaces down",
            SystemAction::Kexec => "kexec into the deployed OS",
        })
    }
}

/// Machine-wide actions that commands need. Blocking: call them from `spawn_blocking`.
pub trait SystemHooks: Send + Sync + 'static {
    /// Flush file system buffers (`sync(2)`).
    fn sync(&self) -> Result<(), SystemError>;
    /// Sync, then power the machine off. Returns only on failure (or from a fake).
    fn power_off(&self) -> Result<(), SystemError>;
    /// Sync, then reboot (`standby.run_image`). Returns only on failure (or from a fake).
    fn reboot(&self) -> Result<(), SystemError>;
    /// Bring every network interface down (after `system.lockdown`, as IPA does).
    fn lockdown_network(&self) -> Result<(), SystemError>;
    /// Load `image` with `kexec_file_load(2)`; once loaded, sync and jump into it a moment
    /// later ([`KEXEC_GRACE`]) on another thread, so the command can report that the jump
    /// is under way. Returns an error when the kernel cannot be loaded.
    fn kexec(&self, image: &KexecImage) -> Result<(), SystemError>;
}

/// A kernel to kexec into: files in the ramdisk, and its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KexecImage {
    pub kernel: std::path::PathBuf,
    pub initrd: Option<std::path::PathBuf>,
    pub cmdline: String,
}

/// `kexec_file_load(2)` (no wrapper in nix or libc's Rust bindings).
fn kexec_file_load(image: &KexecImage) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    /// KEXEC_FILE_NO_INITRAMFS (linux/kexec.h).
    const NO_INITRAMFS: libc::c_ulong = 0x4;
    let kernel = std::fs::File::open(&image.kernel)?;
    let initrd = image.initrd.as_ref().map(std::fs::File::open).transpose()?;
    let cmdline = std::ffi::CString::new(image.cmdline.as_str())
        .map_err(|_| std::io::Error::other("the command line has a NUL byte"))?;
    let bytes = cmdline.as_bytes_with_nul();
    let flags = if initrd.is_some() { 0 } else { NO_INITRAMFS };
    // SAFETY: the file descriptors are open for the duration of the call, and the command
    // line pointer and its length (NUL included, as the syscall requires) come from a live
    // CString; the kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel.as_raw_fd(),
            initrd.as_ref().map_or(-1, |f| f.as_raw_fd()),
            bytes.len() as libc::c_ulong,
            bytes.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How long after `ferrite.kexec` succeeded the agent jumps: time for the conductor's
/// next poll (every 250 ms) to read the success.
pub const KEXEC_GRACE: Duration = Duration::from_secs(2);

/// The real hooks. Power and network actions happen only when `in_ramdisk` is true;
/// `sync` is harmless and always runs.
#[derive(Debug, Clone)]
pub struct RealSystemHooks {
    in_ramdisk: bool,
    /// Delay before power off/reboot so the HTTP answer reaches the conductor first.
    grace: Duration,
}

impl RealSystemHooks {
    /// Hooks that act only if `/proc/self/mountinfo` shows the root filesystem is the
    /// initramfs (rootfs, ramfs or tmpfs).
    pub fn detect() -> Self {
        Self::new(detect_initramfs(Path::new("/")))
    }

    /// Explicit choice; `new(false)` refuses every power and network action.
    pub fn new(in_ramdisk: bool) -> Self {
        Self {
            in_ramdisk,
            grace: Duration::from_secs(1),
        }
    }

    pub fn in_ramdisk(&self) -> bool {
        self.in_ramdisk
    }

    fn power_action(
        &self,
        action: SystemAction,
        mode: nix::sys::reboot::RebootMode,
    ) -> Result<(), SystemError> {
        if !self.in_ramdisk {
            return Err(SystemError::NotInRamdisk { action });
        }
        self.sync()?;
        std::thread::sleep(self.grace);
        match nix::sys::reboot::reboot(mode) {
            Ok(never) => match never {},
            Err(errno) => Err(SystemError::Io {
                action,
                source: errno.into(),
            }),
        }
    }
}

impl SystemHooks for RealSystemHooks {
    fn kexec(&self, image: &KexecImage) -> Result<(), SystemError> {
        let action = SystemAction::Kexec;
        if !self.in_ramdisk {
            return Err(SystemError::NotInRamdisk { action });
        }
        kexec_file_load(image).map_err(|source| SystemError::Io { action, source })?;
        // Loaded: the command succeeds now and the jump follows on its own thread. A jump
        // inside the command left the conductor waiting out the silence of an agent that
        // will never answer (12 s of a 30 s deploy in `bench e2e`).
        let me = Self {
            grace: KEXEC_GRACE,
            ..self.clone()
        };
        std::thread::spawn(move || {
            if let Err(e) = me.power_action(action, nix::sys::reboot::RebootMode::RB_KEXEC) {
                tracing::error!(error = %e, "the kexec jump failed: the node stays in the ramdisk");
            }
        });
        Ok(())
    }

    fn sync(&self) -> Result<(), SystemError> {
        nix::unistd::sync();
        Ok(())
    }

    fn power_off(&self) -> Result<(), SystemError> {
        self.power_action(
            SystemAction::PowerOff,
            nix::sys::reboot::RebootMode::RB_POWER_OFF,
        )
    }

    fn reboot(&self) -> Result<(), SystemError> {
        self.power_action(
            SystemAction::Reboot,
            nix::sys::reboot::RebootMode::RB_AUTOBOOT,
        )
    }

    fn lockdown_network(&self) -> Result<(), SystemError> {
        let action = SystemAction::LockdownNetwork;
        if !self.in_ramdisk {
            return Err(SystemError::NotInRamdisk { action });
        }
        let entries = std::fs::read_dir("/sys/class/net")
            .map_err(|source| SystemError::Io { action, source })?;
        let mut first_error = None;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "lo" {
                continue;
            }
            if let Err(source) = set_interface_down(&name) {
                tracing::warn!(interface = %name, error = %source, "could not bring interface down");
                first_error.get_or_insert(source);
            }
        }
        match first_error {
            Some(source) => Err(SystemError::Io { action, source }),
            None => Ok(()),
        }
    }
}

/// Clears `IFF_UP` on one interface with `SIOCGIFFLAGS`/`SIOCSIFFLAGS`.
fn set_interface_down(name: &str) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut req = ifreq_for(name)?;
    ioctl_ifreq(sock.as_raw_fd(), SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags & !(libc::IFF_UP as libc::c_short);
    ioctl_ifreq(sock.as_raw_fd(), SIOCSIFFLAGS, &mut req)
}

fn ifreq_for(name: &str) -> std::io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

// The ioctl request type is `c_ulong` on glibc and `c_int` on musl (the agent's target),
// while the libc constants are `c_ulong` on both.
#[allow(clippy::unnecessary_cast)]
const SIOCGIFFLAGS: libc::Ioctl = libc::SIOCGIFFLAGS as libc::Ioctl;
#[allow(clippy::unnecessary_cast)]
const SIOCSIFFLAGS: libc::Ioctl = libc::SIOCSIFFLAGS as libc::Ioctl;

fn ioctl_ifreq(
    fd: libc::c_int,
    request: libc::Ioctl,
    req: &mut libc::ifreq,
) -> std::io::Result<()> {
    // SAFETY: `req` is a valid, exclusively borrowed ifreq for the duration of the call,
    // which is what SIOCGIFFLAGS/SIOCSIFFLAGS expect.
    let rc = unsafe { libc::ioctl(fd, request, req as *mut libc::ifreq) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// True when the mount at `/` in a `/proc/self/mountinfo` text is an initramfs
/// (`rootfs`, `ramfs` or `tmpfs`). Unparseable input counts as "not a ramdisk".
pub fn root_is_initramfs(mountinfo: &str) -> bool {
    // Later mounts over `/` shadow earlier ones: the last line for `/` wins.
    let mut root_fs = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.get(4) == Some(&"/") {
            root_fs = fields.get(sep + 1).copied();
        }
    }
    matches!(root_fs, Some("rootfs" | "ramfs" | "tmpfs"))
}

/// True when `root`/proc/self/mountinfo says we run in an initramfs.
pub fn detect_initramfs(root: &Path) -> bool {
    std::fs::read_to_string(root.join("proc/self/mountinfo"))
        .map(|text| root_is_initramfs(&text))
        .unwrap_or(false)
}

/// Test double: records each action and succeeds (or fails, when told to).
#[derive(Debug, Default)]
pub struct RecordingHooks {
    calls: Mutex<Vec<SystemAction>>,
    fail: Mutex<Option<SystemAction>>,
}

impl RecordingHooks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every action performed so far, in order.
    pub fn calls(&self) -> Vec<SystemAction> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Make the next calls of `action` fail with an I/O error.
    pub fn fail_on(&self, action: SystemAction) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = Some(action);
    }

    fn record(&self, action: SystemAction) -> Result<(), SystemError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(action);
        if *self.fail.lock().unwrap_or_else(|e| e.into_inner()) == Some(action) {
            return Err(SystemError::Io {
                action,
                source: std::io::Error::other("injected failure"),
            });
        }
        Ok(())
    }
}

impl SystemHooks for RecordingHooks {
    fn sync(&self) -> Result<(), SystemError> {
        self.record(SystemAction::Sync)
    }
    fn power_off(&self) -> Result<(), SystemError> {
        self.record(SystemAction::PowerOff)
    }
    fn reboot(&self) -> Result<(), SystemError> {
        self.record(SystemAction::Reboot)
    }
    fn lockdown_network(&self) -> Result<(), SystemError> {
        self.record(SystemAction::LockdownNetwork)
    }
    fn kexec(&self, _image: &KexecImage) -> Result<(), SystemError> {
        self.record(SystemAction::Kexec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISK_ROOT: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
25 22 0:22 / /proc rw,nosuid shared:12 - proc proc rw";
    const RAMDISK_ROOT: &str = "\
1 1 0:2 / / rw shared:1 - rootfs rootfs rw,size=4003680k
2 1 0:20 / /proc rw,relatime shared:2 - proc proc rw";

    #[test]
    fn initramfs_detection() {
        assert!(!root_is_initramfs(DISK_ROOT));
        assert!(root_is_initramfs(RAMDISK_ROOT));
        assert!(root_is_initramfs(
            "5 1 0:30 / / rw - tmpfs none rw\n6 5 0:5 / /dev rw - devtmpfs udev rw"
        ));
        // A disk mounted over the initramfs root wins.
        assert!(!root_is_initramfs(&format!(
            "{RAMDISK_ROOT}\n40 1 8:1 / / rw - xfs /dev/sda1 rw"
        )));
        assert!(!root_is_initramfs(""));
        assert!(!root_is_initramfs("garbage without separators\n\n - -"));
    }

    #[test]
    fn real_hooks_refuse_power_outside_ramdisk() {
        let hooks = RealSystemHooks::new(false);
        for result in [hooks.power_off(), hooks.reboot(), hooks.lockdown_network()] {
            let err = result.expect_err("must refuse outside the ramdisk");
            assert!(matches!(err, SystemError::NotInRamdisk { .. }), "{err}");
            assert!(err.to_string().contains("not running as the ramdisk agent"));
        }
        hooks.sync().expect("sync is harmless");
    }

    #[test]
    fn recording_hooks_record_and_fail_on_demand() {
        let hooks = RecordingHooks::new();
        hooks.sync().unwrap();
        hooks.fail_on(SystemAction::Reboot);
        assert!(hooks.reboot().is_err());
        assert_eq!(hooks.calls(), [SystemAction::Sync, SystemAction::Reboot]);
    }
}
