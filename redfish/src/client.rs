//! The HTTP side of Redfish: one `reqwest` client per BMC, TLS verification on by default
//! (a CA file or no verification on request), sessions (`X-Auth-Token`, logged in again
//! on a 401) or basic auth, and bounded retries with exponential backoff on 5xx answers
//! and connection failures. Errors say what failed and what to do.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Mutex, OnceCell};
use url::Url;

use crate::error::RedfishError;
use crate::model::{ErrorBody, ServiceRoot};
use crate::quirks::Quirks;

type Result<T> = std::result::Result<T, RedfishError>;

/// `redfish_auth_type`, as Ironic names the choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthType {
    /// Sessions when the service offers them, else basic auth.
    #[default]
    Auto,
    Session,
    Basic,
}

/// How the BMC's TLS certificate is checked (`redfish_verify_ca`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TlsVerify {
    /// Against the built-in (Mozilla) roots.
    #[default]
    Verify,
    /// Against this PEM CA file only (plus the built-in roots).
    CaFile(PathBuf),
    /// No verification (`redfish_verify_ca = false`).
    Off,
}

/// Bounds of the retries of one request on 5xx answers and connection failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Delay before the second attempt; doubled each time up to `max_delay`.
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts (Ironic's `[redfish]connection_attempts`), 0.5 s doubling to 4 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, failed_attempts: u32) -> Duration {
        let factor = 1u32 << failed_attempts.saturating_sub(1).min(16);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

#[derive(Clone)]
pub struct ClientConfig {
    /// `https://bmc[:port]`: paths like `/redfish/v1/Systems` are joined to it.
    pub base: Url,
    pub username: String,
    pub password: String,
    pub auth: AuthType,
    pub verify: TlsVerify,
    /// Whole-request bound.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base", &self.base.as_str())
            .field("username", &self.username)
            .field("password", &"******")
            .field("auth", &self.auth)
            .field("verify", &self.verify)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

impl ClientConfig {
    pub fn new(base: Url, username: &str, password: &str) -> ClientConfig {
        ClientConfig {
            base,
            username: username.into(),
            password: password.into(),
            auth: AuthType::Auto,
            verify: TlsVerify::Verify,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }
}

#[derive(Debug, Clone)]
enum AuthState {
    /// Not decided yet (the first request decides, from the service root).
    Unknown,
    Basic,
    Session {
        token: String,
        uri: Option<String>,
    },
}

/// What a request carries to authenticate.
enum Creds {
    None,
    Basic,
    Token(String),
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The `Location` header (a task monitor after a 202, a session after a login).
    pub fn location(&self) -> Option<String> {
        self.headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// A Redfish service (one BMC). Cheap to share behind an `Arc`; requests may run
/// concurrently and share the session.
pub struct Client {
    http: reqwest::Client,
    cfg: ClientConfig,
    auth: Mutex<AuthState>,
    root: OnceCell<ServiceRoot>,
}

/// Whether a `reqwest` error is a TLS failure (a certificate the client does not trust).
fn is_tls_error(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        // io::Error hides what it wraps from source(): look inside (io errors nest).
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            cur = Some(inner);
            continue;
        }
        cur = err.source();
    }
    false
}

impl Client {
    pub fn new(cfg: ClientConfig) -> Result<Client> {
        let mut b = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("ferrite-redfish/", env!("CARGO_PKG_VERSION")));
        match &cfg.verify {
            TlsVerify::Verify => {}
            TlsVerify::Off => b = b.danger_accept_invalid_certs(true),
            TlsVerify::CaFile(path) => {
                let ca_err =
                    |source: Box<dyn std::error::Error + Send + Sync>| RedfishError::CaFile {
                        path: path.display().to_string(),
                        source,
                    };
                let pem = std::fs::read(path).map_err(|e| ca_err(e.into()))?;
                let certs =
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(e.into()))?;
                if certs.is_empty() {
                    return Err(ca_err("no PEM certificate in the file".into()));
                }
                for c in certs {
                    b = b.add_root_certificate(c);
                }
            }
        }
        let http = b.build().map_err(RedfishError::Http)?;
        Ok(Client {
            http,
            cfg,
            auth: Mutex::new(AuthState::Unknown),
            root: OnceCell::new(),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.cfg
            .base
            .join(path)
            .map_err(|source| RedfishError::Url {
                url: path.into(),
                source,
            })
    }

    /// The service root (read once, without credentials as the specification allows).
    pub async fn root(&self) -> Result<&ServiceRoot> {
        self.root
            .get_or_try_init(|| async {
                let a = self
                    .send_with(
                        Method::GET,
                        "/redfish/v1/",
                        None,
                        &HeaderMap::new(),
                        &Creds::None,
                    )
                    .await?;
                decode(&a, "GET", "/redfish/v1/", "ServiceRoot")
            })
            .await
    }

    /// The quirks of this BMC, from its service root.
    pub async fn quirks(&self) -> Result<Quirks> {
        let r = self.root().await?;
        Ok(Quirks::for_names([
            r.vendor.as_deref(),
            r.product.as_deref(),
        ]))
    }

    /// Whether the client is using a session (after the first authenticated request).
    pub async fn uses_session(&self) -> bool {
        matches!(*self.auth.lock().await, AuthState::Session { .. })
    }

    /// Decides sessions vs basic auth (once) and returns the current state.
    async fn auth_state(&self) -> Result<AuthState> {
        let mut st = self.auth.lock().await;
        if !matches!(*st, AuthState::Unknown) {
            return Ok(st.clone());
        }
        let new = if self.cfg.username.is_empty() {
            AuthState::Basic
        } else {
            match self.cfg.auth {
                AuthType::Basic => AuthState::Basic,
                AuthType::Session => self.login().await?,
                AuthType::Auto => {
                    let root = self.root().await?;
                    let offered = root.links.sessions.is_some() || root.session_service.is_some();
                    if offered && !self.quirks().await?.avoid_sessions {
                        match self.login().await {
                            Ok(s) => s,
                            // A service that lists sessions but cannot create them: basic.
                            Err(RedfishError::NotFound { .. })
                            | Err(RedfishError::Rejected { .. }) => AuthState::Basic,
                            Err(e) => return Err(e),
                        }
                    } else {
                        AuthState::Basic
                    }
                }
            }
        };
        *st = new.clone();
        Ok(new)
    }

    /// `POST …/SessionService/Sessions` → the `X-Auth-Token`.
    async fn login(&self) -> Result<AuthState> {
        let root = self.root().await?;
        let path = root
            .links
            .sessions
            .as_ref()
            .map(|l| l.id.clone())
            .unwrap_or_else(|| "/redfish/v1/SessionService/Sessions".into());
        let body =
            serde_json::json!({"UserName": self.cfg.username, "Password": self.cfg.password});
        let a = self
            .send_with(
                Method::POST,
                &path,
                Some(&body),
                &HeaderMap::new(),
                &Creds::None,
            )
            .await?;
        let token = a
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| RedfishError::Rejected {
                method: "POST".into(),
                path: path.clone(),
                status: a.status.as_u16(),
                message: "the session was created without an X-Auth-Token header".into(),
            })?;
        let uri = a.location().or_else(|| {
            serde_json::from_slice::<Value>(&a.body)
                .ok()
                .and_then(|v| v.get("@odata.id")?.as_str().map(str::to_string))
        });
        tracing::debug!(bmc = %self.cfg.base, "redfish session created");
        Ok(AuthState::Session { token, uri })
    }

    /// Ends the session, if any (a BMC limits their number; an unclosed one times out).
    pub async fn logout(&self) -> Result<()> {
        let old = std::mem::replace(&mut *self.auth.lock().await, AuthState::Unknown);
        if let AuthState::Session {
            token,
            uri: Some(uri),
        } = old
        {
            self.send_with(
                Method::DELETE,
                &uri,
                None,
                &HeaderMap::new(),
                &Creds::Token(token),
            )
            .await?;
        }
        Ok(())
    }

    /// One request with authentication, retries and a re-login on 401 (once).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &HeaderMap,
    ) -> Result<Answer> {
        match self.send(method.clone(), path, body, headers, true).await {
            Err(RedfishError::Unauthorized { .. })
                if matches!(*self.auth.lock().await, AuthState::Session { .. }) =>
            {
                // The session expired or the BMC restarted: log in again, once.
                tracing::debug!(bmc = %self.cfg.base, "redfish session rejected; logging in again");
                *self.auth.lock().await = AuthState::Unknown;
                self.send(method, path, body, headers, true).await
            }
            r => r,
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str, what: &'static str) -> Result<T> {
        let a = self
            .request(Method::GET, path, None, &HeaderMap::new())
            .await?;
        decode(&a, "GET", path, what)
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer> {
        self.request(Method::POST, path, Some(body), &HeaderMap::new())
            .await
    }

    pub async fn patch(&self, path: &str, body: &Value, etag: Option<&str>) -> Result<Answer> {
        let mut h = HeaderMap::new();
        if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
            h.insert(reqwest::header::IF_MATCH, v);
        }
        self.request(Method::PATCH, path, Some(body), &h).await
    }

    /// Sends with the client's credentials (a session token or basic auth) or none.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &HeaderMap,
        authenticate: bool,
    ) -> Result<Answer> {
        let creds = if authenticate && !self.cfg.username.is_empty() {
            match self.auth_state().await? {
                AuthState::Session { token, .. } => Creds::Token(token),
                _ => Creds::Basic,
            }
        } else {
            Creds::None
        };
        self.send_with(method, path, body, headers, &creds).await
    }

    /// Sends with bounded retries on connection failures and 5xx answers.
    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &HeaderMap,
        creds: &Creds,
    ) -> Result<Answer> {
        let url = self.url(path)?;
        let attempts = self.cfg.retry.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut rb = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .header(reqwest::header::ACCEPT, "application/json");
            rb = match creds {
                Creds::None => rb,
                Creds::Token(t) => rb.header("x-auth-token", t),
                Creds::Basic => rb.basic_auth(&self.cfg.username, Some(&self.cfg.password)),
            };
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let last = match rb.send().await {
                Err(e) if is_tls_error(&e) => {
                    return Err(RedfishError::Tls {
                        url: self.cfg.base.to_string(),
                        source: e,
                    })
                }
                Err(e) => {
                    if attempt >= attempts {
                        return Err(RedfishError::Unreachable {
                            url: self.cfg.base.to_string(),
                            attempts,
                            source: e,
                        });
                    }
                    format!("{e}")
                }
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let bytes = resp.bytes().await.map_err(|source| RedfishError::Body {
                        method: method.to_string(),
                        path: path.into(),
                        source,
                    });
                    if status.is_success() {
                        return Ok(Answer {
                            status,
                            headers,
                            body: bytes?.to_vec(),
                        });
                    }
                    let body = bytes.map(|b| b.to_vec()).unwrap_or_default();
                    let message = ErrorBody::summary(&body).unwrap_or_else(|| {
                        String::from_utf8_lossy(&body).chars().take(200).collect()
                    });
                    if status == StatusCode::UNAUTHORIZED {
                        return Err(RedfishError::Unauthorized {
                            url: self.cfg.base.to_string(),
                        });
                    }
                    if status == StatusCode::NOT_FOUND {
                        return Err(RedfishError::NotFound { path: path.into() });
                    }
                    if !status.is_server_error() {
                        return Err(RedfishError::Rejected {
                            method: method.to_string(),
                            path: path.into(),
                            status: status.as_u16(),
                            message,
                        });
                    }
                    if attempt >= attempts {
                        return Err(RedfishError::ServerError {
                            method: method.to_string(),
                            path: path.into(),
                            last: format!("HTTP {}: {message}", status.as_u16()),
                            attempts,
                        });
                    }
                    format!("HTTP {}", status.as_u16())
                }
            };
            let delay = self.cfg.retry.delay(attempt);
            tracing::debug!(bmc = %self.cfg.base, %method, path, attempt, %last, ?delay,
                "redfish request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

pub(crate) fn decode<T: DeserializeOwned>(
    a: &Answer,
    method: &str,
    path: &str,
    what: &'static str,
) -> Result<T> {
    serde_json::from_slice(&a.body).map_err(|source| RedfishError::Decode {
        method: method.into(),
        path: path.into(),
        what,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_bound() {
        let p = RetryPolicy {
            attempts: 6,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        let d: Vec<u128> = (1..6).map(|a| p.delay(a).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 350, 350, 350]);
    }

    #[test]
    fn debug_output_hides_the_password() {
        let c = ClientConfig::new("https://bmc".parse().unwrap(), "admin", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
