//! Native TLS for the conductor's API (`--tls-cert`/`--tls-key`): rustls with the ring
//! provider. Handshakes run on tasks of their own under a deadline (the listener the agent
//! uses too, `ferrite_proto::tls`), so a client that opens a connection and never finishes
//! its handshake holds up no one else.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// The server configuration from a PEM certificate chain (leaf first) and its PEM private
/// key (PKCS#8, PKCS#1 or SEC1). Errors name the file and what to do.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading --tls-cert {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "--tls-cert {} is not a PEM certificate chain (-----BEGIN CERTIFICATE-----)",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        bail!(
            "--tls-cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "--tls-key {} is not a PEM private key (PKCS#8, RSA or EC)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("--tls-key does not fit the first certificate of --tls-cert")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A listener that yields connections whose TLS handshake finished, for `axum::serve`:
/// the agent's listener (`ferrite_proto::tls`, bounded handshakes under a deadline) behind
/// axum's `Listener` trait.
pub struct TlsListener(ferrite_proto::tls::TlsListener);

impl TlsListener {
    pub fn new(listener: TcpListener, cfg: Arc<rustls::ServerConfig>) -> TlsListener {
        TlsListener(ferrite_proto::tls::TlsListener::new(listener, cfg))
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
