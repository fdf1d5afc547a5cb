//! A SIGTERM to a process that started nodes (`ferrite-qemu-harness up`, like `cargo xtask
//! demo --keep`) stops its ipmi_sim BMC and the QEMU that the BMC's chassis program started
//! detached: nothing is left running as an orphan. Runs QEMU, so it is a VM test.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Command line of a running (non-zombie) process, if it is one.
fn cmdline(pid: u32) -> Option<String> {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
    (!cmd.is_empty()).then_some(cmd)
}

/// Running descendants of `root` with their command lines (from /proc/<pid>/stat ppids).
fn descendants(root: u32) -> Vec<(u32, String)> {
    let mut parent: Vec<(u32, u32)> = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parent.push((pid, ppid));
        }
    }
    let mut out = vec![];
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        for &(c, pp) in &parent {
            if pp == p {
                if let Some(cmd) = cmdline(c) {
                    out.push((c, cmd));
                }
                queue.push(c);
            }
        }
    }
    out
}

fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills whatever the test saw running if it fails midway.
struct Cleanup(Vec<u32>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill(2) on a pid this test saw below its own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn sigterm_stops_the_bmc_and_its_detached_qemu() {
    if ferrite_qemu_harness::skip_vm_test() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut up = Command::new(env!("CARGO_BIN_EXE_ferrite-qemu-harness"))
        .args([
            "up",
            "--nodes",
            "1",
            "--memory-mib",
            "128",
            "--disk-gib",
            "1",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = up.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // name bmc username password mac agent console
    let node = poll("the node line", Duration::from_secs(60), || {
        let line = rx.recv_timeout(Duration::from_millis(100)).ok()?;
        line.starts_with("node-0\t").then_some(line)
    });
    let f: Vec<&str> = node.split('\t').collect();
    let (host, port) = f[1].rsplit_once(':').unwrap();
    let power_on = Command::new("ipmitool")
        .args([
            "-I", "lanplus", "-C", "3", "-H", host, "-p", port, "-U", f[2], "-P", f[3],
        ])
        .args(["power", "on"])
        .output()
        .unwrap();
    assert!(power_on.status.success(), "ipmitool power on: {power_on:?}");
    let running = poll("ipmi_sim and QEMU running", Duration::from_secs(60), || {
        let p = descendants(up.id());
        let qemu = p.iter().any(|(_, c)| c.contains("qemu-system"));
        let bmc = p.iter().any(|(_, c)| c.contains("ipmi_sim"));
        (qemu && bmc).then_some(p)
    });
    let _cleanup = Cleanup(running.iter().map(|(p, _)| *p).collect());

    // SAFETY: kill(2) on the child this test spawned and has not reaped.
    unsafe {
        libc::kill(up.id() as i32, libc::SIGTERM);
    }
    let status = poll("the harness to exit", Duration::from_secs(30), || {
        up.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
    // The harness waited for them before exiting: none may remain (pids are not recycled
    // within these seconds; the command line is compared to be sure).
    let left: Vec<_> = running
        .iter()
        .filter(|(pid, cmd)| cmdline(*pid).as_ref() == Some(cmd))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
}
