//! HTTP client for the agent API (CONTRACT.md §1): commands with the node's token, `wait`
//! or polling, timeouts, TLS pinned to the certificate the agent sent as `agent_verify_ca`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use ferrite_proto::agent::{CommandRequest, CommandResult};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the agent's certificate from agent_verify_ca is not valid PEM")]
    BadCa(#[source] reqwest::Error),
    #[error("cannot build an HTTP client for the agent")]
    Client(#[source] reqwest::Error),
    #[error("cannot reach the agent at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the agent at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the agent at {url} sent an unreadable answer")]
    Decode {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Where and how to reach one node's agent.
#[derive(Debug, Clone)]
pub struct AgentTarget<'a> {
    pub url: &'a str,
    pub token: Option<&'a str>,
    pub verify_ca: Option<&'a str>,
}

pub struct AgentClient {
    plain: reqwest::Client,
    pinned: Mutex<HashMap<String, reqwest::Client>>,
    timeout: Duration,
}

impl AgentClient {
    pub fn new(timeout: Duration) -> Result<AgentClient, AgentError> {
        let plain = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(AgentError::Client)?;
        Ok(AgentClient {
            plain,
            pinned: Mutex::new(HashMap::new()),
            timeout,
        })
    }

    /// A client trusting only `ca` (the agent's self-signed certificate), cached per PEM.
    fn client(&self, ca: Option<&str>) -> Result<reqwest::Client, AgentError> {
        let Some(pem) = ca else {
            return Ok(self.plain.clone());
        };
        let mut cache = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(pem) {
            return Ok(c.clone());
        }
        let cert = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(AgentError::BadCa)?;
        let c = reqwest::Client::builder()
            .timeout(self.timeout)
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert)
            .build()
            .map_err(AgentError::Client)?;
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(pem.to_string(), c.clone());
        Ok(c)
    }

    fn with_token(url: String, token: Option<&str>, first: bool) -> String {
        match token {
            Some(t) => format!("{url}{}agent_token={t}", if first { '?' } else { '&' }),
            None => url,
        }
    }

    async fn decode(url: &str, resp: reqwest::Response) -> Result<CommandResult, AgentError> {
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(AgentError::Status {
                url: url.into(),
                status: status.as_u16(),
                body: body.chars().take(500).collect(),
            });
        }
        resp.json().await.map_err(|source| AgentError::Decode {
            url: url.into(),
            source: source.without_url(),
        })
    }

    /// Runs `name` on the agent; with `wait` the agent answers when the command ends.
    pub async fn command(
        &self,
        t: &AgentTarget<'_>,
        name: &str,
        params: Map<String, Value>,
        wait: bool,
    ) -> Result<CommandResult, AgentError> {
        let base = format!("{}/v1/commands/?wait={wait}", t.url.trim_end_matches('/'));
        let url = Self::with_token(base.clone(), t.token, false);
        let body = CommandRequest {
            name: name.into(),
            params,
        };
        let resp = self
            .client(t.verify_ca)?
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|source| AgentError::Unreachable {
                url: base.clone(),
                // reqwest's message names the URL, and with it the token in the query.
                source: source.without_url(),
            })?;
        Self::decode(&base, resp).await
    }

    /// The current state of one command.
    pub async fn get_command(
        &self,
        t: &AgentTarget<'_>,
        id: &str,
    ) -> Result<CommandResult, AgentError> {
        let base = format!("{}/v1/commands/{id}", t.url.trim_end_matches('/'));
        let url = Self::with_token(base.clone(), t.token, true);
        let resp = self
            .client(t.verify_ca)?
            .get(&url)
            .send()
            .await
            .map_err(|source| AgentError::Unreachable {
                url: base.clone(),
                // reqwest's message names the URL, and with it the token in the query.
                source: source.without_url(),
            })?;
        Self::decode(&base, resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "SECRET-TOKEN-0123456789abcdefghijklmnopqrstu";

    /// The token travels in the query (as IPA expects it), and reqwest's errors name the
    /// URL: none of that may reach an error message (and so `last_error` or a log).
    #[tokio::test]
    async fn errors_never_show_the_token() {
        let c = AgentClient::new(Duration::from_secs(5)).unwrap();
        // Nobody listening.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let t = AgentTarget {
            url: &url,
            token: Some(TOKEN),
            verify_ca: None,
        };
        let e = c.command(&t, "x.y", Map::new(), true).await.unwrap_err();
        assert!(matches!(e, AgentError::Unreachable { .. }), "{e:?}");
        let text = crate::error_chain(&e);
        assert!(!text.contains(TOKEN), "{text}");
        assert!(!format!("{e:?}").contains(TOKEN), "{e:?}");
        // A listener that answers something that is not a command result.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 4096];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nnope!")
                    .await;
            }
        });
        let t = AgentTarget {
            url: &url,
            token: Some(TOKEN),
            verify_ca: None,
        };
        for e in [
            c.command(&t, "x.y", Map::new(), false).await.unwrap_err(),
            c.get_command(&t, "id").await.unwrap_err(),
        ] {
            assert!(matches!(e, AgentError::Decode { .. }), "{e:?}");
            let text = crate::error_chain(&e);
            assert!(!text.contains(TOKEN), "{text}");
            assert!(!format!("{e:?}").contains(TOKEN), "{e:?}");
        }
    }

    #[test]
    fn bad_pem_is_refused_with_a_clear_error() {
        let c = AgentClient::new(Duration::from_secs(1)).unwrap();
        let err = c.client(Some("not a certificate")).err();
        // reqwest accepts empty PEM bundles lazily on some versions; either way no panic.
        if let Some(e) = err {
            assert!(e.to_string().contains("agent_verify_ca") || e.to_string().contains("client"));
        }
    }

    #[test]
    fn token_goes_in_the_query() {
        assert_eq!(
            AgentClient::with_token("http://a/v1/commands/?wait=true".into(), Some("T"), false),
            "http://a/v1/commands/?wait=true&agent_token=T"
        );
        assert_eq!(
            AgentClient::with_token("http://a/v1/commands/x".into(), Some("T"), true),
            "http://a/v1/commands/x?agent_token=T"
        );
    }
}
