//! The agent's HTTP API (CONTRACT.md §1) on hyper 1: takes its listener, optional TLS
//! config and a shutdown future; stops accepting on shutdown or `system.lockdown`.

mod body;
mod routes;

pub use body::parse_command_body;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferrite_proto::tls::{accept_tcp, TlsListener};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use crate::state::AgentState;

pub use routes::{handle, Scheme};

/// A client must send its request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// After shutdown, in-flight requests get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve the agent API on `listener` until `shutdown` resolves or the agent is locked
/// down. With `tls`, every connection is TLS (rustls, ring provider), handshaken by
/// `ferrite_proto::tls::TlsListener` (bounded, under a deadline, as the conductor's API).
/// Returns after the listener is closed and in-flight requests have drained (or
/// [`DRAIN_TIMEOUT`] passed).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<AgentState>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (mut incoming, scheme) = match tls {
        Some(cfg) => (
            Incoming::Tls(TlsListener::new(listener, cfg)),
            Scheme::Https,
        ),
        None => (Incoming::Plain(listener), Scheme::Http),
    };
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let locked = state.clone();
    let lockdown = locked.wait_locked_down();
    tokio::pin!(lockdown);

    loop {
        let (conn, peer) = tokio::select! {
            _ = &mut shutdown => break,
            _ = &mut lockdown => {
                tracing::info!("agent locked down: the API stops serving");
                break;
            }
            conn = incoming.accept() => conn,
        };
        let watcher = graceful.watcher();
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, state, scheme).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let result = match conn {
                Conn::Plain(stream) => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
                Conn::Tls(stream) => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "API connection ended with an error");
            }
        });
    }

    // Closes the socket and aborts the TLS handshakes in progress.
    drop(incoming);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("API shutdown: some requests did not finish in time");
    }
    Ok(())
}

/// Where connections come from: the plain listener, or the TLS one over it.
enum Incoming {
    Plain(TcpListener),
    Tls(TlsListener),
}

/// An accepted connection (for TLS, with its handshake done).
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Incoming {
    /// The next connection; cancel-safe (see `accept_tcp` and `TlsListener::accept`).
    async fn accept(&mut self) -> (Conn, std::net::SocketAddr) {
        match self {
            Incoming::Plain(l) => {
                let (stream, peer) = accept_tcp(l).await;
                (Conn::Plain(stream), peer)
            }
            Incoming::Tls(l) => {
                let (stream, peer) = l.accept().await;
                (Conn::Tls(Box::new(stream)), peer)
            }
        }
    }
}
