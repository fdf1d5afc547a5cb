//! The tokio TFTP server: one task per transfer on its own UDP port (the TFTP "TID"),
//! option negotiation, lock-step DATA/ACK with bounded retransmission. Read-only.
//! Bounded: a cap on transfers at once, and on how long one may take, so a client that
//! acknowledges just before every timeout cannot hold a slot for ever.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::netascii;
use crate::packet::{ErrorCode, Packet};
use crate::path::{resolve, PathError};

/// RFC 1350's block size, used when the client does not negotiate one.
pub const DEFAULT_BLKSIZE: usize = 512;
/// RFC 2348's largest block size.
pub const MAX_BLKSIZE: usize = 65464;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The only directory files are served from.
    pub root: PathBuf,
    /// Retransmission timeout unless the client negotiates one (RFC 2349).
    pub timeout: Duration,
    /// Transmissions of one packet before the transfer is abandoned.
    pub attempts: u32,
    /// Upper bound for a negotiated block size (clients get min(asked, this)).
    pub max_blksize: usize,
    /// Transfers served at once; more read requests get an ERROR ("too many transfers").
    pub max_transfers: usize,
    /// Longest one transfer may take from its request, however the client paces its
    /// ACKs; then it is abandoned with an ERROR to the client.
    pub max_transfer_time: Duration,
}

impl ServerConfig {
    pub fn new(root: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            root: root.into(),
            timeout: Duration::from_secs(2),
            attempts: 5,
            max_blksize: MAX_BLKSIZE,
            max_transfers: 64,
            // iPXE binaries are ~1 MiB: seconds at 512-byte blocks even on a slow link.
            max_transfer_time: Duration::from_secs(600),
        }
    }
}

/// Errors that stop the server itself (transfer failures are only logged).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("TFTP root {path:?} is not an accessible directory")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TFTP server socket failed")]
    Socket(#[source] std::io::Error),
}

pub struct Server {
    cfg: Arc<ServerConfig>,
    log: TransferLog,
}

/// One completed transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    pub peer: SocketAddr,
    /// The name as the client asked for it.
    pub filename: String,
    /// Bytes sent on the wire (after netascii conversion).
    pub bytes: u64,
    pub blksize: usize,
}

/// The completed transfers of a server, shared with whoever wants to look (tests, metrics).
pub type TransferLog = Arc<std::sync::Mutex<Vec<TransferRecord>>>;

impl Server {
    /// Checks the root directory (and makes it canonical for confinement checks).
    pub fn new(mut cfg: ServerConfig) -> Result<Server, ServerError> {
        let root_err = |source| ServerError::Root {
            path: cfg.root.clone(),
            source,
        };
        let root = cfg.root.canonicalize().map_err(root_err)?;
        if !root.is_dir() {
            return Err(root_err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        cfg.root = root;
        Ok(Server {
            cfg: Arc::new(cfg),
            log: TransferLog::default(),
        })
    }

    /// A handle on the list of completed transfers (keeps filling while the server runs).
    pub fn transfers(&self) -> TransferLog {
        self.log.clone()
    }

    pub fn root(&self) -> &Path {
        &self.cfg.root
    }

    /// Serves requests arriving on `socket` until `shutdown` completes; running transfers
    /// are then aborted.
    pub async fn run(
        self,
        socket: UdpSocket,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let local_ip = socket.local_addr().map_err(ServerError::Socket)?.ip();
        let mut transfers = JoinSet::new();
        let mut buf = vec![0u8; 2048];
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = transfers.join_next(), if !transfers.is_empty() => {}
                r = socket.recv_from(&mut buf) => {
                    let (n, peer) = match r {
                        Ok(v) => v,
                        // ICMP errors from earlier replies surface here; keep serving.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                        Err(e) => return Err(ServerError::Socket(e)),
                    };
                    // Finished transfers not reaped yet must not count.
                    while transfers.try_join_next().is_some() {}
                    let full = transfers.len() >= self.cfg.max_transfers;
                    let reply = match Packet::decode(&buf[..n]) {
                        Ok(Packet::Rrq { .. }) if full => {
                            tracing::warn!(%peer, limit = self.cfg.max_transfers, "TFTP request refused: too many transfers");
                            Some(Packet::error(
                                ErrorCode::NotDefined,
                                &format!(
                                    "too many transfers in progress ({}); retry later",
                                    self.cfg.max_transfers
                                ),
                            ))
                        }
                        Ok(Packet::Rrq { filename, mode, options }) => {
                            let cfg = self.cfg.clone();
                            let log = self.log.clone();
                            transfers.spawn(async move {
                                let req = Request { peer, filename, mode, options };
                                match transfer(&cfg, local_ip, &req).await {
                                    Ok((bytes, blksize)) => log.lock().expect("not poisoned").push(TransferRecord {
                                        peer,
                                        filename: req.filename,
                                        bytes,
                                        blksize,
                                    }),
                                    Err(e) => tracing::info!(peer = %req.peer, file = %req.filename, error = %e, "TFTP transfer failed"),
                                }
                            });
                            None
                        }
                        Ok(Packet::Wrq { .. }) => Some(Packet::error(
                            ErrorCode::AccessViolation,
                            "this TFTP server is read-only",
                        )),
                        Ok(_) => Some(Packet::error(
                            ErrorCode::IllegalOperation,
                            "expected a read request",
                        )),
                        Err(e) => Some(Packet::error(ErrorCode::IllegalOperation, &e.to_string())),
                    };
                    if let Some(p) = reply {
                        let _ = socket.send_to(&p.encode(), peer).await;
                    }
                }
            }
        }
        transfers.shutdown().await;
        Ok(())
    }
}

struct Request {
    peer: SocketAddr,
    filename: String,
    mode: String,
    options: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
enum TransferError {
    #[error("refused: {0}")]
    Refused(String),
    #[error("client stopped answering")]
    Timeout,
    #[error("transfer took longer than {0:?}")]
    TooLong(Duration),
    #[error("client sent error {code}: {message}")]
    Client { code: u16, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Serves one read request within `cfg.max_transfer_time`; returns the bytes sent and
/// the block size used.
async fn transfer(
    cfg: &ServerConfig,
    local_ip: std::net::IpAddr,
    req: &Request,
) -> Result<(u64, usize), TransferError> {
    let sock = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    sock.connect(req.peer).await?;
    match timeout(cfg.max_transfer_time, serve(cfg, &sock, req)).await {
        Ok(r) => r,
        Err(_) => {
            let limit = cfg.max_transfer_time;
            let msg = format!("transfer took longer than {} s", limit.as_secs_f64());
            let _ = sock
                .send(&Packet::error(ErrorCode::NotDefined, &msg).encode())
                .await;
            Err(TransferError::TooLong(limit))
        }
    }
}

async fn serve(
    cfg: &ServerConfig,
    sock: &UdpSocket,
    req: &Request,
) -> Result<(u64, usize), TransferError> {
    let netascii = match req.mode.as_str() {
        "octet" => false,
        "netascii" => true,
        other => {
            return refuse(
                sock,
                ErrorCode::IllegalOperation,
                format!("transfer mode {other:?} is not supported (use octet)"),
            )
            .await
        }
    };
    let path = match resolve(&cfg.root, &req.filename) {
        Ok(p) => p,
        Err(e @ PathError::NotFound(_)) => {
            return refuse(sock, ErrorCode::FileNotFound, e.to_string()).await
        }
        Err(e) => return refuse(sock, ErrorCode::AccessViolation, e.to_string()).await,
    };
    let mut file = tokio::fs::File::open(&path).await?;
    let size = file.metadata().await?.len();

    // RFC 2347: answer only the options we understand and accept.
    let mut blksize = DEFAULT_BLKSIZE;
    let mut wait = cfg.timeout;
    let mut accepted = Vec::new();
    for (name, value) in &req.options {
        match name.as_str() {
            "blksize" => {
                if let Ok(v) = value.parse::<usize>() {
                    if v >= 8 {
                        blksize = v.min(cfg.max_blksize).min(MAX_BLKSIZE);
                        accepted.push((name.clone(), blksize.to_string()));
                    }
                }
            }
            // Netascii changes the length on the wire: no tsize then.
            "tsize" if !netascii => accepted.push((name.clone(), size.to_string())),
            "timeout" => {
                if let Ok(v @ 1..=255) = value.parse::<u64>() {
                    wait = Duration::from_secs(v);
                    accepted.push((name.clone(), v.to_string()));
                }
            }
            _ => {}
        }
    }
    let attempts = cfg.attempts.max(1);
    let mut buf = vec![0u8; MAX_BLKSIZE + 4];
    if !accepted.is_empty() {
        let oack = Packet::Oack { options: accepted }.encode();
        send_until_ack(sock, &oack, 0, wait, attempts, &mut buf).await?;
    }

    let mut block: u16 = 0;
    let mut sent: u64 = 0;
    let mut pending = Vec::new();
    let mut raw = vec![0u8; blksize];
    let mut eof = false;
    loop {
        // Fill one block (netascii may expand a read into more than one block).
        while pending.len() < blksize && !eof {
            let n = file.read(&mut raw).await?;
            if n == 0 {
                eof = true;
            } else if netascii {
                netascii::encode(&raw[..n], &mut pending);
            } else {
                pending.extend_from_slice(&raw[..n]);
            }
        }
        let take = pending.len().min(blksize);
        let data: Vec<u8> = pending.drain(..take).collect();
        block = block.wrapping_add(1);
        let last = data.len() < blksize;
        sent += data.len() as u64;
        let packet = Packet::Data { block, data }.encode();
        send_until_ack(sock, &packet, block, wait, attempts, &mut buf).await?;
        if last {
            return Ok((sent, blksize));
        }
    }
}

/// Tells the client why its request is refused, and ends the transfer.
async fn refuse<T>(sock: &UdpSocket, code: ErrorCode, msg: String) -> Result<T, TransferError> {
    let _ = sock.send(&Packet::error(code, &msg).encode()).await;
    Err(TransferError::Refused(msg))
}

/// Sends `packet` and waits for ACK `block`, retransmitting on timeout. Duplicate or older
/// ACKs are ignored without retransmitting (avoids the Sorcerer's Apprentice bug).
async fn send_until_ack(
    sock: &UdpSocket,
    packet: &[u8],
    block: u16,
    wait: Duration,
    attempts: u32,
    buf: &mut [u8],
) -> Result<(), TransferError> {
    for _ in 0..attempts {
        sock.send(packet).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let n = match timeout(left, sock.recv(buf)).await {
                Err(_) => break,
                Ok(r) => r?,
            };
            match Packet::decode(&buf[..n]) {
                Ok(Packet::Ack { block: b }) if b == block => return Ok(()),
                Ok(Packet::Error { code, message }) => {
                    return Err(TransferError::Client { code, message })
                }
                _ => {}
            }
        }
    }
    Err(TransferError::Timeout)
}
