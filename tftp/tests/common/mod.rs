//! The TFTP server under test, shared by the integration tests: served from a temporary
//! directory on a loopback UDP socket bound to port 0, stopped on request.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ferrite_tftp::{Server, ServerConfig, TransferLog};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// A running server and the directory it serves from (removed when this is dropped).
pub struct Running {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// The server's record of finished transfers.
    pub log: TransferLog,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Serves `root` (inside `dir`) with the default configuration changed by `tweak`.
    pub async fn start(
        dir: tempfile::TempDir,
        root: &Path,
        tweak: impl FnOnce(&mut ServerConfig),
    ) -> Running {
        let mut cfg = ServerConfig::new(root);
        tweak(&mut cfg);
        let server = Server::new(cfg).unwrap();
        let log = server.transfers();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(socket, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Running {
            dir,
            addr,
            log,
            stop,
            task,
        }
    }

    /// Stops the server and waits for it to finish (it must not have failed).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

/// One datagram into `buf`, or a panic after `limit`.
pub async fn recv_within(sock: &UdpSocket, buf: &mut [u8], limit: Duration) -> (usize, SocketAddr) {
    tokio::time::timeout(limit, sock.recv_from(buf))
        .await
        .unwrap_or_else(|_| panic!("no datagram within {limit:?}"))
        .unwrap()
}
