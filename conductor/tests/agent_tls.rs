//! The agent client pins TLS to the certificate the agent sent as `agent_verify_ca`: a
//! real agent API server (the ferrite-agent library) serving its own rcgen certificate
//! over rustls on loopback is reached with that certificate, and refused with another
//! one or with the public roots.

use std::sync::Arc;
use std::time::Duration;

use ferrite_agent::state::{AgentConfig, AgentState};
use ferrite_agent::system::RecordingHooks;
use ferrite_conductor::agent_client::{AgentClient, AgentError, AgentTarget};

struct Agent {
    url: String,
    pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

const TOKEN: &str = "pinned-tls-test-token-0123456789abcdefghijklmnop";

async fn agent() -> Agent {
    let root = tempfile::tempdir().unwrap();
    let state = Arc::new(AgentState::new(
        AgentConfig {
            root: root.path().to_path_buf(),
            ..AgentConfig::default()
        },
        Arc::new(RecordingHooks::new()),
    ));
    state.set_agent_token(TOKEN).unwrap();
    let tls = ferrite_agent::tls::generate("127.0.0.1").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(ferrite_agent::api::serve(
        listener,
        Some(tls.server_config.clone()),
        state,
        async move {
            let _ = rx.await;
        },
    ));
    Agent {
        url,
        pem: tls.cert_pem,
        stop: Some(tx),
        task,
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tls_is_pinned_to_agent_verify_ca() {
    let a = agent().await;
    let client = AgentClient::new(Duration::from_secs(10)).unwrap();
    fn target<'a>(url: &'a str, ca: Option<&'a str>) -> AgentTarget<'a> {
        AgentTarget {
            url,
            token: Some(TOKEN),
            verify_ca: ca,
        }
    }
    // The pinned certificate: the TLS handshake succeeds and the agent itself answers
    // (an unknown command id is its 404, not a transport error).
    let e = client
        .get_command(&target(&a.url, Some(&a.pem)), "no-such-command")
        .await
        .unwrap_err();
    match e {
        AgentError::Status { status, .. } => assert_eq!(status, 404, "{e}"),
        other => panic!("expected the agent's 404 over pinned TLS, got: {other:?}"),
    }
    // Another agent's certificate (same host, different key): refused in the handshake.
    let other = ferrite_agent::tls::generate("127.0.0.1").unwrap();
    let e = client
        .get_command(&target(&a.url, Some(&other.cert_pem)), "no-such-command")
        .await
        .unwrap_err();
    assert!(
        matches!(e, AgentError::Unreachable { .. }),
        "a wrong certificate must fail the connection: {e:?}"
    );
    let chain = ferrite_conductor::error_chain(&e);
    assert!(
        chain.to_lowercase().contains("certificate") || chain.contains("UnknownIssuer"),
        "the error should say the certificate was refused: {chain}"
    );
    // No agent_verify_ca: the public roots do not vouch for a self-signed certificate.
    let e = client
        .get_command(&target(&a.url, None), "no-such-command")
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::Unreachable { .. }), "{e:?}");
    // The pinned client still works after the refusals (it is cached per PEM).
    let e = client
        .get_command(&target(&a.url, Some(&a.pem)), "no-such-command")
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::Status { status: 404, .. }), "{e:?}");
}
