//! The BMC's `chassis_control` program: ipmi_sim calls `ferrite-qemu-harness chassis --state
//! DIR get power boot`, `… set power 1`, `… set boot pxe`; power starts or stops the node's
//! QEMU and the boot device chooses between `-boot order=nc` (PXE), `order=c` (disk) and the
//! virtual CD (`cdrom`, the node's ISO; see [`BootDevice`] for UEFI nodes).
//!
//! State directory: `vm.json` (the [`VmSpec`]), `boot` (ipmi_sim's boot device name),
//! `qemu.pid`, and `chassis.log` (every call, for debugging).

use std::io::Write;
use std::path::Path;

use crate::process;
use crate::spec::{BootDevice, VmSpec};
use crate::Error;

pub const SPEC_FILE: &str = "vm.json";
pub const PID_FILE: &str = "qemu.pid";
pub const BOOT_FILE: &str = "boot";
pub const LOG_FILE: &str = "chassis.log";

/// Which QEMU boot order an ipmi_sim boot device name means. `pxe` boots the network first;
/// `disk` and `default` (ipmitool's `bootdev disk`, "hard drive" in the spec's wording in
/// ipmi_sim) the disk; `cdrom` the virtual CD; no override keeps the node's order, network
/// then disk.
pub fn boot_device(name: &str) -> BootDevice {
    match name.trim() {
        "disk" | "default" => BootDevice::Disk,
        "cdrom" => BootDevice::Cdrom,
        _ => BootDevice::Network,
    }
}

pub fn read_spec(state: &Path) -> Result<VmSpec, Error> {
    let path = state.join(SPEC_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Io(format!("reading {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| Error::BadState {
        path,
        why: e.to_string(),
    })
}

/// The pid of the node's QEMU when it is running.
pub fn running_pid(state: &Path, spec: &VmSpec) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(state.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    process::is_our_process(pid, &spec.console).then_some(pid)
}

fn power_on(state: &Path, spec: &VmSpec) -> Result<(), Error> {
    if running_pid(state, spec).is_some() {
        return Ok(());
    }
    let boot = boot_device(&std::fs::read_to_string(state.join(BOOT_FILE)).unwrap_or_default());
    let child = process::spawn(spec, boot)?;
    let pid_file = state.join(PID_FILE);
    std::fs::write(&pid_file, child.id().to_string())
        .map_err(|e| Error::Io(format!("writing {}", pid_file.display()), e))?;
    // Detached on purpose: QEMU outlives this short-lived program; the node's guard stops it.
    std::mem::forget(child);
    Ok(())
}

fn power_off(state: &Path, spec: &VmSpec) {
    if let Some(pid) = running_pid(state, spec) {
        process::stop_detached(pid, &spec.console);
    }
}

/// Runs one chassis_control call and returns what to print on stdout.
pub fn run(state: &Path, args: &[String]) -> Result<String, Error> {
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join(LOG_FILE))
    {
        let _ = writeln!(log, "{}", args.join(" "));
    }
    let spec = read_spec(state)?;
    let bad = |why: String| Error::BadChassisCall {
        args: args.join(" "),
        why,
    };
    let (op, params) = args
        .split_first()
        .ok_or_else(|| bad("expected `get PARAM…` or `set PARAM VALUE…`".into()))?;
    let mut out = String::new();
    match op.as_str() {
        "get" => {
            for p in params {
                match p.as_str() {
                    "power" => {
                        let on = running_pid(state, &spec).is_some();
                        out.push_str(&format!("power:{}\n", u8::from(on)));
                    }
                    "boot" => {
                        let boot = std::fs::read_to_string(state.join(BOOT_FILE))
                            .unwrap_or_else(|_| "none".into());
                        out.push_str(&format!("boot:{}\n", boot.trim()));
                    }
                    other => return Err(bad(format!("unknown parameter {other:?}"))),
                }
            }
        }
        "set" => {
            if params.len() % 2 != 0 {
                return Err(bad("`set` takes PARAM VALUE pairs".into()));
            }
            for pair in params.chunks(2) {
                match (pair[0].as_str(), pair[1].as_str()) {
                    ("power", "1") => power_on(state, &spec)?,
                    ("power", "0") => power_off(state, &spec),
                    ("reset", _) => {
                        power_off(state, &spec);
                        power_on(state, &spec)?;
                    }
                    ("boot", dev) => {
                        let path = state.join(BOOT_FILE);
                        std::fs::write(&path, dev)
                            .map_err(|e| Error::Io(format!("writing {}", path.display()), e))?;
                    }
                    (p, v) => return Err(bad(format!("cannot set {p} to {v:?}"))),
                }
            }
        }
        other => return Err(bad(format!("unknown operation {other:?}"))),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Accel, Firmware};

    fn state() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let spec = VmSpec {
            name: "t".into(),
            qemu: "/nonexistent/qemu".into(),
            accel: Accel::Tcg,
            memory_mib: 64,
            cpus: 1,
            disks: vec![],
            nics: vec![],
            smbios: None,
            kernel: None,
            netboot: None,
            firmware: Firmware::Bios,
            cdrom: None,
            ipmi_port: None,
            console: dir.path().join("console.log"),
            extra_args: vec![],
        };
        std::fs::write(
            dir.path().join(SPEC_FILE),
            serde_json::to_string(&spec).unwrap(),
        )
        .unwrap();
        dir
    }

    fn call(dir: &Path, args: &str) -> Result<String, Error> {
        let args: Vec<String> = args.split_whitespace().map(String::from).collect();
        run(dir, &args)
    }

    #[test]
    fn boot_device_is_kept_and_power_reads_off() {
        let d = state();
        assert_eq!(
            call(d.path(), "get power boot").unwrap(),
            "power:0\nboot:none\n"
        );
        call(d.path(), "set boot pxe").unwrap();
        assert_eq!(call(d.path(), "get boot").unwrap(), "boot:pxe\n");
        call(d.path(), "set power 0").unwrap();
        let log = std::fs::read_to_string(d.path().join(LOG_FILE)).unwrap();
        assert!(log.contains("set boot pxe\n"), "{log}");
    }

    #[test]
    fn names_map_to_boot_orders() {
        assert_eq!(boot_device("pxe"), BootDevice::Network);
        assert_eq!(boot_device("none"), BootDevice::Network);
        assert_eq!(boot_device("default\n"), BootDevice::Disk);
        assert_eq!(boot_device("disk"), BootDevice::Disk);
        assert_eq!(boot_device("cdrom"), BootDevice::Cdrom);
    }

    #[test]
    fn bad_calls_and_a_missing_qemu_are_errors() {
        let d = state();
        assert!(matches!(
            call(d.path(), ""),
            Err(Error::BadChassisCall { .. })
        ));
        assert!(matches!(
            call(d.path(), "get volume"),
            Err(Error::BadChassisCall { .. })
        ));
        assert!(matches!(
            call(d.path(), "set power"),
            Err(Error::BadChassisCall { .. })
        ));
        assert!(matches!(
            call(d.path(), "frob"),
            Err(Error::BadChassisCall { .. })
        ));
        let e = call(d.path(), "set power 1").unwrap_err();
        assert!(e.to_string().contains("qemu-system-x86"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        assert!(call(empty.path(), "get power")
            .unwrap_err()
            .to_string()
            .contains("vm.json"));
    }
}
