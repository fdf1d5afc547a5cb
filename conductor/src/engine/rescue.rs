//! Rescue (API 1.38), as Ironic's AgentRescue and FakeRescue: `rescue` powers an active
//! node off and boots the agent ramdisk; on the agent's first heartbeat in `rescue wait`
//! the conductor sends `rescue.finalize_rescue` with the password's SHA-512 crypt hash
//! (`hashed: true`) and the node is in `rescue`. `unrescue` powers off, makes the instance
//! boot again and powers on: `active`. The password itself is never stored: only its hash,
//! in `instance_info.hashed_rescue_password` (masked in the API), removed once the agent
//! has it or the rescue failed.

use std::sync::Arc;

use ferrite_proto::commands::{FinalizeRescueParams, FINALIZE_RESCUE};
use serde_json::Value;

use super::{Conductor, EResult};
use crate::drivers::{agent, NodeDrivers, PowerTarget, FAKE_RESCUE, POWER_OFF, POWER_ON};
use crate::model::Node;
use crate::state::{Event, State};

/// `instance_info` key of the rescue password's hash while a rescue runs (Ironic's name).
pub const HASHED_PASSWORD: &str = "hashed_rescue_password";

/// The hash stored for `password`.
pub fn hash_password(password: &str) -> String {
    ferrite_proto::crypt::sha512_crypt(password, &rand::random())
}

impl Conductor {
    /// `rescuing`: the fake interface is done at once; the agent interface powers off,
    /// boots the agent ramdisk and waits for its heartbeat (`rescue wait`).
    pub(crate) async fn rescue(&self, mut node: Node, d: &NodeDrivers) -> EResult<()> {
        if crate::drivers::rescue_interface(&node) == FAKE_RESCUE {
            node.instance_info.remove(HASHED_PASSWORD);
            return self.transition(&mut node, Event::Done).await;
        }
        let booted = async {
            if !Self::keeps_power(&node) {
                d.power.set_state(&node, PowerTarget::Off).await?;
                node.power_state = Some(POWER_OFF.into());
            }
            self.boot_agent(&mut node, d).await
        }
        .await;
        if let Err(e) = booted {
            let msg = format!("Failed to rescue: {}", crate::error_chain(&e));
            return self.fail(&mut node, msg).await;
        }
        self.transition(&mut node, Event::Wait).await
    }

    /// A heartbeat in `rescue wait` (under the lock): the agent sets the password, then
    /// the node is in `rescue`.
    pub(crate) async fn finalize_rescue(&self, mut node: Node, d: &NodeDrivers) -> EResult<()> {
        let Some(hash) = node
            .instance_info
            .get(HASHED_PASSWORD)
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            let msg = "Node failed to perform rescue operation: instance_info has no \
                       hashed_rescue_password (the rescue was started elsewhere or \
                       cleaned up); rescue the node again"
                .to_string();
            return self.fail(&mut node, msg).await;
        };
        let params = FinalizeRescueParams {
            rescue_password: hash,
            hashed: true,
        };
        if let Err(e) =
            agent::run::<Value>(self.agent.as_ref(), &node, FINALIZE_RESCUE, &params).await
        {
            let msg = format!(
                "Node failed to perform rescue operation: {}",
                crate::error_chain(&e)
            );
            return self.fail(&mut node, msg).await;
        }
        self.transition(&mut node, Event::Resume).await?;
        self.clean_up_rescue(&mut node, d).await;
        node.last_error = None;
        self.transition(&mut node, Event::Done).await
    }

    /// Ironic's AgentRescue.clean_up: the password's hash leaves the node and the ramdisk
    /// boot files go (the running ramdisk is not affected). A boot interface that cannot
    /// clean up is logged: the rescue has succeeded or failed already.
    pub(crate) async fn clean_up_rescue(&self, node: &mut Node, d: &NodeDrivers) {
        node.instance_info.remove(HASHED_PASSWORD);
        if crate::drivers::rescue_interface(node) == FAKE_RESCUE {
            return;
        }
        if let Err(e) = d.boot.clean_up_ramdisk(node).await {
            tracing::error!(node = %node.uuid, error = %crate::error_chain(&e),
                            "cleaning up the rescue ramdisk's boot files failed");
        }
    }

    /// [`Conductor::clean_up_rescue`] for a node failing out of `rescuing`/`rescue wait`.
    pub(crate) async fn clean_up_failed_rescue(&self, node: &mut Node) {
        match self.drivers.for_node(node) {
            Ok(d) => self.clean_up_rescue(node, &d).await,
            Err(_) => {
                node.instance_info.remove(HASHED_PASSWORD);
            }
        }
    }

    /// `unrescuing`: the agent is forgotten, the node powered off, its instance made to
    /// boot and powered on again: `active`.
    pub(crate) async fn unrescue(&self, mut node: Node, d: &NodeDrivers) -> EResult<()> {
        self.db.clear_agent(&node.uuid).await?;
        node.agent_token = None;
        node.agent_url = None;
        node.agent_verify_ca = None;
        if crate::drivers::rescue_interface(&node) == FAKE_RESCUE {
            node.last_error = None;
            return self.transition(&mut node, Event::Done).await;
        }
        let keep = Self::keeps_power(&node);
        let r = async {
            if !keep {
                d.power.set_state(&node, PowerTarget::Off).await?;
                node.power_state = Some(POWER_OFF.into());
            }
            self.clean_up_rescue(&mut node, d).await;
            d.boot.prepare_instance(&node).await?;
            node.conductor = Some(self.cfg.host.clone());
            d.management.set_boot_device(&node, "disk", true).await?;
            let on = if keep {
                PowerTarget::Reboot
            } else {
                PowerTarget::On
            };
            d.power.set_state(&node, on).await?;
            node.power_state = Some(POWER_ON.into());
            Ok::<(), crate::drivers::DriverError>(())
        }
        .await;
        if let Err(e) = r {
            let msg = format!("Failed to unrescue: {}", crate::error_chain(&e));
            return self.fail(&mut node, msg).await;
        }
        node.last_error = None;
        self.transition(&mut node, Event::Done).await
    }

    /// Continues a node in `rescue wait` after its agent heartbeated (without the lock).
    pub(crate) async fn rescue_after_heartbeat(self: &Arc<Self>, uuid: &str) -> EResult<()> {
        let node = self.node(uuid).await?;
        let node = match self.lock(&node).await {
            Ok(n) => n,
            Err(super::EngineError::Locked { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let r = async {
            if node.provision_state != State::RescueWait {
                return Ok(());
            }
            let d = self.drivers.for_node(&node)?;
            self.finalize_rescue(node, &d).await
        }
        .await;
        self.unlock(uuid).await;
        r
    }
}
