//! `GET /v1/lookup` until the conductor knows us: randomised exponential backoff on "not
//! yet" (404, errors), fixed growing pauses when the node is locked (409), up to a deadline.

use std::time::Duration;

use ferrite_proto::lookup::LookupResponse;
use reqwest::StatusCode;
use tokio::time::Instant;

use super::heartbeat::absorb_token;
use super::token::TokenStore;
use super::{jitter, AgentLink, ConductorClient, ConductorError};

/// Every wait of the lookup, configurable so tests run in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupTiming {
    /// Give up after this long (`ipa-lookup-timeout`, 600 s).
    pub timeout: Duration,
    /// First backoff (`ipa-lookup-interval`, 1 s); doubles per attempt, randomised.
    pub start: Duration,
    /// Backoff cap (60 s).
    pub cap: Duration,
    /// Pauses after successive 409s (5, 10, 30 s; the last repeats).
    pub conflict_pauses: Vec<Duration>,
}

impl Default for LookupTiming {
    fn default() -> Self {
        LookupTiming {
            timeout: crate::cmdline::DEFAULT_LOOKUP_TIMEOUT,
            start: crate::cmdline::DEFAULT_LOOKUP_INTERVAL,
            cap: Duration::from_secs(60),
            conflict_pauses: [5, 10, 30].map(Duration::from_secs).to_vec(),
        }
    }
}

/// The waits between lookups, in order.
#[derive(Debug, Clone)]
pub struct Backoff {
    timing: LookupTiming,
    failures: u32,
    conflicts: usize,
}

impl Backoff {
    pub fn new(timing: LookupTiming) -> Self {
        Backoff {
            timing,
            failures: 0,
            conflicts: 0,
        }
    }

    /// After a 404 or an error: uniform in `[start, min(cap, start·2^(n-1))]` for the n-th
    /// failure, as tenacity's `wait_random_exponential` does for IPA.
    pub fn after_failure(&mut self) -> Duration {
        self.failures += 1;
        let start = self.timing.start.as_secs_f64();
        let cap = self.timing.cap.as_secs_f64().max(start);
        let exp = 2f64.powi(self.failures.saturating_sub(1).min(62) as i32);
        let high = (start * exp).clamp(start, cap);
        Duration::from_secs_f64(start + (high - start) * jitter(0.0, 1.0))
    }

    /// After a 409: the next of the conflict pauses.
    pub fn after_conflict(&mut self) -> Duration {
        let pauses = &self.timing.conflict_pauses;
        let Some(last) = pauses.last() else {
            return self.after_failure();
        };
        let pause = *pauses.get(self.conflicts).unwrap_or(last);
        self.conflicts += 1;
        pause
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(
        "no node found for MACs [{macs}] within {timeout:?} (ipa-lookup-timeout): check that \
         the conductor is reachable, that the node's ports carry these addresses and that the \
         node is in a state that waits for an agent"
    )]
    TimedOut {
        macs: String,
        timeout: Duration,
        #[source]
        last: ConductorError,
    },
    #[error(
        "nothing to look the node up by: no MAC address in the inventory or BOOTIF, and no \
         node UUID from inspection"
    )]
    NothingToLookUp,
}

/// Looks the node up until the conductor answers 200 or `timing.timeout` passes.
pub async fn lookup(
    client: &ConductorClient,
    macs: &[String],
    node_uuid: Option<&str>,
    timing: &LookupTiming,
) -> Result<LookupResponse, LookupError> {
    if macs.is_empty() && node_uuid.is_none() {
        return Err(LookupError::NothingToLookUp);
    }
    let deadline = Instant::now() + timing.timeout;
    let mut backoff = Backoff::new(timing.clone());
    loop {
        let err = match client.lookup(macs, node_uuid).await {
            Ok(found) => {
                tracing::info!(node = %found.node.uuid, "lookup succeeded");
                return Ok(found);
            }
            Err(e) => e,
        };
        let wait = if err.status() == Some(StatusCode::CONFLICT) {
            backoff.after_conflict()
        } else {
            backoff.after_failure()
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(LookupError::TimedOut {
                macs: macs.join(","),
                timeout: timing.timeout,
                last: err,
            });
        }
        let wait = wait.min(deadline - now);
        tracing::warn!(error = %err, retry_in = ?wait, "lookup not answered yet");
        tokio::time::sleep(wait).await;
    }
}

/// Looks the node up until an answer leaves us holding a token (handed out now, or
/// pre-shared in `tokens`), and never gives up while the conductor cannot be reached or
/// does not know us yet: an agent without a token must not serve, so the only useful thing
/// it can do is keep asking (IPA's agent exits and is restarted, which amounts to the
/// same). Fails only when there is nothing to look the node up by.
pub async fn lookup_until_token(
    client: &ConductorClient,
    macs: &[String],
    node_uuid: Option<&str>,
    timing: &LookupTiming,
    tokens: &mut TokenStore,
    link: &dyn AgentLink,
) -> Result<LookupResponse, LookupError> {
    let mut backoff = Backoff::new(timing.clone());
    loop {
        match lookup(client, macs, node_uuid, timing).await {
            Ok(found) => {
                absorb_token(tokens, found.config.agent_token.as_deref(), link);
                if tokens.get().is_some() {
                    return Ok(found);
                }
                let wait = backoff.after_failure();
                tracing::error!(
                    retry_in = ?wait,
                    "the lookup handed out no token this agent can use; the agent API stays \
                     closed and the lookup is repeated"
                );
                tokio::time::sleep(wait).await;
            }
            Err(e @ LookupError::TimedOut { .. }) => {
                tracing::error!(error = %e, "still no lookup answer; the agent API stays closed")
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> LookupTiming {
        LookupTiming::default()
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_up_to_the_cap() {
        for _ in 0..200 {
            let mut b = Backoff::new(timing());
            for n in 1..=10u32 {
                let w = b.after_failure().as_secs_f64();
                let high = (2f64.powi(n as i32 - 1)).min(60.0);
                assert!((1.0..=high + 1e-9).contains(&w), "attempt {n}: {w}");
            }
        }
    }

    #[test]
    fn failure_waits_are_spread_not_fixed() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(timing());
            for _ in 0..7 {
                b.after_failure();
            }
            seen.insert(b.after_failure().as_millis());
        }
        assert!(seen.len() > 10, "{seen:?}");
        assert!(seen.iter().all(|&ms| (1000..=60000).contains(&ms)));
    }

    #[test]
    fn conflicts_pause_5_10_30_then_30() {
        let mut b = Backoff::new(timing());
        let got: Vec<u64> = (0..5).map(|_| b.after_conflict().as_secs()).collect();
        assert_eq!(got, [5, 10, 30, 30, 30]);
    }

    #[test]
    fn no_conflict_pauses_falls_back_to_backoff() {
        let mut b = Backoff::new(LookupTiming {
            conflict_pauses: vec![],
            ..timing()
        });
        assert!(b.after_conflict() >= Duration::from_secs(1));
    }
}
