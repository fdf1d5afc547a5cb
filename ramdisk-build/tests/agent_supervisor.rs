//! The ramdisk's agent supervisor (`src/scripts/agent-supervisor.sh`) run by a real shell
//! with stand-ins for the agent and the console shell: an agent that exits is started
//! again, and a root shell appears only with `ferrite-debug-shell=1` (issue 15 finding 5).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/scripts/agent-supervisor.sh"
);

/// The supervisor in its own process group, killed with everything it started on drop.
struct Supervisor {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn executable(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    let mut perm = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(path, perm).unwrap();
}

impl Supervisor {
    /// `cmdline`: the kernel command line it reads. The stand-in agent records each start
    /// and exits with status 3 at once; the stand-in shell records that it ran.
    fn start(cmdline: &str) -> Supervisor {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        std::fs::write(p("cmdline"), cmdline).unwrap();
        executable(
            &p("agent"),
            &format!(
                "#!/bin/sh\necho started >> {}\nexit 3\n",
                p("runs").display()
            ),
        );
        executable(
            &p("shell"),
            &format!(
                "#!/bin/sh\necho shell >> {}\nsleep 60\n",
                p("shells").display()
            ),
        );
        let child = Command::new("sh")
            .arg(SCRIPT)
            .env("FERRITE_AGENT", p("agent"))
            .env("FERRITE_CMDLINE", p("cmdline"))
            .env("FERRITE_AGENT_LOG", p("agent.log"))
            .env("FERRITE_RESTART_DELAY", "0.05")
            .env("FERRITE_DEBUG_SHELL", p("shell"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(p("console")).unwrap())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Supervisor { child, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn lines(&self, name: &str) -> usize {
        std::fs::read_to_string(self.path(name))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&Supervisor) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "no {what} within 20 s; console:\n{}",
                std::fs::read_to_string(self.path("console")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn an_agent_that_exits_is_restarted_and_no_shell_is_offered() {
    let s = Supervisor::start("console=ttyS0 quiet ipa-api-url=http://10.0.2.2:1");
    s.wait_for("third agent start", |s| s.lines("runs") >= 3);
    let console = std::fs::read_to_string(s.path("console")).unwrap();
    assert!(
        console.contains("ferrite-agent exited with status 3"),
        "{console}"
    );
    assert!(console.contains("restarting ferrite-agent"), "{console}");
    assert!(!console.contains("shell"), "{console}");
    assert_eq!(s.lines("shells"), 0, "a shell was started");
    let log = std::fs::read_to_string(s.path("agent.log")).unwrap();
    assert!(log.matches("exited with status 3").count() >= 2, "{log}");
}

#[test]
fn the_debug_shell_needs_its_kernel_parameter_and_the_agent_still_runs() {
    for not_it in [
        "ferrite-debug-shell=0",
        "ferrite-debug-shell",
        "xferrite-debug-shell=1",
    ] {
        let s = Supervisor::start(&format!("quiet {not_it}"));
        s.wait_for("second agent start", |s| s.lines("runs") >= 2);
        let console = std::fs::read_to_string(s.path("console")).unwrap();
        assert!(!console.contains("root shell"), "{not_it}: {console}");
    }
    let s = Supervisor::start("quiet ferrite-debug-shell=1 console=ttyS0");
    s.wait_for("the debug shell", |s| s.lines("shells") >= 1);
    s.wait_for("second agent start", |s| s.lines("runs") >= 2);
}
