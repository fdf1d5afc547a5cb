//! Test harness: an agent API server on a loopback port 0, with recording system hooks
//! and two extra commands (`test.block` waits to be released, `test.panic` panics).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrite_agent::commands::{CommandError, Mode, Registry};
use ferrite_agent::state::{AgentConfig, AgentState, RecordingHooks};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

pub const TOKEN: &str = "s3cr3t-agent-token-0123456789abcdef";

/// A running API server; shut down and joined on drop.
pub struct Agent {
    pub addr: SocketAddr,
    pub state: Arc<AgentState>,
    pub hooks: Arc<RecordingHooks>,
    /// Releases one `test.block` command.
    pub release: Arc<Notify>,
    pub client: reqwest::Client,
    pub scheme: &'static str,
    /// The token the harness set and adds to every `/v1/commands` URL (the conductor's
    /// side always sends it); `None` for tests of the token rules themselves.
    pub token: Option<&'static str>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Agent {
    pub async fn start() -> Agent {
        Self::start_with(AgentConfig::default(), None, None).await
    }

    /// An agent that holds no token (as before a lookup) and URLs without one.
    pub async fn start_without_token() -> Agent {
        let mut agent = Self::start_with_token(AgentConfig::default(), None, None, None).await;
        agent.token = None;
        agent
    }

    /// Holds [`TOKEN`], which [`Agent::url`] adds to command URLs.
    pub async fn start_with(
        config: AgentConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        client: Option<reqwest::Client>,
    ) -> Agent {
        Self::start_with_token(config, tls, client, Some(TOKEN)).await
    }

    async fn start_with_token(
        config: AgentConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
        client: Option<reqwest::Client>,
        token: Option<&'static str>,
    ) -> Agent {
        let hooks = Arc::new(RecordingHooks::new());
        let release = Arc::new(Notify::new());
        let mut registry = Registry::standard();
        let gate = release.clone();
        registry.register_raw(
            "test.block",
            Mode::Async,
            Arc::new(move |params, _state| {
                let gate = gate.clone();
                Box::pin(async move {
                    gate.notified().await;
                    Ok(Value::Object(params))
                })
            }),
        );
        registry.register_raw(
            "test.panic",
            Mode::Async,
            Arc::new(|_params, _state| {
                Box::pin(async move {
                    if std::env::var_os("FERRITE_NEVER_SET_THIS").is_none() {
                        panic!("test.panic was asked to panic");
                    }
                    Err::<Value, _>(CommandError::failed_msg("unreachable"))
                })
            }),
        );
        let state = Arc::new(AgentState::with_parts(
            config,
            hooks.clone(),
            registry,
            ferrite_agent::steps::default_managers(),
        ));
        if let Some(token) = token {
            state.set_agent_token(token).unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(ferrite_agent::api::serve(
            listener,
            tls,
            state.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        let client = client.unwrap_or_else(|| {
            reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap()
        });
        Agent {
            addr,
            state,
            hooks,
            release,
            client,
            scheme,
            token,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The URL of `path`; command paths get `agent_token` unless they name one.
    pub fn url(&self, path: &str) -> String {
        let path = match self.token {
            Some(t) if path.starts_with("/v1/commands") && !path.contains("agent_token=") => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{path}{sep}agent_token={t}")
            }
            _ => path.to_string(),
        };
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.client.get(self.url(path)).send().await.unwrap();
        decode(resp).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        decode(resp).await
    }

    /// POST a command: `{"name": name, "params": params}`.
    pub async fn command(&self, query: &str, name: &str, params: Value) -> (u16, Value) {
        let body = serde_json::json!({"name": name, "params": params}).to_string();
        self.post_raw(&format!("/v1/commands/{query}"), body).await
    }

    /// The server still answers `GET /v1/status`.
    pub async fn assert_serving(&self) {
        let (code, body) = self.get("/v1/status").await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    }

    /// Sends raw bytes on a new connection and returns all the server answered.
    /// A request line naming `/v1/commands/` gets the token, as [`Agent::url`] adds it.
    pub async fn raw(&self, bytes: &[u8]) -> String {
        let bytes = match self.token {
            Some(t) => String::from_utf8_lossy(bytes)
                .replacen(
                    " /v1/commands/ HTTP/1.1",
                    &format!(" /v1/commands/?agent_token={t} HTTP/1.1"),
                    1,
                )
                .into_bytes(),
            None => bytes.to_vec(),
        };
        let mut conn = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        conn.write_all(&bytes).await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut out));
        let _ = read.await.expect("server answers raw requests within 10 s");
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Takes the shutdown trigger: sending on it (or dropping it) stops the server.
    pub fn shutdown_sender(&mut self) -> Option<oneshot::Sender<()>> {
        self.shutdown.take()
    }

    /// Waits (with a deadline) for the server task to end and returns its result.
    pub async fn join(&mut self) -> std::io::Result<()> {
        let task = self.task.take().expect("joined once");
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("server stops within 15 s")
            .expect("server task did not panic")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub async fn decode(resp: reqwest::Response) -> (u16, Value) {
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("response is not JSON ({e}): {text:?}"));
    (code, value)
}

/// Asserts an IPA fault body with `code` and a faultstring containing `needle`.
pub fn assert_fault(got: &(u16, Value), code: u16, needle: &str) {
    let (status, body) = got;
    assert_eq!(*status, code, "{body}");
    let expected = if code >= 500 { "Server" } else { "Client" };
    assert_eq!(body["faultcode"], expected, "{body}");
    let fs = body["faultstring"]
        .as_str()
        .expect("faultstring is a string");
    assert!(fs.contains(needle), "faultstring {fs:?} lacks {needle:?}");
}
