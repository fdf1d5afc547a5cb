//! The iSCSI target: accepts connections on a tokio listener and serves LUN 0 from a file or
//! block device. Each connection runs on its own thread with blocking socket and file I/O,
//! which keeps the command path simple and fast; the server itself is async so callers
//! hand it a listener and a shutdown future.
//!
//! Bounded: connections at once are capped (more are closed on accept), a connection
//! must log in within `login_timeout` (a watchdog on the runtime closes it otherwise,
//! however slowly it trickles bytes), and a logged-in one that sends nothing for
//! `idle_timeout` is closed by its socket's read timeout.

pub(crate) mod login;
mod out;
mod session;

use std::collections::HashMap;
use std::future::Future;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::task::JoinSet;

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
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Time from accept to a completed login; a connection still logging in then is
    /// closed (Linux's iscsi target waits 15 s, open-iscsi's login_timeout is 15 s).
    pub login_timeout: Duration,
    /// A logged-in connection with no PDU from the initiator for this long is closed,
    /// and so is one whose initiator stops reading our PDUs for as long. Initiators
    /// ping idle sessions (open-iscsi sends a NOP-Out every 5 s), so this is generous.
    /// `None`: never.
    pub idle_timeout: Option<Duration>,
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
            // The agent exports one disk to one conductor; a few sessions leave room for
            // retries and a discovery session.
            max_connections: 16,
            login_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(600)),
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
    conns: Mutex<HashMap<u64, Registered>>,
}

/// A connection being served: a handle on its socket to close it from outside.
#[derive(Debug)]
struct Registered {
    sock: TcpStream,
    logged_in: Arc<AtomicBool>,
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

    /// Connections being served now (logging in or logged in).
    pub fn connections(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).len()
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
        // Login deadlines; aborted when the server stops.
        let mut watchdogs = JoinSet::new();
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
                    threads.retain(|t: &std::thread::JoinHandle<()>| !t.is_finished());
                    while watchdogs.try_join_next().is_some() {}
                    let serving = self.connections();
                    if serving >= self.cfg.max_connections {
                        tracing::warn!(%peer, serving, "refusing an iSCSI connection: too many connections");
                        drop(sock);
                        continue;
                    }
                    match self.clone().start_connection(sock, &mut watchdogs) {
                        Ok(t) => threads.push(t),
                        Err(e) => tracing::warn!(%peer, error = %e, "dropping connection"),
                    }
                }
            }
        };
        for s in self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            let _ = s.sock.shutdown(std::net::Shutdown::Both);
        }
        watchdogs.shutdown().await;
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
        watchdogs: &mut JoinSet<()>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let std_sock = sock.into_std()?;
        std_sock.set_nonblocking(false)?;
        std_sock.set_nodelay(true)?;
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let logged_in = Arc::new(AtomicBool::new(false));
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            Registered {
                sock: std_sock.try_clone()?,
                logged_in: logged_in.clone(),
            },
        );
        let limit = self.cfg.login_timeout;
        let target = Arc::downgrade(&self);
        watchdogs.spawn(async move {
            tokio::time::sleep(limit).await;
            close_unless_logged_in(&target, id, limit);
        });
        let spawned = std::thread::Builder::new()
            .name(format!("iscsi-conn-{id}"))
            .spawn({
                let me = self.clone();
                move || {
                    session::run(&me, std_sock, &logged_in);
                    me.conns
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                }
            });
        if spawned.is_err() {
            self.conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
        spawned
    }
}

/// The login deadline of connection `id`: closes its socket (the blocked read on its
/// thread then ends) unless it has logged in.
fn close_unless_logged_in(target: &Weak<Target>, id: u64, limit: Duration) {
    let Some(t) = target.upgrade() else {
        return;
    };
    let conns = t.conns.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = conns.get(&id) {
        if !c.logged_in.load(Ordering::SeqCst) {
            let peer = c.sock.peer_addr().ok();
            tracing::info!(
                ?peer,
                ?limit,
                "closing an iSCSI connection that did not log in in time"
            );
            let _ = c.sock.shutdown(std::net::Shutdown::Both);
        }
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
