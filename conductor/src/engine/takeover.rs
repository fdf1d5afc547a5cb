//! Takeover that resumes work: each conductor, at start and on every periodic tick, takes
//! the nodes the hash ring gives it. Locks held by dead conductors are broken; a node that
//! was handled by another conductor gets its boot configuration (iPXE scripts, staged
//! files, ISO) rebuilt here; a node caught in a working state is resumed from its saved
//! step index: the step that was running runs again when [`STEPS`] says that is safe, and
//! the node fails with a `last_error` naming the takeover when it is not. Waiting nodes
//! keep waiting: their agent's heartbeats reach the new owner.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::plan::Kind;
use super::progress::StepProgress;
use super::{Conductor, EResult};
use crate::db::NodeKey;
use crate::drivers::{ConductorStep, NodeDrivers};
use crate::model::Node;
use crate::state::State;

/// Whether a step that was running when its conductor died may run again from the start.
/// `interface` `"*"` matches every interface (Ironic's reserved steps). A step not listed
/// is not safe to repeat, except on a node whose deploy interface has no agent (such
/// steps do nothing there). docs/architecture.md shows this table.
pub const STEPS: &[(&str, &str, bool, &str)] = &[
    (
        "deploy",
        "deploy",
        true,
        "boots the agent again: ramdisk configuration, boot device, power cycle",
    ),
    (
        "deploy",
        "write_image",
        false,
        "the agent may still be writing the image; a second write would race the first",
    ),
    (
        "deploy",
        "prepare_instance_boot",
        true,
        "writes the instance's boot configuration and boot device again",
    ),
    (
        "deploy",
        "tear_down_agent",
        false,
        "the agent may be powered off already, so its disk flush cannot be repeated",
    ),
    (
        "deploy",
        "boot_instance",
        true,
        "powers the node on (or reboots it) again",
    ),
    (
        "deploy",
        "erase_devices_metadata",
        true,
        "wiping the disks' signatures twice is one wipe",
    ),
    (
        "deploy",
        "erase_devices",
        true,
        "erasing the disks twice is one erase, only slower",
    ),
    ("*", "hold", true, "waits for unhold again"),
    ("*", "power_on", true, "powers on again"),
    ("*", "power_off", true, "powers off again"),
    ("*", "reboot", true, "reboots again"),
];

/// What a takeover does with a node caught in a working state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Do the state's work again from the saved step index.
    Rerun,
    /// Fail the node with this `last_error`.
    Fail(String),
}

/// Which boot configuration a node needs on the conductor that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootConfig {
    /// The deploy ramdisk (the agent runs, or is booting).
    Ramdisk,
    /// The instance (iPXE's local-boot script).
    Instance,
}

/// Whether `step` may run again; `agent`: the node's deploy interface uses the agent.
pub fn rerunnable(interface: &str, step: &str, agent: bool) -> bool {
    match STEPS
        .iter()
        .find(|(i, s, _, _)| (*i == "*" || *i == interface) && *s == step)
    {
        Some((_, _, ok, _)) => *ok,
        None => !agent,
    }
}

/// The decision for a node in a working state; `prev` names the conductor that had it.
pub fn decide(node: &Node, agent: bool, prev: &str, me: &str) -> Resume {
    let kind = match node.provision_state {
        State::Cleaning | State::Deploying | State::Servicing => Kind::of(node.provision_state),
        // Verifying, inspecting, adopting and deleting are done again from the start:
        // each reads or sets state the same way twice.
        _ => return Resume::Rerun,
    };
    let Ok(progress) = StepProgress::load(&node.driver_internal_info) else {
        return Resume::Fail(format!(
            "Takeover: conductor {prev} stopped while the node was in \"{}\"; {me} cannot \
             read its step bookkeeping, so the node failed. Check the node and retry.",
            node.provision_state
        ));
    };
    let idx = progress.index(kind);
    let Some(step) = progress.steps(kind).and_then(|s| s.get(idx)) else {
        // Not planned yet (the agent was booting) or finishing: both are repeatable.
        return Resume::Rerun;
    };
    if rerunnable(&step.interface, &step.step, agent) {
        return Resume::Rerun;
    }
    Resume::Fail(format!(
        "Takeover: conductor {prev} stopped while {} step {}.{} was running on the node; \
         {me} took the node over, but {}.{} is not safe to run twice, so the node failed. \
         Check the node and retry.",
        kind.name(),
        step.interface,
        step.step,
        step.interface,
        step.step
    ))
}

/// The boot configuration `node` needs in its state, if any.
pub fn boot_config(node: &Node, d: &NodeDrivers) -> Option<BootConfig> {
    use State::*;
    let instance = d
        .boot
        .instance_boots_from_conductor()
        .then_some(BootConfig::Instance);
    let ramdisk = |agent: bool| agent.then_some(BootConfig::Ramdisk);
    match node.provision_state {
        Active | Servicing | ServiceWait | ServiceHold | ServiceFailed | Unrescuing
        | UnrescueFailed => instance,
        // The agent rescue interface runs the rescue in the agent ramdisk.
        Rescuing | RescueWait | Rescue | RescueFailed => {
            ramdisk(crate::drivers::rescue_interface(node) == crate::drivers::AGENT_RESCUE)
        }
        Inspecting | InspectWait => ramdisk(d.inspect.uses_agent()),
        Cleaning | CleanWait | CleanHold => ramdisk(d.deploy.uses_agent()),
        Deploying | WaitCallBack | DeployHold => {
            // Past prepare_instance_boot the node boots its disk next, not the ramdisk.
            let progress = StepProgress::load(&node.driver_internal_info).unwrap_or_default();
            let idx = progress.index(Kind::Deploy);
            let past = progress.steps(Kind::Deploy).is_some_and(|s| {
                s.iter()
                    .take(idx)
                    .any(|st| ConductorStep::of(st) == Some(ConductorStep::PrepareInstanceBoot))
            });
            if past {
                instance
            } else {
                ramdisk(d.deploy.uses_agent())
            }
        }
        _ => None,
    }
}

/// Whether a node in this state with this boot interface may need its boot configuration
/// rebuilt ([`boot_config`] decides, with the node's drivers); false for most nodes (all
/// but the ones booting or running the agent, or booting their disk through iPXE).
fn may_need_boot_config(k: &NodeKey) -> bool {
    use State::*;
    let Some(state) = crate::state::ALL_STATES
        .iter()
        .find(|s| s.as_str() == k.provision_state)
    else {
        return false;
    };
    match state {
        Active | Servicing | ServiceWait | ServiceHold | ServiceFailed | Unrescuing
        | UnrescueFailed => k.boot_interface == "ipxe",
        Inspecting | InspectWait | Cleaning | CleanWait | CleanHold | Deploying | WaitCallBack
        | DeployHold | Rescuing | RescueWait | Rescue | RescueFailed => true,
        _ => false,
    }
}

/// The names of the states in which a conductor works on a node (holding its lock).
fn working_states() -> Vec<&'static str> {
    crate::state::ALL_STATES
        .iter()
        .filter(|s| s.is_working())
        .map(|s| s.as_str())
        .collect()
}

/// What one takeover pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Locks of dead conductors broken.
    pub broken: usize,
    /// Nodes this conductor took (rebuilt, resumed or failed in the background).
    pub adopted: usize,
}

impl Conductor {
    /// One takeover pass (see the module). Work on each node runs in the background under
    /// its lock.
    pub async fn take_over(self: &Arc<Self>) -> EResult<Taken> {
        let snap = self.members(false).await?;
        let me = self.cfg.host.clone();
        let working = working_states();
        // Nodes another conductor handled last matter when membership changed; they are
        // also looked at every FULL_SCAN_EVERY passes (a conductor that restarted within
        // --dead-after, or new nodes). Locked and working nodes are looked at every time.
        let all = self.membership.full_scan_due(&snap);
        let keys = self.db.takeover_keys(&me, &working, all).await?;
        let mine: Vec<NodeKey> = keys
            .into_iter()
            .filter(|k| {
                snap.owner_of(&k.uuid, &k.group, &k.driver)
                    .is_some_and(|o| o.hostname == me)
            })
            .collect();
        let locks: Vec<(String, String)> = mine
            .iter()
            .filter_map(|k| {
                let h = k.reservation.as_ref()?;
                (h != &me && snap.is_dead(h)).then(|| (k.uuid.clone(), h.clone()))
            })
            .collect();
        let broken: HashSet<String> = self
            .db
            .break_reservations(&locks)
            .await?
            .into_iter()
            .collect();
        for (uuid, holder) in locks.iter().filter(|(u, _)| broken.contains(u)) {
            tracing::warn!(node = %uuid, dead = %holder, "broke the lock of a dead conductor");
        }
        let mut taken = Taken {
            broken: broken.len(),
            adopted: 0,
        };
        let mut relabel = vec![];
        for k in mine {
            let unlocked = k.reservation.is_none() || broken.contains(&k.uuid);
            let state_working = working.contains(&k.provision_state.as_str());
            let moved = k.conductor.as_deref() != Some(me.as_str());
            if !unlocked || !(state_working || moved) {
                continue;
            }
            let prev = k
                .reservation
                .clone()
                .or(k.conductor.clone())
                .unwrap_or_else(|| "(unknown)".into());
            if !state_working
                && (!may_need_boot_config(&k) || self.boot_config_of(&k.uuid).await?.is_none())
            {
                // Nothing to rebuild: only the `conductor` column moves (in one batch).
                relabel.push(k.uuid);
                continue;
            }
            let Ok(node) = self.lock_uuid(&k.uuid).await else {
                continue;
            };
            taken.adopted += 1;
            self.spawn_locked(node.uuid.clone(), move |me, _| async move {
                me.adopt(node, prev).await
            });
        }
        self.db.set_nodes_conductor(&relabel, &me).await?;
        Ok(taken)
    }

    /// At start: the nodes a previous run of this conductor left locked. Those the ring
    /// gives it are taken over without ever being unlocked (no other conductor, whose
    /// ring may lag a second behind, can take them meanwhile); the others are released
    /// for their owners. `broken` counts the released locks.
    pub(crate) async fn take_back(self: &Arc<Self>) -> EResult<Taken> {
        let snap = self.members(false).await?;
        let me = self.cfg.host.clone();
        let working = working_states();
        let mut taken = Taken::default();
        for k in self.db.takeover_keys(&me, &working, false).await? {
            if k.reservation.as_deref() != Some(me.as_str()) {
                continue;
            }
            let ours = snap
                .owner_of(&k.uuid, &k.group, &k.driver)
                .is_some_and(|o| o.hostname == me);
            if !ours {
                self.db.release(&k.uuid, &me).await?;
                taken.broken += 1;
                continue;
            }
            // Still locked by this conductor's name: the lock is this run's now.
            let node = self.node(&k.uuid).await?;
            taken.adopted += 1;
            let prev = me.clone();
            self.spawn_locked(node.uuid.clone(), move |me, _| async move {
                me.adopt(node, prev).await
            });
        }
        if taken.adopted + taken.broken > 0 {
            tracing::warn!(
                kept = taken.adopted,
                released = taken.broken,
                "locks left by the previous run of this conductor"
            );
        }
        Ok(taken)
    }

    /// Records a takeover in the node's history (a failure to record is only logged).
    async fn note(&self, node: &Node, event: &str) {
        let kind = super::history::event_type(node.provision_state);
        let r = super::history::record(self, node, super::history::Severity::Info, kind, event);
        if let Err(e) = r.await {
            tracing::error!(node = %node.uuid, error = %e, "cannot record the takeover in the node's history");
        }
    }

    async fn lock_uuid(&self, uuid: &str) -> EResult<Node> {
        let node = self.node(uuid).await?;
        self.lock(&node).await
    }

    async fn boot_config_of(&self, uuid: &str) -> EResult<Option<BootConfig>> {
        let node = self.node(uuid).await?;
        Ok(match self.drivers.for_node(&node) {
            Ok(d) => boot_config(&node, &d),
            Err(_) => None,
        })
    }

    /// Takes a locked node over: boot configuration rebuilt here if another conductor
    /// handled it, then a working node is resumed or failed per [`decide`].
    async fn adopt(self: &Arc<Self>, mut node: Node, prev: String) -> EResult<()> {
        let me = self.cfg.host.clone();
        let working = node.provision_state.is_working();
        let d = match self.drivers.for_node(&node) {
            Ok(d) => d,
            Err(e) => {
                node.conductor = Some(me);
                if working {
                    let msg = format!(
                        "Takeover: conductor {prev} stopped while the node was in \"{}\"; its \
                         drivers cannot be loaded here: {}",
                        node.provision_state,
                        crate::error_chain(&e)
                    );
                    return self.fail(&mut node, msg).await;
                }
                self.db.save_node(&node).await?;
                return Ok(());
            }
        };
        if node.conductor.as_deref() != Some(me.as_str()) {
            let rebuilt = match boot_config(&node, &d) {
                Some(BootConfig::Ramdisk) => d.boot.prepare_ramdisk(&node).await,
                Some(BootConfig::Instance) => d.boot.prepare_instance(&node).await,
                None => Ok(()),
            };
            node.conductor = Some(me.clone());
            if let Err(e) = rebuilt {
                let msg = format!(
                    "Takeover: {me} took the node over from conductor {prev} but cannot \
                     rebuild its boot configuration: {}",
                    crate::error_chain(&e)
                );
                if working || node.provision_state.expects_agent() {
                    return self.fail(&mut node, msg).await;
                }
                tracing::error!(node = %node.uuid, "{msg}");
            } else {
                tracing::info!(node = %node.uuid, from = %prev, state = %node.provision_state,
                               "took the node over");
            }
            self.db.save_node(&node).await?;
            if !working {
                let event = format!(
                    "Conductor {me} took the node over from {prev} in \"{}\"",
                    node.provision_state
                );
                self.note(&node, &event).await;
            }
        }
        if !working {
            return Ok(());
        }
        match decide(&node, d.deploy.uses_agent(), &prev, &me) {
            Resume::Rerun => {
                tracing::warn!(node = %node.uuid, state = %node.provision_state,
                               "resuming work interrupted on conductor {prev}");
                let event = format!(
                    "Conductor {me} took the node over from {prev} in \"{}\" and resumes \
                     its work from the step that was running",
                    node.provision_state
                );
                self.note(&node, &event).await;
                self.drive(&node.uuid).await
            }
            Resume::Fail(msg) => {
                node.target_power_state = None;
                self.fail(&mut node, msg).await
            }
        }
    }
}

/// The `conductor_group` inside a node's `extended` column text.
pub(crate) fn group_of_extended(text: &str) -> String {
    serde_json::from_str::<serde_json::Map<String, Value>>(text)
        .ok()
        .and_then(|m| {
            m.get("conductor_group")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node_at(state: State, steps: &[(&str, &str)], idx: usize) -> Node {
        let mut n = crate::api::nodes::blank_node();
        n.provision_state = state;
        let steps: Vec<Value> = steps
            .iter()
            .map(|(i, s)| json!({"interface": i, "step": s, "priority": 1}))
            .collect();
        n.driver_internal_info
            .insert("deploy_steps".into(), Value::Array(steps.clone()));
        n.driver_internal_info
            .insert("deploy_step_index".into(), json!(idx));
        n.driver_internal_info
            .insert("clean_steps".into(), Value::Array(steps));
        n.driver_internal_info
            .insert("clean_step_index".into(), json!(idx));
        n
    }

    #[test]
    fn idempotent_steps_rerun_and_others_fail_naming_the_takeover() {
        let steps = [("deploy", "deploy"), ("deploy", "write_image")];
        let n = node_at(State::Deploying, &steps, 0);
        assert_eq!(decide(&n, true, "c1", "c2"), Resume::Rerun);
        let n = node_at(State::Deploying, &steps, 1);
        match decide(&n, true, "c1", "c2") {
            Resume::Fail(m) => {
                assert!(m.starts_with("Takeover: conductor c1"), "{m}");
                assert!(m.contains("deploy.write_image") && m.contains("c2"), "{m}");
            }
            r => panic!("{r:?}"),
        }
        // Past the last step (finishing) and not yet planned: the work is done again.
        assert_eq!(
            decide(&node_at(State::Deploying, &steps, 2), true, "a", "b"),
            Resume::Rerun
        );
        let n = node_at(State::Cleaning, &[("deploy", "erase_devices_metadata")], 0);
        assert_eq!(decide(&n, true, "a", "b"), Resume::Rerun);
        let n = node_at(State::Cleaning, &[("raid", "create_configuration")], 0);
        assert!(matches!(decide(&n, true, "a", "b"), Resume::Fail(_)));
        // Without an agent, steps that are not the conductor's do nothing: repeatable.
        assert_eq!(decide(&n, false, "a", "b"), Resume::Rerun);
        assert_eq!(
            decide(&node_at(State::Verifying, &[], 0), true, "a", "b"),
            Resume::Rerun
        );
    }

    #[test]
    fn reserved_steps_repeat_on_any_interface() {
        for s in ["power_on", "power_off", "reboot", "hold"] {
            assert!(rerunnable("management", s, true), "{s}");
        }
        assert!(!rerunnable("deploy", "tear_down_agent", true));
        assert!(!rerunnable("deploy", "tear_down_agent", false));
    }

    #[test]
    fn group_is_read_lower_case_from_extended() {
        assert_eq!(group_of_extended(r#"{"conductor_group":"Rack1"}"#), "rack1");
        assert_eq!(group_of_extended("{}"), "");
        assert_eq!(group_of_extended("not json"), "");
    }
}
