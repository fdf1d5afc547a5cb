//! A UDP proxy for tests: forwards between one client and a BMC, records every datagram and
//! can rewrite BMC replies (to play a spoofing or corrupting network).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

/// (from_console, datagram)
pub type Capture = Vec<(bool, Vec<u8>)>;

/// Rewrites a BMC→console datagram in place.
pub type Rewrite = fn(&mut [u8]);

pub struct Proxy {
    pub addr: SocketAddr,
    pub capture: Arc<Mutex<Capture>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start(bmc: SocketAddr, rewrite: Option<Rewrite>) -> Proxy {
    let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    back.connect(bmc).await.unwrap();
    let capture = Arc::new(Mutex::new(Vec::new()));
    let cap = capture.clone();
    let task = tokio::spawn(async move {
        let mut client = None;
        let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
        loop {
            tokio::select! {
                Ok((n, from)) = front.recv_from(&mut a) => {
                    client = Some(from);
                    cap.lock().unwrap().push((true, a[..n].to_vec()));
                    let _ = back.send(&a[..n]).await;
                }
                Ok(n) = back.recv(&mut b) => {
                    let mut d = b[..n].to_vec();
                    cap.lock().unwrap().push((false, d.clone()));
                    if let Some(rw) = rewrite {
                        rw(&mut d);
                    }
                    if let Some(c) = client {
                        let _ = front.send_to(&d, c).await;
                    }
                }
            }
        }
    });
    Proxy {
        addr,
        capture,
        task,
    }
}
