//! tgtd (Debian tgt) started by a test with a 32 MiB file backstore on LUN 1, optionally
//! with CHAP; stopped by a Drop guard.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferrite_iscsi::Credentials;

use super::{require_tool, wait_until};

pub const TGT_IQN: &str = "iqn.2026-01.org.ferrite:tgtd";

/// Two tgtd daemons starting at the same moment trip over each other; run one at a time.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Tgtd {
    child: Child,
    control: u16,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Tgtd {
    fn adm(&self, args: &[&str]) -> Result<String, String> {
        let ctl = self.control.to_string();
        let out = Command::new("tgtadm")
            .args(["-C", &ctl, "--lld", "iscsi"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn start(chap: Option<&Credentials>) -> Tgtd {
        let tgtd = require_tool("tgtd", "tgt");
        require_tool("tgtadm", "tgt");
        let dir = tempfile::tempdir().unwrap();
        let backing: PathBuf = dir.path().join("tgt.img");
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        // tgtd must be told its portal. Should another process take the port first, tgtd
        // cannot listen there and the login of the test fails loudly: a clash can fail a
        // run but never make one pass.
        let port = ferrite_testkit::free_tcp_port();
        // The control "port" names tgtd's unix socket; pick one no other tgtd uses.
        let control = loop {
            // tgtadm accepts control ports up to 32767.
            let c = 10000 + (rand_u16() % 20000);
            if !std::path::Path::new(&format!("/var/run/tgtd/socket.{c}")).exists() {
                break c;
            }
        };
        let child = Command::new(tgtd)
            .args([
                "-f",
                "-C",
                &control.to_string(),
                "--iscsi",
                &format!("portal=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("tgtd.log")).unwrap())
            .spawn()
            .unwrap();
        let t = Tgtd {
            child,
            control,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            _dir: dir,
        };
        let log = t._dir.path().join("tgtd.log");
        let ready = (0..500).find_map(|_| {
            let r = t.adm(&["--op", "show", "--mode", "target"]).ok();
            if r.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            r
        });
        assert!(
            ready.is_some(),
            "tgtd did not answer tgtadm; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        t.adm(&[
            "--op", "new", "--mode", "target", "--tid", "1", "-T", TGT_IQN,
        ])
        .unwrap();
        t.adm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            backing.to_str().unwrap(),
        ])
        .unwrap();
        t.adm(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ])
        .unwrap();
        if let Some(c) = chap {
            t.adm(&[
                "--op",
                "new",
                "--mode",
                "account",
                "--user",
                &c.user,
                "--password",
                &c.secret,
            ])
            .unwrap();
            t.adm(&[
                "--op", "bind", "--mode", "account", "--tid", "1", "--user", &c.user,
            ])
            .unwrap();
        }
        wait_until("tgtd portal", Duration::from_secs(10), || {
            std::net::TcpStream::connect(t.addr).ok()
        });
        t
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        // tgtd ignores SIGTERM while targets exist (ARCHITECTURE.md): take it offline,
        // delete the target, then the system, which makes it exit.
        let _ = self.adm(&[
            "--op", "update", "--mode", "sys", "--name", "State", "-v", "offline",
        ]);
        let _ = self.adm(&[
            "--op", "delete", "--force", "--mode", "target", "--tid", "1",
        ]);
        let _ = self.adm(&["--op", "delete", "--mode", "system"]);
        for _ in 0..250 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_u16() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (t ^ std::process::id().wrapping_mul(2_654_435_761)) as u16
}
