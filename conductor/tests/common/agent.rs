//! The agent side of the lifecycle tests: the real ferrite-agent library in-process on
//! loopback (API server, commands, steps, image writer) over a sparse-file disk, booted
//! afresh (new token) whenever the conductor waits for it.

use std::sync::Arc;
use std::time::Duration;

use ferrite_agent::heartbeat::ConductorClient;
use ferrite_agent::state::{AgentConfig, AgentState};
use ferrite_agent::system::RecordingHooks;
use ferrite_proto::lookup::Heartbeat;

use super::Api;

/// One boot of the agent: its own state (token) and API server on a free port.
pub struct AgentBoot {
    pub url: String,
    pub state: Arc<AgentState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl AgentBoot {
    pub async fn start(root: &std::path::Path, disk: &std::path::Path) -> AgentBoot {
        let state = Arc::new(AgentState::new(
            AgentConfig {
                root: root.to_path_buf(),
                target_disk: Some(disk.to_path_buf()),
                // rescue.finalize_rescue writes etc/passwd and etc/shadow here.
                rescue_root: Some(rescue_root(disk)),
                ..AgentConfig::default()
            },
            Arc::new(RecordingHooks::new()),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(ferrite_agent::api::serve(
            listener,
            None,
            state.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        AgentBoot {
            url,
            state,
            stop: Some(tx),
        }
    }
}

/// Where the in-process agent of the node with `disk` keeps the rescue user's files.
pub fn rescue_root(disk: &std::path::Path) -> std::path::PathBuf {
    disk.with_extension("rescue")
}

impl AgentBoot {
    /// The heartbeat this boot sends: its URL and token, no TLS.
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            callback_url: self.url.clone(),
            agent_token: self.state.agent_token().unwrap_or_default().to_string(),
            agent_version: "in-process".into(),
            agent_verify_ca: None,
            agent_status: None,
            agent_status_message: None,
        }
    }
}

impl Drop for AgentBoot {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The agent side of the protocol while the node waits for it: lookup (a real token means
/// a new boot), then heartbeats to resume the conductor's steps.
pub async fn agent_loop(
    base: String,
    node: String,
    macs: Vec<String>,
    root: std::path::PathBuf,
    disk: std::path::PathBuf,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = ConductorClient::new(base.parse().unwrap(), false, None).unwrap();
    let api = Api::new(&base);
    let mut boot: Option<AgentBoot> = None;
    while !*stop.borrow() {
        let Ok(r) = api.http.get(format!("{base}/v1/nodes/{node}")).send().await else {
            break;
        };
        let n: serde_json::Value = r.json().await.unwrap_or_default();
        let waiting = ["clean wait", "wait call-back", "rescue wait"]
            .contains(&n["provision_state"].as_str().unwrap_or(""));
        if waiting {
            if let Ok(r) = client.lookup(&macs, None).await {
                let token = r.config.agent_token.unwrap_or_default();
                if token != ferrite_proto::MASKED_SECRET {
                    let b = AgentBoot::start(&root, &disk).await;
                    b.state.set_agent_token(&token).unwrap();
                    boot = Some(b);
                }
            }
            if let Some(b) = &boot {
                let _ = client.heartbeat(&node, &b.heartbeat()).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => {}
        }
    }
}
