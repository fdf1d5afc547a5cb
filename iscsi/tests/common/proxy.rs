//! A one-connection TCP relay between an initiator and a target on loopback that a test can
//! use to hold back the target's replies and then cut the connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

pub struct Proxy {
    pub addr: SocketAddr,
    hold: watch::Sender<bool>,
    cut: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port; relays the first connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = l.local_addr().expect("proxy addr");
        let (hold, held) = watch::channel(false);
        let cut = Arc::new(Notify::new());
        let cut2 = cut.clone();
        let task = tokio::spawn(async move {
            let Ok((down, _)) = l.accept().await else {
                return;
            };
            let up = TcpStream::connect(upstream).await.expect("proxy upstream");
            let (mut dr, mut dw) = down.into_split();
            let (mut ur, mut uw) = up.into_split();
            let to_target = async {
                let mut b = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = dr.read(&mut b).await {
                    if uw.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            };
            let to_initiator = async {
                let mut held = held;
                let mut b = vec![0u8; 64 * 1024];
                loop {
                    if *held.borrow() {
                        // Replies held: wait for the cut (the select below drops us).
                        std::future::pending::<()>().await;
                    }
                    tokio::select! {
                        r = ur.read(&mut b) => match r {
                            Ok(n @ 1..) => {
                                if dw.write_all(&b[..n]).await.is_err() {
                                    break;
                                }
                            }
                            _ => break,
                        },
                        _ = held.changed() => {}
                    }
                }
            };
            tokio::select! {
                _ = cut2.notified() => {}
                _ = async { tokio::join!(to_target, to_initiator) } => {}
            }
            // Both halves drop here: the initiator sees the connection close.
        });
        Proxy {
            addr,
            hold,
            cut,
            task,
        }
    }

    /// From now on nothing the target sends reaches the initiator.
    pub fn hold_replies(&self) {
        let _ = self.hold.send(true);
    }

    /// Closes both connections.
    pub async fn cut(&mut self) {
        self.cut.notify_one();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
