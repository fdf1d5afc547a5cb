//! HTTP basic auth from an htpasswd file with bcrypt hashes (Ironic's `http_basic`).
//! Without a file the API runs `noauth`, which the server allows on loopback only.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::{ApiError, Shared};

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("cannot read the htpasswd file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("htpasswd file {path} line {line}: expected user:$2y$… (bcrypt); create it with `htpasswd -B`")]
    Line { path: String, line: usize },
}

pub struct Htpasswd {
    users: HashMap<String, String>,
    /// Authorization header values already verified (bcrypt is slow by design).
    verified: Mutex<HashSet<String>>,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    pub fn parse(text: &str, path: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(HtpasswdError::Line {
                    path: path.into(),
                    line: i + 1,
                });
            };
            if !hash.starts_with("$2") {
                return Err(HtpasswdError::Line {
                    path: path.into(),
                    line: i + 1,
                });
            }
            users.insert(user.to_string(), hash.to_string());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: &str) -> bool {
        if self
            .verified
            .lock()
            .map(|v| v.contains(authorization))
            .unwrap_or(false)
        {
            return true;
        }
        let Some(b64) = authorization.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let Ok(raw) = String::from_utf8(raw) else {
            return false;
        };
        let Some((user, pass)) = raw.split_once(':') else {
            return false;
        };
        let ok = self
            .users
            .get(user)
            .is_some_and(|h| bcrypt::verify(pass, h).unwrap_or(false));
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                if v.len() > 1000 {
                    v.clear();
                }
                v.insert(authorization.to_string());
            }
        }
        ok
    }
}

pub async fn require(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let Some(auth) = &state.auth else {
        return next.run(req).await;
    };
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if auth.check(header) {
        return next.run(req).await;
    }
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "Authentication required: send HTTP basic credentials of a user in the htpasswd file",
    )
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Basic realm=\"Baremetal API\""),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_users_are_checked() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# comment\nadmin:{hash}\n"), "f").unwrap();
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("admin:secret")
        );
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("admin:wrong")
        );
        assert!(h.check(&good));
        assert!(h.check(&good)); // cached
        assert!(!h.check(&bad));
        assert!(!h.check("Bearer x"));
        assert!(!h.check("Basic !!!"));
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = Htpasswd::parse("admin:plain\n", "f")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
