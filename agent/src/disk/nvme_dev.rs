//! NVMe erase on a namespace block device (e.g. /dev/nvme0n1) through the kernel's admin
//! passthrough ioctl (`NVME_IOCTL_ADMIN_CMD`, linux/nvme_ioctl.h); the commands and their
//! data come from the pure codec in [`super::nvme`].

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use super::nvme::{
    self, AdminCommand, ErasePlan, IdentifyController, IdentifyNamespace, SanitizeState,
    SanitizeStatus, ShortData,
};

/// `struct nvme_passthru_cmd` of linux/nvme_ioctl.h (72 bytes).
#[repr(C)]
#[derive(Debug, Default)]
struct PassthruCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

const _: () = assert!(std::mem::size_of::<PassthruCmd>() == 72);

// NVME_IOCTL_ID = _IO('N', 0x40); NVME_IOCTL_ADMIN_CMD = _IOWR('N', 0x41, struct
// nvme_admin_cmd). nix builds the request number with the libc's own request type
// (c_ulong on glibc, c_int on musl).
nix::ioctl_none!(ioctl_nvme_id, b'N', 0x40);
nix::ioctl_readwrite!(ioctl_nvme_admin_cmd, b'N', 0x41, PassthruCmd);

/// Format NVM can take minutes on a large drive; the kernel's default admin timeout
/// (60 s) would reset the controller in the middle of it.
pub const FORMAT_TIMEOUT_MS: u32 = 3_600_000;
/// How long a sanitize may run before the erase is reported as failed.
pub const SANITIZE_DEADLINE: Duration = Duration::from_secs(4 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum NvmeError {
    #[error("the NVMe passthrough ioctl for {what} failed")]
    Ioctl {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the controller rejected {what}: {status}")]
    Status { what: &'static str, status: String },
    #[error("the controller returned malformed data")]
    Data(#[from] ShortData),
    #[error(
        "the controller supports neither Format NVM (OACS bit 1 clear) nor a crypto or block \
         erase Sanitize (SANICAP {sanicap:#x})"
    )]
    Unsupported { sanicap: u32 },
    #[error(
        "{method} would also erase the other namespaces of this controller ({others}); erase \
         them all by running erase_devices from the ramdisk, or zero this one"
    )]
    SharedController {
        method: &'static str,
        others: String,
    },
    #[error("the sanitize did not finish within {limit:?} (last progress {percent:.1}%)")]
    SanitizeTimeout { limit: Duration, percent: f64 },
    #[error("the Sanitize Status log reports that the sanitize failed")]
    SanitizeFailed,
}

/// Run one admin command; `data` receives what the controller returns.
fn admin(
    file: &File,
    what: &'static str,
    cmd: &AdminCommand,
    data: Option<&mut [u8]>,
) -> Result<(), NvmeError> {
    let (addr, data_len) = match data {
        Some(buf) => {
            debug_assert!(buf.len() >= cmd.data_len as usize);
            (buf.as_mut_ptr() as u64, cmd.data_len)
        }
        None => (0, 0),
    };
    let mut raw = PassthruCmd {
        opcode: cmd.opcode,
        nsid: cmd.nsid,
        addr,
        data_len,
        cdw10: cmd.cdw10,
        cdw11: cmd.cdw11,
        timeout_ms: cmd.timeout_ms,
        ..PassthruCmd::default()
    };
    // SAFETY: `raw` is a live, properly laid out nvme_passthru_cmd; its `addr` is either 0
    // with data_len 0, or points at `data`, a buffer of at least `data_len` bytes that is
    // mutably borrowed for the whole call; the fd is open for the call.
    let ret = unsafe { ioctl_nvme_admin_cmd(file.as_raw_fd(), &mut raw) }.map_err(|e| {
        NvmeError::Ioctl {
            what,
            source: io::Error::from(e),
        }
    })?;
    if ret != 0 {
        return Err(NvmeError::Status {
            what,
            status: nvme::describe_status(ret as u32),
        });
    }
    Ok(())
}

/// The namespace ID the kernel has for this block device.
fn namespace_id(file: &File) -> Result<u32, NvmeError> {
    // SAFETY: NVME_IOCTL_ID takes no argument; the fd is open for the call.
    let id = unsafe { ioctl_nvme_id(file.as_raw_fd()) }.map_err(|e| NvmeError::Ioctl {
        what: "the namespace ID",
        source: io::Error::from(e),
    })?;
    Ok(id as u32)
}

/// What Identify tells about a namespace and its controller.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub nsid: u32,
    pub ctrl: IdentifyController,
    pub ns: IdentifyNamespace,
}

pub fn identify(file: &File) -> Result<Namespace, NvmeError> {
    let nsid = namespace_id(file)?;
    let mut buf = vec![0u8; nvme::IDENTIFY_LEN];
    admin(
        file,
        "Identify Controller",
        &nvme::identify_controller(),
        Some(&mut buf),
    )?;
    let ctrl = IdentifyController::parse(&buf)?;
    buf.fill(0);
    admin(
        file,
        "Identify Namespace",
        &nvme::identify_namespace(nsid),
        Some(&mut buf),
    )?;
    let ns = IdentifyNamespace::parse(&buf)?;
    Ok(Namespace { nsid, ctrl, ns })
}

/// The kernel name (`nvme0n1`) when `path` is a whole NVMe namespace, not a partition.
pub fn namespace_name(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let name = real.file_name()?.to_str()?.to_string();
    let (ctrl, ns) = name.strip_prefix("nvme")?.split_once('n')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(ctrl) && digits(ns)).then_some(name)
}

/// Other namespaces of the same controller (`nvme0n2` next to `nvme0n1`), from
/// `sys_block` (/sys/block).
pub fn sibling_namespaces(sys_block: &Path, name: &str) -> Vec<String> {
    let Some(prefix) = name.rfind('n').map(|i| &name[..=i]) else {
        return Vec::new();
    };
    let mut found: Vec<String> = std::fs::read_dir(sys_block)
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| {
                    n != name
                        && n.strip_prefix(prefix)
                            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The outcome of an NVMe erase.
#[derive(Debug, Clone)]
pub struct Erased {
    pub plan: ErasePlan,
    pub nsid: u32,
    pub model: String,
    /// DLFEAT says deallocated blocks read as zeroes.
    pub dlfeat_reads_zeroes: bool,
    pub seconds: f64,
}

/// Erase the namespace open as `file` (kernel name `name`) with the best method the
/// controller offers. Refuses methods that would reach other namespaces listed in
/// `siblings` (FNA bits 0/1 for format; sanitize always acts on the whole subsystem).
pub fn erase(file: &File, siblings: &[String], deadline: Duration) -> Result<Erased, NvmeError> {
    let started = Instant::now();
    let Namespace { nsid, ctrl, ns } = identify(file)?;
    let plan = ErasePlan::choose(&ctrl).ok_or(NvmeError::Unsupported {
        sanicap: ctrl.sanicap,
    })?;
    check_scope(plan, &ctrl, siblings)?;
    match plan {
        ErasePlan::Format(ses) => admin(
            file,
            "Format NVM",
            &nvme::format_nvm(nsid, &ns, ses, FORMAT_TIMEOUT_MS),
            None,
        )?,
        ErasePlan::Sanitize(action) => {
            admin(file, "Sanitize", &nvme::sanitize(action), None)?;
            wait_for_sanitize(file, deadline)?;
        }
    }
    // The format may change what deallocated blocks read as: ask again.
    let dlfeat_reads_zeroes = identify(file)
        .map(|n| n.ns.deallocated_reads_zeroes())
        .unwrap_or(ns.deallocated_reads_zeroes());
    Ok(Erased {
        plan,
        nsid,
        model: ctrl.model,
        dlfeat_reads_zeroes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Refuse a plan that would also erase `siblings`, other namespaces of the controller:
/// a format when FNA bit 0 or 1 says it acts on all of them; a sanitize always does.
fn check_scope(
    plan: ErasePlan,
    ctrl: &IdentifyController,
    siblings: &[String],
) -> Result<(), NvmeError> {
    let reaches_all = match plan {
        ErasePlan::Format(_) => ctrl.format_all_namespaces() || ctrl.secure_erase_all_namespaces(),
        ErasePlan::Sanitize(_) => true,
    };
    if reaches_all && !siblings.is_empty() {
        return Err(NvmeError::SharedController {
            method: plan.method(),
            others: siblings.join(", "),
        });
    }
    Ok(())
}

/// Poll the Sanitize Status log page until the sanitize is over or `limit` passes.
fn wait_for_sanitize(file: &File, limit: Duration) -> Result<(), NvmeError> {
    let mut buf = vec![0u8; nvme::SANITIZE_LOG_LEN];
    let cmd = nvme::get_log_page(
        nvme::LID_SANITIZE_STATUS,
        nvme::NSID_ALL,
        nvme::SANITIZE_LOG_LEN,
    );
    poll_sanitize(limit, Duration::from_millis(500), || {
        admin(file, "Get Log Page (Sanitize Status)", &cmd, Some(&mut buf))?;
        Ok(SanitizeStatus::parse(&buf)?)
    })
}

/// Read the status with `read` every `every` until it is no longer in progress.
fn poll_sanitize(
    limit: Duration,
    every: Duration,
    mut read: impl FnMut() -> Result<SanitizeStatus, NvmeError>,
) -> Result<(), NvmeError> {
    let deadline = Instant::now() + limit;
    loop {
        let status = read()?;
        match status.state {
            SanitizeState::InProgress => {}
            SanitizeState::Failed => return Err(NvmeError::SanitizeFailed),
            _ => return Ok(()),
        }
        if Instant::now() >= deadline {
            return Err(NvmeError::SanitizeTimeout {
                limit,
                percent: status.percent(),
            });
        }
        tracing::info!(
            progress = format!("{:.1}%", status.percent()),
            "sanitize in progress"
        );
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "nvme0n1",
            "nvme0n1p1",
            "nvme12n3",
            "nvme0",
            "nvmexn1",
            "loop0",
        ] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let name = |n: &str| namespace_name(&dir.path().join(n));
        assert_eq!(name("nvme0n1").as_deref(), Some("nvme0n1"));
        assert_eq!(name("nvme12n3").as_deref(), Some("nvme12n3"));
        assert_eq!(name("nvme0n1p1"), None, "a partition is not a namespace");
        assert_eq!(name("nvme0"), None);
        assert_eq!(name("nvmexn1"), None);
        assert_eq!(name("loop0"), None);
        assert_eq!(name("missing"), None);
    }

    #[test]
    fn siblings_share_the_controller_prefix() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "nvme0n1",
            "nvme0n2",
            "nvme1n1",
            "nvme0n1p1",
            "nvme10n1",
            "sda",
        ] {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        assert_eq!(sibling_namespaces(dir.path(), "nvme0n1"), vec!["nvme0n2"]);
        assert!(sibling_namespaces(dir.path(), "nvme1n1").is_empty());
        assert!(sibling_namespaces(&dir.path().join("none"), "nvme0n1").is_empty());
    }

    fn ctrl(fna: u8) -> IdentifyController {
        IdentifyController {
            serial: "S".into(),
            model: "M".into(),
            oacs: 0x2,
            sanicap: 0x2,
            nn: 2,
            fna,
        }
    }

    #[test]
    fn plans_reaching_other_namespaces_are_refused() {
        use nvme::{SanitizeAction, SecureErase};
        let format = ErasePlan::Format(SecureErase::UserData);
        let sanitize = ErasePlan::Sanitize(SanitizeAction::BlockErase);
        let others = vec!["nvme0n2".to_string()];
        assert!(check_scope(format, &ctrl(0), &others).is_ok());
        assert!(check_scope(format, &ctrl(0x1), &[]).is_ok());
        assert!(check_scope(sanitize, &ctrl(0), &[]).is_ok());
        for (plan, fna) in [(format, 0x1), (format, 0x2), (sanitize, 0)] {
            let e = check_scope(plan, &ctrl(fna), &others).unwrap_err();
            assert!(e.to_string().contains("(nvme0n2)"), "{e}");
            assert!(e.to_string().contains(plan.method()), "{e}");
        }
    }

    fn status(state: SanitizeState, sprog: u16) -> SanitizeStatus {
        SanitizeStatus {
            sprog,
            state,
            global_data_erased: false,
        }
    }

    #[test]
    fn sanitize_polling_ends_on_completion_failure_or_deadline() {
        let tick = Duration::from_millis(1);
        let mut seq = vec![
            status(SanitizeState::Completed, 0xFFFF),
            status(SanitizeState::InProgress, 0x4000),
            status(SanitizeState::InProgress, 0x1000),
        ];
        let mut reads = 0;
        poll_sanitize(Duration::from_secs(5), tick, || {
            reads += 1;
            Ok(seq.pop().unwrap())
        })
        .unwrap();
        assert_eq!(reads, 3);
        let e = poll_sanitize(Duration::from_secs(5), tick, || {
            Ok(status(SanitizeState::Failed, 0))
        })
        .unwrap_err();
        assert!(matches!(e, NvmeError::SanitizeFailed), "{e}");
        let e = poll_sanitize(Duration::from_millis(20), tick, || {
            Ok(status(SanitizeState::InProgress, 0x8000))
        })
        .unwrap_err();
        assert!(e.to_string().contains("50.0%"), "{e}");
        let e = poll_sanitize(Duration::from_secs(5), tick, || {
            Err(NvmeError::SanitizeFailed)
        });
        assert!(e.is_err(), "read errors end the wait");
    }

    #[test]
    fn passthrough_on_a_regular_file_fails_cleanly() {
        // A file's filesystem does not know the NVMe ioctls: the error names the command.
        let f = tempfile::tempfile().unwrap();
        let e = identify(&f).unwrap_err();
        assert!(matches!(e, NvmeError::Ioctl { .. }), "{e:?}");
        assert!(e.to_string().contains("namespace ID"), "{e}");
        let e = admin(
            &f,
            "Identify Controller",
            &nvme::identify_controller(),
            None,
        );
        assert!(e.unwrap_err().to_string().contains("Identify Controller"));
    }
}
