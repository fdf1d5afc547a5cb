//! HTTP client of the `ferrite` CLI: microversion header, optional basic auth, and API
//! errors turned into one readable line.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the conductor at {url} (set FERRITE_URL or --url; for an https:// \
         conductor whose certificate a private CA signed, --cacert or FERRITE_CACERT)"
    )]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {path}: HTTP {status}: {message}")]
    Api {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
}

/// Retries of a request refused because the node is locked, and the wait between them
/// (python-ironicclient: 5 × 2 s).
const LOCKED_RETRIES: u32 = 5;
const LOCKED_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Client {
    pub base: String,
    http: reqwest::Client,
    auth: Option<(String, String)>,
    /// How often and how long apart a "node is locked" 409 is retried.
    pub locked_retries: u32,
    pub locked_backoff: std::time::Duration,
}

/// The faultstring of an Ironic error body, or the body itself.
pub fn api_message(body: &str) -> String {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return body.trim().chars().take(300).collect(),
    };
    if let Some(inner) = v.get("error_message").and_then(Value::as_str) {
        if let Ok(i) = serde_json::from_str::<Value>(inner) {
            if let Some(f) = i.get("faultstring").and_then(Value::as_str) {
                return f.to_string();
            }
        }
        return inner.to_string();
    }
    body.trim().to_string()
}

impl Client {
    pub fn new(base: &str, auth: Option<(String, String)>) -> Client {
        Client::with_http(base, auth, reqwest::Client::new())
    }

    fn with_http(base: &str, auth: Option<(String, String)>, http: reqwest::Client) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            http,
            auth,
            locked_retries: LOCKED_RETRIES,
            locked_backoff: LOCKED_BACKOFF,
        }
    }

    /// As [`Client::new`], trusting also the PEM CA certificate(s) in `cacert` (a conductor
    /// serving `--tls-cert` signed by a private CA, as python-ironicclient's `--os-cacert`).
    pub fn with_cacert(
        base: &str,
        auth: Option<(String, String)>,
        cacert: &std::path::Path,
    ) -> anyhow::Result<Client> {
        use anyhow::Context;
        let pem = std::fs::read(cacert)
            .with_context(|| format!("reading --cacert {}", cacert.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--cacert {} is not PEM certificates", cacert.display()))?;
        if certs.is_empty() {
            anyhow::bail!(
                "--cacert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                cacert.display()
            );
        }
        let mut builder = reqwest::Client::builder();
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
        let http = builder.build().context("setting up the HTTPS client")?;
        Ok(Client::with_http(base, auth, http))
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        // Like python-ironicclient: a node locked by the conductor's own work answers 409
        // "please retry"; retry a few times before giving up.
        let mut attempt = 0;
        loop {
            match self.call_once(method, path, body).await {
                Err(ClientError::Api {
                    status: 409,
                    ref message,
                    ..
                }) if message.contains("is locked by") && attempt < self.locked_retries => {
                    attempt += 1;
                    tokio::time::sleep(self.locked_backoff).await;
                }
                r => return r,
            }
        }
    }

    /// `GET path` answered with bytes (an archive), not JSON.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut rb = self
            .http
            .get(&url)
            .header(ferrite_proto::API_VERSION_HEADER, "1.68");
        if let Some((u, p)) = &self.auth {
            rb = rb.basic_auth(u, Some(p));
        }
        let unreachable = |source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        };
        let resp = rb.send().await.map_err(unreachable)?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(ClientError::Api {
                method: "GET".into(),
                path: path.into(),
                status: status.as_u16(),
                message: api_message(&text),
            });
        }
        Ok(resp.bytes().await.map_err(unreachable)?.to_vec())
    }

    async fn call_once(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let url = format!("{}{path}", self.base);
        // Node history needs 1.78; every other call keeps the version the CLI was written to.
        let version = if path.contains("/history") {
            "1.115"
        } else {
            "1.68"
        };
        let mut rb = self
            .http
            .request(m, &url)
            .header(ferrite_proto::API_VERSION_HEADER, version);
        if let Some((u, p)) = &self.auth {
            rb = rb.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.map_err(|source| ClientError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(ClientError::Api {
                method: method.into(),
                path: path.into(),
                status: status.as_u16(),
                message: api_message(&text),
            });
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A server answering `locked` 409s first, then 204; returns its URL and hit counter.
    async fn flaky(locked: u32, message: &'static str) -> (String, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/v1/nodes/n",
            axum::routing::delete(move || {
                let n = h.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < locked {
                        let body = serde_json::json!({"error_message": serde_json::json!({"faultstring": message}).to_string()});
                        (axum::http::StatusCode::CONFLICT, body.to_string())
                    } else {
                        (axum::http::StatusCode::NO_CONTENT, String::new())
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        (url, hits)
    }

    #[tokio::test]
    async fn a_locked_node_is_retried_other_conflicts_are_not() {
        let locked =
            "Node n is locked by host c1, please retry after the current operation is completed.";
        let (url, hits) = flaky(2, locked).await;
        let mut c = Client::new(&url, None);
        c.locked_backoff = std::time::Duration::from_millis(10);
        assert!(c.call("DELETE", "/v1/nodes/n", None).await.is_ok());
        assert_eq!(hits.load(Ordering::SeqCst), 3);

        let (url, hits) = flaky(100, locked).await;
        let mut c = Client::new(&url, None);
        c.locked_backoff = std::time::Duration::from_millis(10);
        let e = c.call("DELETE", "/v1/nodes/n", None).await.unwrap_err();
        assert!(
            e.to_string().contains("HTTP 409") && e.to_string().contains("locked"),
            "{e}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1 + LOCKED_RETRIES);

        let (url, hits) = flaky(1, "Node n is in state active; it cannot be deleted").await;
        let c = Client::new(&url, None);
        assert!(c.call("DELETE", "/v1/nodes/n", None).await.is_err());
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "a real conflict is not retried"
        );
    }

    #[test]
    fn ironic_errors_become_one_line() {
        let body = r#"{"error_message": "{\"faultstring\": \"Node x could not be found.\", \"faultcode\": \"Client\", \"debuginfo\": null}"}"#;
        assert_eq!(api_message(body), "Node x could not be found.");
        assert_eq!(api_message("plain text"), "plain text");
    }
}
