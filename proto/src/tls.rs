//! Accepting API connections, shared by the agent's and the conductor's servers (feature
//! `server`, the one piece of I/O in this crate): TCP accept that backs off on errors, and
//! a TLS listener whose handshakes run on tasks of their own under a deadline and a bound,
//! so a client that connects and never finishes its handshake holds up no one else.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client must finish its TLS handshake within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's accept queue.
pub const MAX_HANDSHAKES: usize = 256;
/// How long to wait after a failed accept (out of file descriptors and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The next TCP connection of `listener`, with TCP_NODELAY set. A failed accept (out of
/// file descriptors and the like) is logged and retried after a pause, never spun on.
/// Cancel-safe: dropping the future loses no connection.
pub async fn accept_tcp(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting an API connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// A TCP listener that yields connections whose TLS handshake finished. Handshakes run
/// concurrently (at most `max_handshakes`, each under `handshake_timeout`); failed and
/// timed-out ones are logged at debug level and dropped. Dropping the listener closes the
/// socket and aborts the handshakes in progress.
pub struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
    handshake_timeout: Duration,
    max_handshakes: usize,
}

impl TlsListener {
    /// With [`HANDSHAKE_TIMEOUT`] and [`MAX_HANDSHAKES`].
    pub fn new(listener: TcpListener, cfg: Arc<rustls::ServerConfig>) -> TlsListener {
        Self::with_limits(listener, cfg, HANDSHAKE_TIMEOUT, MAX_HANDSHAKES)
    }

    /// With the given handshake deadline and bound (at least one handshake at a time).
    pub fn with_limits(
        listener: TcpListener,
        cfg: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
        max_handshakes: usize,
    ) -> TlsListener {
        TlsListener {
            listener,
            acceptor: TlsAcceptor::from(cfg),
            handshakes: JoinSet::new(),
            handshake_timeout,
            max_handshakes: max_handshakes.max(1),
        }
    }

    /// The next connection whose handshake finished. Cancel-safe: a connection accepted or
    /// handshaken while the future was pending is returned by the next call.
    pub async fn accept(&mut self) -> (TlsStream<TcpStream>, SocketAddr) {
        loop {
            let room = self.handshakes.len() < self.max_handshakes;
            tokio::select! {
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
                (stream, peer) = accept_tcp(&self.listener), if room => {
                    let (tls, limit) = (self.acceptor.clone(), self.handshake_timeout);
                    self.handshakes.spawn(handshake(tls, stream, peer, limit));
                }
            }
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

async fn handshake(
    tls: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    limit: Duration,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    match tokio::time::timeout(limit, tls.accept(stream)).await {
        Ok(Ok(stream)) => Some((stream, peer)),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A server config for a fresh self-signed 127.0.0.1 certificate, and a client that
    /// trusts it.
    fn configs() -> (Arc<rustls::ServerConfig>, tokio_rustls::TlsConnector) {
        let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let der: CertificateDer<'static> = c.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.signing_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (
            Arc::new(server),
            tokio_rustls::TlsConnector::from(Arc::new(client)),
        )
    }

    async fn tls_client(
        connector: &tokio_rustls::TlsConnector,
        addr: SocketAddr,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, tcp).await
    }

    /// Serves one byte echo per connection until the test ends.
    fn spawn_echo(mut listener: TlsListener) {
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await;
                tokio::spawn(async move {
                    let mut b = [0u8; 1];
                    if conn.read_exact(&mut b).await.is_ok() {
                        let _ = conn.write_all(&b).await;
                        let _ = conn.flush().await;
                    }
                });
            }
        });
    }

    async fn echo(connector: &tokio_rustls::TlsConnector, addr: SocketAddr, byte: u8) -> u8 {
        let mut c = tls_client(connector, addr).await.expect("TLS handshake");
        c.write_all(&[byte]).await.unwrap();
        c.flush().await.unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).await.unwrap();
        b[0]
    }

    #[tokio::test]
    async fn stalled_handshakes_hold_up_no_one_and_time_out() {
        let (server, connector) = configs();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        // Two handshake slots, both taken by clients that never start their handshake.
        let listener = TlsListener::with_limits(tcp, server, Duration::from_millis(300), 2);
        assert_eq!(listener.local_addr().unwrap(), addr);
        spawn_echo(listener);
        let mut stalled: Vec<TcpStream> = vec![];
        for _ in 0..2 {
            stalled.push(TcpStream::connect(addr).await.unwrap());
        }
        // A real client is served once the stalled ones have timed out and freed the slots.
        let answered = tokio::time::timeout(Duration::from_secs(5), echo(&connector, addr, 7));
        assert_eq!(answered.await.expect("served after the deadline"), 7);
        // The server closed the stalled connections: reading gives EOF or an error.
        for mut s in stalled {
            let mut b = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
                .await
                .expect("the stalled connection was closed");
            assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_handshake_is_dropped_and_the_next_client_served() {
        let (server, connector) = configs();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        spawn_echo(TlsListener::new(tcp, server));
        // Plain text where a ClientHello belongs.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut rest = vec![];
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut rest))
            .await
            .expect("the plain connection was closed");
        assert!(!rest.starts_with(b"HTTP/"), "plain HTTP was answered");
        for byte in [1, 2, 3] {
            assert_eq!(echo(&connector, addr, byte).await, byte);
        }
    }

    #[tokio::test]
    async fn accept_tcp_sets_nodelay() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = accept_tcp(&tcp).await;
        assert_eq!(peer, client.local_addr().unwrap());
        assert!(stream.nodelay().unwrap());
    }
}
