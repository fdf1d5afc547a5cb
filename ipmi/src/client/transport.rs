//! One connected UDP socket with bounded, retransmitting request/reply exchanges.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

use super::ClientError;

/// Per-attempt timeout and attempt count.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub timeout: Duration,
    pub attempts: u32,
}

pub struct Transport {
    socket: UdpSocket,
    pub addr: SocketAddr,
    buf: Vec<u8>,
}

impl Transport {
    pub async fn connect(addr: SocketAddr) -> Result<Transport, ClientError> {
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let err = |source| ClientError::Socket { addr, source };
        let socket = UdpSocket::bind(bind).await.map_err(err)?;
        socket.connect(addr).await.map_err(err)?;
        Ok(Transport {
            socket,
            addr,
            buf: vec![0u8; 2048],
        })
    }

    /// Sends what `make` builds (called again for each retransmission, so it can renumber)
    /// and returns the first reply `accept` maps to `Some`. Replies it rejects (stray,
    /// spoofed, corrupt) are ignored without restarting the attempt's clock.
    pub async fn exchange<T>(
        &mut self,
        what: &'static str,
        retry: Retry,
        mut make: impl FnMut() -> Vec<u8>,
        mut accept: impl FnMut(&[u8]) -> Option<T>,
    ) -> Result<T, ClientError> {
        let attempts = retry.attempts.max(1);
        for _ in 0..attempts {
            let packet = make();
            self.send(&packet).await?;
            let deadline = Instant::now() + retry.timeout;
            loop {
                match timeout_at(deadline, self.socket.recv(&mut self.buf)).await {
                    Err(_) => break,
                    Ok(Ok(n)) => {
                        if let Some(v) = accept(&self.buf[..n]) {
                            return Ok(v);
                        }
                    }
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        return Err(ClientError::Refused { addr: self.addr })
                    }
                    Ok(Err(source)) => {
                        return Err(ClientError::Socket {
                            addr: self.addr,
                            source,
                        })
                    }
                }
            }
        }
        Err(ClientError::Timeout {
            addr: self.addr,
            what,
            attempts,
            per_attempt: retry.timeout,
        })
    }

    /// Sends without waiting for a reply.
    pub async fn send(&self, packet: &[u8]) -> Result<(), ClientError> {
        match self.socket.send(packet).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(ClientError::Refused { addr: self.addr })
            }
            Err(source) => Err(ClientError::Socket {
                addr: self.addr,
                source,
            }),
        }
    }
}
