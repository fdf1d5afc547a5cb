//! The agent's side of CONTRACT.md §2: lookup, heartbeat and inspection calls to the
//! conductor, over one small HTTP client.

pub mod callback;
#[allow(clippy::module_inception)] // heartbeat/heartbeat.rs: the loop, next to lookup.rs
pub mod heartbeat;
pub mod inspect;
pub mod lookup;
pub mod token;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use ferrite_proto::lookup::{Heartbeat, LookupResponse};
use ferrite_proto::API_VERSION_HEADER;
use reqwest::{StatusCode, Url};
use serde_json::Value;

/// What the heartbeat loop needs from the rest of the agent (the agent API's state
/// implements it): where to put the token the lookup handed out, what to report, and when
/// to heartbeat early.
pub trait AgentLink: Send + Sync + 'static {
    /// The token every `/v1/commands` call must now carry.
    fn set_token(&self, token: &str);
    /// The node a lookup answered (its root device hints choose the install disk).
    fn set_node(&self, node: &ferrite_proto::lookup::LookupNode) {
        let _ = node;
    }
    /// `agent_status` and `agent_status_message` for the next heartbeat (`None` leaves
    /// them out).
    fn agent_status(&self) -> (Option<String>, Option<String>);
    /// Resolves when the conductor should hear from us now (a command finished).
    fn heartbeat_requested(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The newest microversion this agent speaks: 1.72 lets heartbeats carry `agent_status`.
pub const MAX_API_VERSION: (u32, u32) = (1, 72);
/// Spoken when the conductor does not say what it supports (CONTRACT.md §2's 1.68).
pub const FALLBACK_API_VERSION: (u32, u32) = (1, 68);
/// `agent_verify_ca` (automatic TLS) needs this.
pub const VERIFY_CA_API_VERSION: (u32, u32) = (1, 68);
/// `agent_status` and `agent_status_message` in heartbeats need this; Ironic refuses
/// them (400) below it.
pub const STATUS_API_VERSION: (u32, u32) = (1, 72);

/// How an answer from the conductor went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConductorError {
    #[error("could not reach the conductor at {url}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the conductor answered {url} with HTTP {status}: {message}")]
    Status {
        url: String,
        status: StatusCode,
        message: String,
    },
    #[error("the conductor's answer to {url} is not what CONTRACT.md §2 describes")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ConductorError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ConductorError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// HTTP client for the conductor's agent endpoints.
#[derive(Debug, Clone)]
pub struct ConductorClient {
    http: reqwest::Client,
    base: Url,
    api_version: (u32, u32),
    request_id: Option<String>,
}

impl ConductorClient {
    /// `insecure` skips certificate checks of the conductor (`ipa-insecure`).
    pub fn new(
        base: Url,
        insecure: bool,
        request_id: Option<String>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(ConductorClient {
            http,
            base,
            api_version: FALLBACK_API_VERSION,
            request_id,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The microversion sent with lookups and heartbeats.
    pub fn api_version(&self) -> (u32, u32) {
        self.api_version
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let mut rb = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                API_VERSION_HEADER,
                format!("{}.{}", self.api_version.0, self.api_version.1),
            );
        if let Some(id) = &self.request_id {
            rb = rb.header("X-OpenStack-Request-ID", id);
        }
        rb
    }

    /// Asks `GET /` for the conductor's newest microversion and settles on the highest
    /// both sides support. Returns it; when the conductor cannot tell, the client keeps
    /// [`FALLBACK_API_VERSION`] and the error says why.
    pub async fn negotiate_version(&mut self) -> Result<(u32, u32), ConductorError> {
        let url = self.url("/");
        let res = self
            .http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|source| transport(&url, source))?;
        let body = checked(&url, res).await?;
        let value: Value =
            serde_json::from_slice(&body).map_err(|source| ConductorError::Decode {
                url: url.to_string(),
                source,
            })?;
        let theirs = value
            .pointer("/default_version/version")
            .and_then(Value::as_str)
            .and_then(parse_version)
            .ok_or_else(|| ConductorError::Status {
                url: url.to_string(),
                status: StatusCode::OK,
                message: "no default_version.version in the version document".into(),
            })?;
        let chosen = theirs.min(MAX_API_VERSION);
        self.api_version = chosen;
        Ok(chosen)
    }

    /// One `GET /v1/lookup`.
    pub async fn lookup(
        &self,
        macs: &[String],
        node_uuid: Option<&str>,
    ) -> Result<LookupResponse, ConductorError> {
        let mut url = self.url("/v1/lookup");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("addresses", &macs.join(","));
            if let Some(uuid) = node_uuid {
                q.append_pair("node_uuid", uuid);
            }
        }
        let res = self
            .request(reqwest::Method::GET, url.clone())
            .send()
            .await
            .map_err(|source| transport(&url, source))?;
        let body = checked(&url, res).await?;
        serde_json::from_slice(&body).map_err(|source| ConductorError::Decode {
            url: url.to_string(),
            source,
        })
    }

    /// One `POST /v1/heartbeat/{node}`; 202 (or any 2xx) is success.
    pub async fn heartbeat(&self, node_uuid: &str, body: &Heartbeat) -> Result<(), ConductorError> {
        let url = self.url(&format!("/v1/heartbeat/{node_uuid}"));
        let res = self
            .request(reqwest::Method::POST, url.clone())
            .json(body)
            .send()
            .await
            .map_err(|source| transport(&url, source))?;
        checked(&url, res).await.map(|_| ())
    }
}

fn transport(url: &Url, source: reqwest::Error) -> ConductorError {
    ConductorError::Transport {
        url: url.to_string(),
        source,
    }
}

/// The body of a 2xx answer, or the conductor's error message.
async fn checked(url: &Url, res: reqwest::Response) -> Result<bytes::Bytes, ConductorError> {
    let status = res.status();
    let body = res.bytes().await.map_err(|source| transport(url, source))?;
    if status.is_success() {
        return Ok(body);
    }
    Err(ConductorError::Status {
        url: url.to_string(),
        status,
        message: error_message(&body),
    })
}

/// Ironic wraps its fault as a JSON string inside `error_message`; IPA and plain servers
/// send `faultstring` or text. Take whichever is there.
pub fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return text.chars().take(500).collect();
    };
    let inner = match value.get("error_message") {
        Some(Value::String(s)) => {
            serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.clone()))
        }
        Some(v) => v.clone(),
        None => value.clone(),
    };
    match inner.get("faultstring").and_then(Value::as_str) {
        Some(s) => s.into(),
        None => match inner {
            Value::String(s) => s,
            _ => text.chars().take(500).collect(),
        },
    }
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// A random factor in `[lo, hi)`: the jitter every wait in this module uses.
pub(crate) fn jitter(lo: f64, hi: f64) -> f64 {
    if hi <= lo {
        return lo;
    }
    rand::random_range(lo..hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_in_every_shape() {
        let ironic = br#"{"error_message": "{\"faultstring\": \"Node not found\", \"faultcode\": \"Client\"}"}"#;
        assert_eq!(error_message(ironic), "Node not found");
        assert_eq!(error_message(br#"{"faultstring": "locked"}"#), "locked");
        assert_eq!(error_message(b"plain text"), "plain text");
        assert_eq!(
            error_message(br#"{"error_message": "old style"}"#),
            "old style"
        );
    }

    #[test]
    fn urls_keep_a_base_path() {
        let c = ConductorClient::new(Url::parse("http://c:6385/baremetal/").unwrap(), false, None)
            .unwrap();
        assert_eq!(
            c.url("/v1/lookup").as_str(),
            "http://c:6385/baremetal/v1/lookup"
        );
        let c = ConductorClient::new(Url::parse("http://c:6385").unwrap(), false, None).unwrap();
        assert_eq!(
            c.url("/v1/heartbeat/x").as_str(),
            "http://c:6385/v1/heartbeat/x"
        );
        assert_eq!(c.api_version(), (1, 68));
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("1.99"), Some((1, 99)));
        assert_eq!(parse_version("1"), None);
        assert_eq!(parse_version("1.x"), None);
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let j = jitter(0.3, 0.6);
            assert!((0.3..0.6).contains(&j));
        }
        assert_eq!(jitter(1.0, 1.0), 1.0);
    }
}
