//! Our initiator against Linux tgtd (Debian tgt) on a file backstore, with and without CHAP.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{pattern, require_tool, wait_until, INITIATOR};
use ferrite_iscsi::{Credentials, Initiator, InitiatorError, LoginOptions};

const TGT_IQN: &str = "iqn.2026-01.org.ferrite:tgtd";

/// Two tgtd daemons starting at the same moment trip over each other; run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Tgtd {
    child: Child,
    control: u16,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

    fn start(chap: Option<&Credentials>) -> Tgtd {
        let tgtd = require_tool("tgtd", "tgt");
        require_tool("tgtadm", "tgt");
        let dir = tempfile::tempdir().unwrap();
        let backing: PathBuf = dir.path().join("tgt.img");
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        let port = free_port();
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

/// tgtd puts the disk on LUN 1 (LUN 0 is its controller); our initiator talks to LUN 0,
/// so these tests address LUN 1 through raw CDBs on a session-level helper.
async fn roundtrip(addr: SocketAddr, opts: &LoginOptions) -> Result<(), InitiatorError> {
    let found = Initiator::discover(addr, INITIATOR).await?;
    assert!(found.iter().any(|(n, _)| n == TGT_IQN), "{found:?}");
    let mut s = Initiator::connect_lun(addr, opts, 1).await?;
    assert_eq!(s.blocks(), (32 << 20) / 512);
    let data = pattern(2 << 20, 3);
    s.write(8, &data).await?;
    s.sync().await?;
    assert_eq!(s.read(8, (data.len() / 512) as u32).await?, data);
    s.logout().await
}

#[tokio::test]
async fn our_initiator_against_tgtd_without_chap() {
    let _one = ONE_AT_A_TIME.lock().await;
    let t = Tgtd::start(None);
    roundtrip(t.addr, &LoginOptions::new(INITIATOR, TGT_IQN))
        .await
        .unwrap();
}

#[tokio::test]
async fn our_initiator_against_tgtd_with_chap() {
    let _one = ONE_AT_A_TIME.lock().await;
    let cred = Credentials {
        user: "ferrite".into(),
        secret: "tgtd-secret-1".into(),
    };
    let t = Tgtd::start(Some(&cred));
    let mut o = LoginOptions::new(INITIATOR, TGT_IQN);
    o.chap = Some(cred.clone());
    roundtrip(t.addr, &o).await.unwrap();
    o.chap = Some(Credentials {
        user: "ferrite".into(),
        secret: "wrong-secret".into(),
    });
    let e = Initiator::connect_lun(t.addr, &o, 1).await.unwrap_err();
    assert!(
        matches!(
            e,
            InitiatorError::LoginRejected {
                class: 2,
                detail: 1,
                ..
            }
        ),
        "{e}"
    );
}
