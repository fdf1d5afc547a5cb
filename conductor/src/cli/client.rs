//! HTTP client of the `ferrite` CLI: microversion header, optional basic auth, and API
//! errors turned into one readable line.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the conductor at {url} (set FERRITE_URL or --url)")]
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

pub struct Client {
    pub base: String,
    http: reqwest::Client,
    auth: Option<(String, String)>,
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
        Client {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            auth,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let url = format!("{}{path}", self.base);
        let mut rb = self
            .http
            .request(m, &url)
            .header(ferrite_proto::API_VERSION_HEADER, "1.68");
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

    #[test]
    fn ironic_errors_become_one_line() {
        let body = r#"{"error_message": "{\"faultstring\": \"Node x could not be found.\", \"faultcode\": \"Client\", \"debuginfo\": null}"}"#;
        assert_eq!(api_message(body), "Node x could not be found.");
        assert_eq!(api_message("plain text"), "plain text");
    }
}
