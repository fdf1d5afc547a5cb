//! Automatic TLS for the agent API: a self-signed certificate made at start, whose PEM the
//! heartbeat sends as `agent_verify_ca` so the conductor can pin it (CONTRACT.md §1).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;

/// A freshly generated certificate and the server configuration that serves it.
#[derive(Clone)]
pub struct AutoTls {
    /// PEM of the certificate: what the conductor pins.
    pub cert_pem: String,
    pub server_config: Arc<ServerConfig>,
}

impl std::fmt::Debug for AutoTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoTls").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the agent's self-signed certificate for {host:?}")]
    Generate {
        host: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("building the TLS server configuration")]
    Config(#[source] rustls::Error),
}

/// Generates a self-signed certificate valid for `host` (the address the conductor calls
/// us at: an IP address gives an IP SAN, a name a DNS SAN) and a server config for it.
pub fn generate(host: &str) -> Result<AutoTls, TlsError> {
    let certified =
        rcgen::generate_simple_self_signed(vec![host.to_string()]).map_err(|source| {
            TlsError::Generate {
                host: host.into(),
                source,
            }
        })?;
    let cert_pem = certified.cert.pem();
    let cert_der: CertificateDer<'static> = certified.cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key_der)
            .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(AutoTls {
        cert_pem,
        server_config: Arc::new(config),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_and_dns_hosts_give_a_pem_certificate() {
        for host in ["127.0.0.1", "fd00::5", "agent.example"] {
            let tls = generate(host).unwrap();
            assert!(tls.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(tls
                .cert_pem
                .trim_end()
                .ends_with("-----END CERTIFICATE-----"));
            assert_eq!(tls.server_config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        }
    }

    #[test]
    fn each_start_gets_a_new_certificate() {
        assert_ne!(
            generate("127.0.0.1").unwrap().cert_pem,
            generate("127.0.0.1").unwrap().cert_pem
        );
    }
}
