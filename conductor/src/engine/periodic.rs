//! Periodic work and restart recovery: wait-state timeouts fail nodes with `last_error`;
//! at start, stale locks are cleared and nodes caught mid-step are failed.

use std::sync::Arc;

use serde_json::Value;

use super::plan::Kind;
use super::progress::{StepProgress, Waiting};
use super::{Conductor, EResult};
use crate::model::{age_secs, Node};
use crate::state::State;

const WORKING: &[State] = &[
    State::Verifying,
    State::Inspecting,
    State::Adopting,
    State::Cleaning,
    State::Deploying,
    State::Deleting,
];

impl Conductor {
    /// Run once at start, before serving: clears this host's stale locks and fails nodes
    /// whose work was interrupted. Nodes in wait states keep waiting for their agent.
    pub async fn recover(&self) -> EResult<usize> {
        let cleared = self.db.clear_reservations(&self.cfg.host).await?;
        if cleared > 0 {
            tracing::warn!(cleared, "cleared stale reservations of this conductor");
        }
        let mut failed = 0;
        for node in self.db.nodes_in_states(WORKING).await? {
            if node.reservation.is_some() {
                continue; // another conductor's work
            }
            let Ok(mut node) = self.lock(&node).await else {
                continue;
            };
            let step = [&node.deploy_step, &node.clean_step]
                .into_iter()
                .find(|s| !s.is_empty())
                .map(|s| {
                    format!(
                        " during step {}.{}",
                        s.get("interface").and_then(Value::as_str).unwrap_or("?"),
                        s.get("step").and_then(Value::as_str).unwrap_or("?")
                    )
                })
                .unwrap_or_default();
            let msg = format!(
                "The conductor restarted while the node was in \"{}\"{step}; the operation was \
                 interrupted and its outcome is unknown. Check the node and retry.",
                node.provision_state
            );
            node.target_power_state = None;
            let r = self.fail(&mut node, msg).await;
            self.unlock(&node.uuid).await;
            r?;
            failed += 1;
        }
        Ok(failed)
    }

    /// Fails wait-state nodes whose agent went quiet or whose step ran too long.
    pub async fn check_timeouts(&self) -> EResult<usize> {
        // Buffered heartbeat times first: they are what keeps a quiet-looking node alive.
        self.flush_heartbeats().await?;
        let mut failed = 0;
        let waits = [State::InspectWait, State::CleanWait, State::WaitCallBack];
        for node in self.db.nodes_in_states(&waits).await? {
            if node.reservation.is_some() {
                continue;
            }
            let Some(msg) = self.timed_out(&node) else {
                continue;
            };
            let Ok(mut node) = self.lock(&node).await else {
                continue;
            };
            // Re-check under the lock: a heartbeat may have arrived.
            let r = match self.timed_out(&node) {
                Some(_) if waits.contains(&node.provision_state) => self.fail(&mut node, msg).await,
                _ => Ok(()),
            };
            self.unlock(&node.uuid).await;
            r?;
            failed += 1;
        }
        Ok(failed)
    }

    fn timed_out(&self, node: &Node) -> Option<String> {
        let since = |t: &Option<String>| t.as_deref().and_then(age_secs).unwrap_or(f64::MAX);
        let quiet = since(&node.provision_updated_at).min(since(&node.agent_last_heartbeat));
        let (limit, what) = match node.provision_state {
            State::InspectWait => (self.cfg.inspect_timeout, "inspection"),
            _ => (self.cfg.callback_timeout, "callback"),
        };
        if quiet > limit.as_secs_f64() && node.provision_state == State::InspectWait {
            return Some(format!(
                "Timeout reached while waiting for the inspection data of node {} ({} s)",
                node.uuid,
                limit.as_secs()
            ));
        }
        if quiet > limit.as_secs_f64() {
            return Some(format!(
                "Timeout reached while waiting for {what} for node {}: no agent heartbeat for {} s",
                node.uuid,
                limit.as_secs()
            ));
        }
        // Unreadable bookkeeping has no step to time; the callback timeout still holds.
        let progress = StepProgress::load(&node.driver_internal_info).unwrap_or_default();
        let waiting_cmd = progress.waiting(Kind::of(node.provision_state)) == Waiting::AgentCommand;
        let started = progress.step_started_at.as_deref().and_then(age_secs);
        if let (true, Some(age)) = (waiting_cmd, started) {
            if age > self.cfg.step_timeout.as_secs_f64() {
                return Some(format!(
                    "Timeout reached while running a step on node {}: the agent command ran \
                     longer than {} s",
                    node.uuid,
                    self.cfg.step_timeout.as_secs()
                ));
            }
        }
        None
    }

    /// The periodic loop: timeouts and the conductor's own liveness, until `shutdown`.
    pub async fn run_periodic(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.cfg.periodic_interval);
        let mut power = self.cfg.power_sync_interval.map(|every| {
            // The first pass after one interval, not at start-up: no burst of BMC reads
            // (and node locks) while clients enrol and change nodes right after a start.
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut power_pass: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = async { power.as_mut().expect("guarded").tick().await }, if power.is_some() => {
                    // One pass at a time: a slow pass over many BMCs must not pile up.
                    if power_pass.as_ref().is_none_or(|p| p.is_finished()) {
                        let me = self.clone();
                        power_pass = Some(tokio::spawn(async move {
                            if let Err(e) = me.sync_power_states().await {
                                tracing::error!(error = %crate::error_chain(&e), "power sync failed");
                            }
                        }));
                    }
                    continue;
                }
                _ = shutdown.changed() => {
                    // Let a running pass finish its BMC reads (each bounded) and release its locks.
                    if let Some(p) = power_pass {
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), p).await;
                    }
                    return;
                }
            }
            if let Err(e) = self.check_timeouts().await {
                tracing::error!(error = %crate::error_chain(&e), "timeout check failed");
            }
            let names = self.drivers.names();
            if let Err(e) = self.db.register_conductor(&self.cfg.host, &names).await {
                tracing::error!(error = %crate::error_chain(&e), "conductor heartbeat failed");
            }
        }
    }
}
