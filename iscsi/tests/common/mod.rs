//! Shared helpers for the iSCSI integration tests: a target on a free loopback port with a
//! sparse backing file, stopped by a Drop guard.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferrite_iscsi::{Target, TargetConfig};

pub mod proxy;
pub mod tgtd;

pub const IQN: &str = "iqn.2026-01.org.ferrite:test";
pub const INITIATOR: &str = "iqn.2026-01.org.ferrite:initiator";

pub struct Running {
    pub addr: SocketAddr,
    pub backing: PathBuf,
    pub target: Arc<Target>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a target on 127.0.0.1:0 over a sparse file of `size` bytes; `tweak` edits the config.
pub fn start(size: u64, tweak: impl FnOnce(&mut TargetConfig)) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let backing = dir.path().join("lun.img");
    let f = std::fs::File::create(&backing).expect("create backing");
    f.set_len(size).expect("size backing");
    let mut cfg = TargetConfig::new(IQN, &backing);
    tweak(&mut cfg);
    let target = Target::new(cfg).expect("target");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel();
    let t2 = target.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(l.local_addr().expect("addr")).expect("send addr");
            t2.serve(l, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("target started");
    Running {
        addr,
        backing,
        target,
        _dir: dir,
        stop: Some(stop),
        thread: Some(thread),
    }
}

pub use ferrite_testkit::wait_until;

/// Fails with a clear message when a third-party tool is missing.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run `cargo xtask deps` (Debian package {package})");
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}
