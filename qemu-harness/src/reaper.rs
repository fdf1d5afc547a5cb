//! Nothing a lab starts outlives it. A process that starts QEMU nodes (`cargo xtask demo`,
//! `ferrite-qemu-harness up`) calls [`stop_descendants_on_signals`]: it becomes a child
//! subreaper, so the QEMU that a BMC's chassis program starts detached stays below it in the
//! process tree, and SIGTERM, SIGHUP or SIGINT (a process manager, a closed terminal,
//! Ctrl-C) stops every descendant before the process exits. Without it, a SIGTERM ended the
//! demo and left QEMU and ipmi_sim running as orphans.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long descendants get to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

/// Installs the subreaper flag and a thread that, on SIGTERM/SIGHUP/SIGINT, stops every
/// descendant (see [`stop_descendants`]) and exits with status 128 + the signal number.
pub fn stop_descendants_on_signals() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers and changes only this
    // process's reparenting rule.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut signals = Signals::new([SIGTERM, SIGHUP, SIGINT])?;
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!("\nsignal {sig}: stopping every process this one started");
                let left = stop_descendants(GRACE);
                if !left.is_empty() {
                    eprintln!("still running after SIGKILL: pids {left:?}");
                }
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

/// Every live descendant of this process (children, their children, and orphans reparented
/// to it as subreaper), parents before children. Zombies are left out: they are not running.
pub fn descendants() -> Vec<u32> {
    let me = std::process::id();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid) in processes() {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = vec![];
    let mut queue = vec![me];
    while let Some(p) = queue.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            out.push(c);
            queue.push(c);
        }
    }
    out
}

/// (pid, parent pid) of every running, non-zombie process, from /proc/<pid>/stat.
fn processes() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (state, ppid) = parse_stat(&stat)?;
            (state != 'Z' && state != 'X').then_some((pid, ppid))
        })
        .collect()
}

/// State and parent pid from a /proc/<pid>/stat line: `pid (comm) S ppid …`, where comm
/// may hold spaces and parentheses (so parse from the last ')').
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid only yields ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Reaps whatever children of this process have exited (orphans reparented to a subreaper
/// become its children), so they leave the process table.
fn reap() {
    loop {
        // SAFETY: waitpid with WNOHANG on any child; the status pointer may be null.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}

/// SIGTERM to every descendant (again for any that appear meanwhile, e.g. a QEMU a chassis
/// program was starting), SIGKILL to those still there after `grace`; returns the pids
/// still running at the end (none, normally).
pub fn stop_descendants(grace: Duration) -> Vec<u32> {
    let deadline = Instant::now() + grace;
    loop {
        reap();
        let pids = descendants();
        if pids.is_empty() {
            return pids;
        }
        let sig = if Instant::now() < deadline {
            libc::SIGTERM
        } else {
            libc::SIGKILL
        };
        for &p in &pids {
            signal(p, sig);
        }
        if sig == libc::SIGKILL {
            std::thread::sleep(Duration::from_millis(200));
            reap();
            return descendants();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::parse_stat;

    #[test]
    fn stat_with_spaces_and_parentheses_in_comm() {
        assert_eq!(parse_stat("42 (qemu (x) y) S 7 42 42 0 -1"), Some(('S', 7)));
        assert_eq!(parse_stat("1 (init) Z 0"), Some(('Z', 0)));
        assert_eq!(parse_stat("garbage"), None);
    }
}
