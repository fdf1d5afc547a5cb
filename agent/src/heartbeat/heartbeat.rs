//! The heartbeat loop: `POST /v1/heartbeat/{node}` every `heartbeat_timeout × U(0.3, 0.6)`,
//! every 5–10 s after an error, a fresh lookup when the conductor no longer knows the node.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ferrite_proto::lookup::{Heartbeat, LookupResponse};
use reqwest::StatusCode;

use super::lookup::{lookup, LookupError, LookupTiming};
use super::token::{TokenEvent, TokenStore};
use super::{jitter, AgentLink, ConductorClient, STATUS_API_VERSION};

/// `heartbeat_timeout` when the conductor does not say (Ironic's default).
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(300);

/// Every wait of the loop, configurable so tests run fast.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatTiming {
    /// The interval is `heartbeat_timeout × U(jitter.0, jitter.1)`.
    pub jitter: (f64, f64),
    /// After an error the next try is `error_delay × U(1, 2)` away (5–10 s).
    pub error_delay: Duration,
    /// A forced heartbeat (after a command finished) comes at most this often.
    pub min_forced_gap: Duration,
}

impl Default for HeartbeatTiming {
    fn default() -> Self {
        HeartbeatTiming {
            jitter: (0.3, 0.6),
            error_delay: Duration::from_secs(5),
            min_forced_gap: Duration::from_secs(5),
        }
    }
}

/// What the loop reports to the conductor and how to find the node again.
pub struct Heartbeater {
    pub client: ConductorClient,
    pub node_uuid: String,
    pub heartbeat_timeout: Duration,
    pub tokens: TokenStore,
    pub callback_url: String,
    /// PEM of the automatic TLS certificate (`agent_verify_ca`).
    pub verify_ca: Option<String>,
    pub agent_version: String,
    pub timing: HeartbeatTiming,
    /// MACs for a fresh lookup when the node is unknown.
    pub macs: Vec<String>,
    pub lookup_timing: LookupTiming,
    pub link: Arc<dyn AgentLink>,
}

impl Heartbeater {
    /// Takes in a lookup answer: node, heartbeat_timeout, token.
    pub fn absorb_lookup(&mut self, found: &LookupResponse) {
        self.node_uuid = found.node.uuid.clone();
        self.heartbeat_timeout = heartbeat_timeout(found);
        self.link.set_node(&found.node);
        absorb_token(
            &mut self.tokens,
            found.config.agent_token.as_deref(),
            &*self.link,
        );
    }

    fn body(&self) -> Heartbeat {
        // Older conductors refuse heartbeats that carry a status they do not know.
        let (status, message) = if self.client.api_version() >= STATUS_API_VERSION {
            self.link.agent_status()
        } else {
            (None, None)
        };
        Heartbeat {
            callback_url: self.callback_url.clone(),
            agent_token: self.tokens.get().unwrap_or_default().to_string(),
            agent_version: self.agent_version.clone(),
            agent_verify_ca: self.verify_ca.clone(),
            agent_status: status.map(serde_json::Value::String),
            agent_status_message: message,
        }
    }

    fn normal_interval(&self) -> Duration {
        self.heartbeat_timeout
            .mul_f64(jitter(self.timing.jitter.0, self.timing.jitter.1))
    }

    fn error_interval(&self) -> Duration {
        self.timing.error_delay.mul_f64(jitter(1.0, 2.0))
    }

    /// One heartbeat, and how long to wait before the next. `Err` only when the node was
    /// unknown and a fresh lookup failed too.
    pub async fn beat(&mut self) -> Result<Duration, LookupError> {
        match self.client.heartbeat(&self.node_uuid, &self.body()).await {
            Ok(()) => {
                let next = self.normal_interval();
                tracing::debug!(node = %self.node_uuid, ?next, "heartbeat accepted");
                Ok(next)
            }
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                tracing::warn!(node = %self.node_uuid, error = %e, "conductor no longer knows this node; looking it up again");
                let found = lookup(&self.client, &self.macs, None, &self.lookup_timing).await?;
                self.absorb_lookup(&found);
                Ok(Duration::ZERO)
            }
            Err(e) => {
                let next = self.error_interval();
                match e.status() {
                    Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => tracing::error!(
                        error = %e,
                        "the conductor refused our agent token; reboot the node into a fresh agent if this persists"
                    ),
                    Some(StatusCode::CONFLICT) => {
                        tracing::warn!(error = %e, ?next, "node locked, heartbeat retried")
                    }
                    _ => tracing::warn!(error = %e, ?next, "heartbeat failed, retrying"),
                }
                Ok(next)
            }
        }
    }

    /// Heartbeats until `shutdown` resolves. The first heartbeat goes out at once.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), LookupError> {
        tokio::pin!(shutdown);
        let link = self.link.clone();
        let mut wait = Duration::ZERO;
        let mut last = tokio::time::Instant::now();
        loop {
            let due = last + wait;
            let forced_earliest = last + self.timing.min_forced_gap;
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep_until(due) => {}
                _ = link.heartbeat_requested() => {
                    // Honour the request, but not more often than min_forced_gap.
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        _ = tokio::time::sleep_until(forced_earliest.min(due)) => {}
                    }
                }
            }
            last = tokio::time::Instant::now();
            wait = self.beat().await?;
        }
    }
}

/// `config.heartbeat_timeout`, or 300 s when absent or nonsense.
pub fn heartbeat_timeout(found: &LookupResponse) -> Duration {
    match found.config.heartbeat_timeout {
        Some(secs) if secs.is_finite() && secs > 0.0 => Duration::from_secs_f64(secs),
        Some(secs) => {
            tracing::warn!(
                secs,
                "ignoring a heartbeat_timeout that is not a positive number"
            );
            DEFAULT_HEARTBEAT_TIMEOUT
        }
        None => DEFAULT_HEARTBEAT_TIMEOUT,
    }
}

/// Feeds an offered token to the store and, when it changes, to the agent API.
pub fn absorb_token(tokens: &mut TokenStore, offered: Option<&str>, link: &dyn AgentLink) {
    match tokens.offer(offered) {
        TokenEvent::Adopted => {
            tracing::info!("agent token received from the conductor");
            if let Some(t) = tokens.get() {
                link.set_token(t);
            }
        }
        TokenEvent::Kept => {}
        TokenEvent::Different => tracing::warn!(
            "the conductor offered a different agent token; keeping the first one, which the \
             agent API enforces"
        ),
        TokenEvent::MaskedWithoutToken => tracing::error!(
            "the conductor handed our token out before (\"******\") and we have none: \
             heartbeats will be refused; reboot the node into a fresh agent"
        ),
        TokenEvent::Invalid => {
            tracing::warn!("ignoring an agent token shorter than 32 characters")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_proto::lookup::{LookupConfig, LookupNode};

    fn found(timeout: Option<f64>) -> LookupResponse {
        LookupResponse {
            node: LookupNode {
                uuid: "u".into(),
                properties: Default::default(),
                instance_info: Default::default(),
                driver_internal_info: Default::default(),
            },
            config: LookupConfig {
                heartbeat_timeout: timeout,
                ..Default::default()
            },
        }
    }

    #[test]
    fn heartbeat_timeout_defaults_and_sanity() {
        assert_eq!(
            heartbeat_timeout(&found(Some(60.0))),
            Duration::from_secs(60)
        );
        assert_eq!(heartbeat_timeout(&found(None)), DEFAULT_HEARTBEAT_TIMEOUT);
        assert_eq!(
            heartbeat_timeout(&found(Some(-1.0))),
            DEFAULT_HEARTBEAT_TIMEOUT
        );
        assert_eq!(
            heartbeat_timeout(&found(Some(f64::NAN))),
            DEFAULT_HEARTBEAT_TIMEOUT
        );
    }
}
