//! Periodic work and restart recovery: wait-state timeouts fail nodes with `last_error`,
//! takeovers (takeover.rs) run, the conductor heartbeats; at start, stale locks are
//! cleared and the conductor takes its nodes back. Each conductor does this only for the
//! nodes the hash ring gives it.

use std::sync::Arc;

use super::plan::Kind;
use super::progress::{StepProgress, Waiting};
use super::{Conductor, EResult};
use crate::model::{age_secs, Node};
use crate::state::State;

impl Conductor {
    /// Run once at start, before serving: registers the conductor and takes its nodes
    /// back (takeover.rs): the locks a previous run of this conductor left are kept on the
    /// nodes the ring gives it, which resume at once (waiting nodes keep waiting, nodes
    /// caught mid-step run the step again or fail), and released on the others, for their
    /// owners. Then a takeover pass as on every tick.
    pub async fn recover(self: &Arc<Self>) -> EResult<super::takeover::Taken> {
        self.db.register_conductor(&self.me()).await?;
        self.members(true).await?;
        let back = self.take_back().await?;
        let more = self.take_over().await?;
        Ok(super::takeover::Taken {
            broken: back.broken + more.broken,
            adopted: back.adopted + more.adopted,
        })
    }

    /// Fails wait-state nodes whose agent went quiet or whose step ran too long.
    pub async fn check_timeouts(&self) -> EResult<usize> {
        // Buffered heartbeat times first: they are what keeps a quiet-looking node alive.
        self.flush_heartbeats().await?;
        let mut failed = 0;
        let waits = [
            State::InspectWait,
            State::CleanWait,
            State::WaitCallBack,
            State::RescueWait,
        ];
        let members = self.members(false).await?;
        for node in self.db.nodes_in_states(&waits).await? {
            // Only this conductor's nodes: their owners time the others.
            if node.reservation.is_some() || !members.owns(&node) {
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
        if node.provision_state == State::RescueWait {
            // Ironic's rescue_callback_timeout: from the start of the wait (the first
            // heartbeat ends it).
            let limit = self.cfg.rescue_callback_timeout;
            return (since(&node.provision_updated_at) > limit.as_secs_f64()).then(|| {
                format!(
                    "Timeout reached while waiting for rescue ramdisk callback for node {} \
                     ({} s)",
                    node.uuid,
                    limit.as_secs_f64()
                )
            });
        }
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

    /// Writes this conductor's heartbeat (registering again if its row is gone).
    async fn conductor_heartbeat(&self) -> EResult<()> {
        if !self.db.conductor_heartbeat(&self.cfg.host).await? {
            self.db.register_conductor(&self.me()).await?;
        }
        Ok(())
    }

    /// The periodic loop: timeouts, takeovers, power sync and the conductor's heartbeat,
    /// until `shutdown`.
    pub async fn run_periodic(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.cfg.periodic_interval);
        // The conductor's heartbeat has its own task: a long takeover or timeout pass (many
        // nodes, a loaded machine) must not delay it past --dead-after, or the others would
        // find this live conductor dead and break its locks under its work.
        let heartbeat = {
            let me = self.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let mut beat = tokio::time::interval(me.cfg.heartbeat_interval);
                beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = beat.tick() => {
                            if let Err(e) = me.conductor_heartbeat().await {
                                tracing::error!(error = %crate::error_chain(&e), "conductor heartbeat failed");
                            }
                            // The Prometheus recorder's upkeep (drains histogram samples).
                            me.metrics.upkeep();
                        }
                        _ = stop.changed() => return,
                    }
                }
            })
        };
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
                    heartbeat.abort();
                    // Let a running pass finish its BMC reads (each bounded) and release its locks.
                    if let Some(p) = power_pass {
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), p).await;
                    }
                    return;
                }
            }
            match self.take_over().await {
                Ok(t) if t.broken > 0 || t.adopted > 0 => {
                    tracing::warn!(broken = t.broken, adopted = t.adopted, "took nodes over");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %crate::error_chain(&e), "takeover failed"),
            }
            if let Err(e) = self.check_timeouts().await {
                tracing::error!(error = %crate::error_chain(&e), "timeout check failed");
            }
        }
    }
}
