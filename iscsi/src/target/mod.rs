//! The iSCSI target: accepts connections on a tokio listener and serves LUN 0 from a file or
//! block device. Each connection runs on its own thread with blocking socket and file I/O,
//! which keeps the command path simple and fast; the server itself is async so callers
//! hand it a listener and a shutdown future.

pub(crate) mod login;
mod out;
mod session;

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::chap::Credentials;
use crate::scsi::{Backing, BackingError, Lun};
use crate::text::Offer;

/// How to serve one target.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// The target's iSCSI name (iqn.… or eui.…).
    pub iqn: String,
    /// The file or block device exported as LUN 0.
    pub backing: PathBuf,
    /// Open the backing store with O_DIRECT.
    pub direct: bool,
    /// When set, initiators must authenticate with CHAP as this user.
    pub chap: Option<Credentials>,
    /// When set, the target answers an initiator's mutual-CHAP challenge with these.
    pub mutual_chap: Option<Credentials>,
    /// Negotiation limits we offer.
    pub offer: Offer,
    /// Commands an initiator may have outstanding (MaxCmdSN − ExpCmdSN + 1), at least 1.
    pub cmd_window: u32,
}

impl TargetConfig {
    pub fn new(iqn: impl Into<String>, backing: impl Into<PathBuf>) -> TargetConfig {
        TargetConfig {
            iqn: iqn.into(),
            backing: backing.into(),
            direct: false,
            chap: None,
            mutual_chap: None,
            offer: Offer::default(),
            cmd_window: 128,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("invalid target name {0:?}: it must start with \"iqn.\", \"eui.\" or \"naa.\" and be at most 223 bytes")]
    BadName(String),
    #[error("cannot open the LUN")]
    Backing(#[from] BackingError),
    #[error("accepting connections failed")]
    Accept(#[source] std::io::Error),
}

/// A running target's shared state.
#[derive(Debug)]
pub struct Target {
    pub(crate) cfg: TargetConfig,
    pub(crate) lun: Lun,
    next_tsih: AtomicU16,
    next_conn: AtomicU64,
    conns: Mutex<HashMap<u64, TcpStream>>,
}

pub fn valid_name(n: &str) -> bool {
    (n.starts_with("iqn.") || n.starts_with("eui.") || n.starts_with("naa."))
        && n.len() <= 223
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

impl Target {
    pub fn new(cfg: TargetConfig) -> Result<Arc<Target>, TargetError> {
        if !valid_name(&cfg.iqn) {
            return Err(TargetError::BadName(cfg.iqn.clone()));
        }
        let store = Backing::open(&cfg.backing, cfg.direct)?;
        let serial = format!("{:016x}", fnv(cfg.iqn.as_bytes()));
        let lun = Lun::new(store, serial, cfg.iqn.clone());
        Ok(Arc::new(Target {
            cfg,
            lun,
            next_tsih: AtomicU16::new(1),
            next_conn: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
        }))
    }

    pub fn lun(&self) -> &Lun {
        &self.lun
    }

    pub(crate) fn new_tsih(&self) -> u16 {
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 {
                return t;
            }
        }
    }

    /// Serves connections from `listener` until `shutdown` completes, then closes every
    /// connection and waits for their threads.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), TargetError> {
        let mut threads = Vec::new();
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                acc = listener.accept() => {
                    let (sock, peer) = match acc {
                        Ok(x) => x,
                        Err(e) if is_transient(&e) => continue,
                        Err(e) => break Err(TargetError::Accept(e)),
                    };
                    match self.clone().start_connection(sock) {
                        Ok(t) => threads.push(t),
                        Err(e) => tracing::warn!(%peer, error = %e, "dropping connection"),
                    }
                    threads.retain(|t: &std::thread::JoinHandle<()>| !t.is_finished());
                }
            }
        };
        for s in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        result
    }

    fn start_connection(
        self: Arc<Self>,
        sock: tokio::net::TcpStream,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let std_sock = sock.into_std()?;
        std_sock.set_nonblocking(false)?;
        std_sock.set_nodelay(true)?;
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, std_sock.try_clone()?);
        std::thread::Builder::new()
            .name(format!("iscsi-conn-{id}"))
            .spawn(move || {
                session::run(&self, std_sock);
                self.conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
            })
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(libc::EMFILE)
        || e.raw_os_error() == Some(libc::ENFILE)
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
