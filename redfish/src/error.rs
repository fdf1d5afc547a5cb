//! Why a Redfish call failed. Each message says what failed and what to do; causes are
//! `#[source]`s, not pasted into the message.

use std::time::Duration;

use thiserror::Error;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, Error)]
pub enum RedfishError {
    #[error(
        "cannot reach the BMC at {url} after {attempts} attempt(s): check redfish_address and \
         that the BMC is up and reachable from the conductor"
    )]
    Unreachable {
        url: String,
        attempts: u32,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "cannot verify the TLS certificate of the BMC at {url}: set redfish_verify_ca to the \
         CA file that signed it (or to false to skip the check)"
    )]
    Tls {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the BMC at {url} refused the credentials (HTTP 401): check redfish_username and \
         redfish_password"
    )]
    Unauthorized { url: String },
    #[error(
        "the BMC has no system {id:?}: set redfish_system_id to one of: {}",
        if available.is_empty() { "(the BMC lists no systems)".to_string() } else { available.join(", ") }
    )]
    UnknownSystem { id: String, available: Vec<String> },
    #[error(
        "the BMC lists {} systems: set redfish_system_id to one of: {}",
        available.len(),
        available.join(", ")
    )]
    AmbiguousSystem { available: Vec<String> },
    #[error("the BMC has no resource at {path} (HTTP 404)")]
    NotFound { path: String },
    #[error(
        "the BMC kept failing {method} {path} (last answer: {last}) after {attempts} \
         attempts: it may be busy or failing; retry later or reset the BMC"
    )]
    ServerError {
        method: String,
        path: String,
        last: String,
        attempts: u32,
    },
    #[error("the BMC rejected {method} {path} (HTTP {status}): {message}")]
    Rejected {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
    #[error("the BMC's answer to {method} {path} is not a valid {what}")]
    Decode {
        method: String,
        path: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read the BMC's answer to {method} {path}")]
    Body {
        method: String,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the BMC does not offer {what}")]
    Unsupported { what: String },
    #[error("cannot use the CA file {path} (redfish_verify_ca)")]
    CaFile {
        path: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
    #[error("invalid BMC URL {url:?}")]
    Url {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error(
        "the BMC's task {monitor} ended in state {state}{}",
        if messages.is_empty() { String::new() } else { format!(": {}", messages.join("; ")) }
    )]
    TaskFailed {
        monitor: String,
        state: String,
        messages: Vec<String>,
    },
    #[error(
        "the BMC's task {monitor} did not finish within {waited:?}: check the BMC's task \
         list; it may still be running"
    )]
    TaskTimeout { monitor: String, waited: Duration },
    #[error(
        "the BMC accepted the request but still reports power {state} after {waited:?} \
         (wanted {wanted}): the server may be slow to change state; raise the power wait or \
         check the hardware"
    )]
    PowerNotSettled {
        wanted: String,
        state: String,
        waited: Duration,
    },
}

impl RedfishError {
    /// Whether retrying the same call later could succeed (the BMC was down or failing).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RedfishError::Unreachable { .. } | RedfishError::ServerError { .. }
        )
    }
}
