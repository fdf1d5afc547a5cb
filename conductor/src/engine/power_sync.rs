//! The periodic power state sync: every node's power state is read from its BMC, a few BMCs
//! at a time, and recorded when it changed outside Ferrite (someone pressed the button or
//! used ipmitool). A BMC that fails [`MAX_FAILURES`] reads in a row puts its node into
//! maintenance with the reason; the first good read afterwards takes it out again.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Conductor, EResult};
use crate::db::NodeFilter;
use crate::model::{now, Node};
use crate::state::State;

/// Failed reads in a row before the node goes into maintenance.
pub const MAX_FAILURES: u64 = 3;
/// How `maintenance_reason` starts when the power sync set it.
pub const REASON_PREFIX: &str = "Power state sync failed";
const FAILURES_KEY: &str = "power_sync_failures";

/// What one node's sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    Unchanged,
    Changed,
    Failed,
    /// Locked by work in progress, or not to be synced.
    Skipped,
}

fn ours(node: &Node) -> bool {
    node.maintenance
        && node
            .maintenance_reason
            .as_deref()
            .is_some_and(|r| r.starts_with(REASON_PREFIX))
}

impl Conductor {
    /// One pass over every node; returns how many changed power state.
    pub async fn sync_power_states(self: &Arc<Self>) -> EResult<usize> {
        let nodes = self.db.list_nodes(&NodeFilter::default()).await?;
        let members = self.members(false).await?;
        let gate = Arc::new(Semaphore::new(self.cfg.power_sync_workers.max(1)));
        let mut set = JoinSet::new();
        for node in nodes {
            let wanted = node.provision_state != State::Enroll
                && node.reservation.is_none()
                && members.owns(&node)
                && (!node.maintenance || ours(&node));
            if !wanted {
                continue;
            }
            let Ok(permit) = gate.clone().acquire_owned().await else {
                break;
            };
            let me = self.clone();
            set.spawn(async move {
                let _permit = permit;
                me.sync_power_state(&node.uuid).await
            });
        }
        let mut changed = 0;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(Synced::Changed)) => changed += 1,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %crate::error_chain(&e), "power sync"),
                Err(e) => tracing::error!(error = %e, "power sync task"),
            }
        }
        Ok(changed)
    }

    /// Reads one node's power state and records it. The BMC is read without the node's
    /// lock (so the sync never makes API calls fail with NodeLocked); the lock is taken
    /// only to record a change or a failure, and then the node is re-read.
    pub async fn sync_power_state(&self, uuid: &str) -> EResult<Synced> {
        let node = self.node(uuid).await?;
        let Ok(d) = self.drivers.for_node(&node) else {
            return Ok(Synced::Skipped);
        };
        let read = d.power.get_state(&node).await;
        if let Ok(ps) = &read {
            let failures = node.driver_internal_info.contains_key(FAILURES_KEY);
            if node.power_state.as_deref() == Some(ps.as_str()) && !failures && !ours(&node) {
                return Ok(Synced::Unchanged);
            }
        }
        let Ok(mut node) = self.lock(&node).await else {
            return Ok(Synced::Skipped);
        };
        let r = self.record(&mut node, read).await;
        self.unlock(uuid).await;
        r
    }

    async fn record(
        &self,
        node: &mut Node,
        read: Result<String, crate::drivers::DriverError>,
    ) -> EResult<Synced> {
        let failures = node
            .driver_internal_info
            .get(FAILURES_KEY)
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let outcome = match read {
            Ok(ps) => {
                let changed = node.power_state.as_deref() != Some(ps.as_str());
                if changed {
                    tracing::info!(node = %node.uuid, from = ?node.power_state, to = %ps,
                        "power state changed outside Ferrite");
                    node.power_state = Some(ps);
                }
                node.driver_internal_info.remove(FAILURES_KEY);
                if ours(node) {
                    node.maintenance = false;
                    node.maintenance_reason = None;
                }
                if changed {
                    Synced::Changed
                } else {
                    Synced::Unchanged
                }
            }
            Err(e) => {
                let e = crate::error_chain(&e);
                let failures = failures + 1;
                tracing::warn!(node = %node.uuid, failures, error = %e, "power state read failed");
                node.driver_internal_info
                    .insert(FAILURES_KEY.into(), failures.into());
                if failures >= MAX_FAILURES && !node.maintenance {
                    node.maintenance = true;
                    node.maintenance_reason = Some(format!(
                        "{REASON_PREFIX} {failures} times in a row: {e}; fix the BMC or its \
                         driver_info, the node leaves maintenance at the next good read"
                    ));
                }
                Synced::Failed
            }
        };
        node.updated_at = Some(now());
        self.db.save_node(node).await?;
        Ok(outcome)
    }
}
