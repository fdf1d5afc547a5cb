//! The work each working state stands for: verify, inspect, delete; clean and deploy go to
//! the steps engine, rescue and unrescue to rescue.rs. Runs under the node's lock.

use std::sync::Arc;

use super::plan::Kind;
use super::progress::StepProgress;
use super::{Conductor, EResult};
use crate::drivers::{HardwareInfo, NodeDrivers, PowerTarget};
use crate::model::{now, Node, Port};
use crate::state::{Event, State};

impl Conductor {
    /// Does the work of the node's current state until it waits or settles.
    pub(crate) async fn drive(self: &Arc<Self>, uuid: &str) -> EResult<()> {
        loop {
            let mut node = self.node(uuid).await?;
            let drivers = match self.drivers.for_node(&node) {
                Ok(d) => d,
                Err(e) => {
                    if node.provision_state.failure().is_some() {
                        self.fail(&mut node, crate::error_chain(&e)).await?;
                    }
                    return Ok(());
                }
            };
            match node.provision_state {
                State::Verifying => return self.verify(node, &drivers).await,
                State::Inspecting => return self.inspect(node, &drivers).await,
                State::Adopting => return self.transition(&mut node, Event::Done).await,
                State::Cleaning => return self.run_steps(node, &drivers, Kind::Clean).await,
                State::Deploying => return self.run_steps(node, &drivers, Kind::Deploy).await,
                State::Servicing => return self.run_steps(node, &drivers, Kind::Service).await,
                State::Rescuing => return self.rescue(node, &drivers).await,
                State::Unrescuing => return self.unrescue(node, &drivers).await,
                State::CleanWait | State::WaitCallBack | State::ServiceWait => {
                    // After unhold: the hold step is over, continue with the next one.
                    return self.resume(node, &drivers, None).await;
                }
                State::Deleting => {
                    if let Err(e) = self.tear_down(&mut node, &drivers).await {
                        let msg = format!("Undeploy failed: {}", crate::error_chain(&e));
                        return self.fail(&mut node, msg).await;
                    }
                    self.transition(&mut node, Event::Clean).await?;
                    // Loop: automated cleaning follows.
                }
                _ => return Ok(()),
            }
        }
    }

    async fn verify(&self, mut node: Node, d: &NodeDrivers) -> EResult<()> {
        let r = async {
            d.power.validate(&node)?;
            d.management.validate(&node)?;
            d.power.get_state(&node).await
        }
        .await;
        match r {
            Ok(ps) => {
                node.power_state = Some(ps);
                node.last_error = None;
                self.transition(&mut node, Event::Done).await
            }
            Err(e) => {
                let msg = format!("Failed to verify node: {}", crate::error_chain(&e));
                self.fail(&mut node, msg).await
            }
        }
    }

    async fn inspect(&self, mut node: Node, d: &NodeDrivers) -> EResult<()> {
        node.inspection_started_at = Some(now());
        node.inspection_finished_at = None;
        if !d.inspect.uses_agent() {
            // Out-of-band: the inspect interface reads the hardware from the BMC.
            match d.inspect.inspect_hardware(&node).await {
                Ok(Some(hw)) => self.store_hardware(&mut node, hw).await?,
                Ok(None) => {}
                Err(e) => {
                    let msg = format!("Failed to inspect hardware: {}", crate::error_chain(&e));
                    return self.fail(&mut node, msg).await;
                }
            }
            node.inspection_finished_at = Some(now());
            node.last_error = None;
            return self.transition(&mut node, Event::Done).await;
        }
        // A one-time token for the inspection data, handed to the ramdisk on its kernel
        // command line (`ferrite-inspection-token`): without it, or the agent token of a
        // lookup, anyone could post inspection data for a node in `inspect wait`.
        node.driver_internal_info.insert(
            super::agent_api::INSPECTION_TOKEN.into(),
            serde_json::json!(super::agent_api::new_token()),
        );
        if let Err(e) = self.boot_agent(&mut node, d).await {
            return self
                .fail(
                    &mut node,
                    format!(
                        "Failed to boot the inspection ramdisk: {}",
                        crate::error_chain(&e)
                    ),
                )
                .await;
        }
        self.transition(&mut node, Event::Wait).await
    }

    /// Records out-of-band inspection results: the properties, and a port for each MAC no
    /// port has yet (Ironic's redfish inspection creates ports the same way).
    async fn store_hardware(&self, node: &mut Node, hw: HardwareInfo) -> EResult<()> {
        node.properties.extend(hw.properties);
        for mac in hw.macs {
            let Ok(mac) = crate::model::normalize_mac(&mac) else {
                tracing::warn!(node = %node.uuid, %mac, "the BMC reports an invalid MAC; no port");
                continue;
            };
            let existing = self
                .db
                .list_ports(&crate::db::PortFilter {
                    address: Some(mac.clone()),
                    ..Default::default()
                })
                .await?;
            if existing.is_empty() {
                let port = Port {
                    id: 0,
                    uuid: uuid::Uuid::new_v4().to_string(),
                    address: mac,
                    node_uuid: node.uuid.clone(),
                    pxe_enabled: true,
                    extra: Default::default(),
                    local_link_connection: Default::default(),
                    physical_network: None,
                    extended: Default::default(),
                    created_at: now(),
                    updated_at: None,
                };
                self.db.insert_port(&port).await?;
            }
        }
        Ok(())
    }

    /// Makes the node boot the agent (PXE, or the boot interface's device): forget the last
    /// agent, prepare, power cycle.
    pub(crate) async fn boot_agent(
        &self,
        node: &mut Node,
        d: &NodeDrivers,
    ) -> Result<(), crate::drivers::DriverError> {
        self.db.clear_agent(&node.uuid).await?;
        d.boot.prepare_ramdisk(node).await?;
        // Its boot files are on this conductor's disk now (takeover.rs reads this).
        node.conductor = Some(self.cfg.host.clone());
        d.management
            .set_boot_device(node, d.boot.ramdisk_boot_device(), false)
            .await?;
        if node.power_state.as_deref() == Some(crate::drivers::POWER_ON) {
            // Off first, then forget the old agent once more: an agent still running (a
            // fast-track agent that had not heartbeated yet, just done inspecting) can look
            // the node up between the first clear and a reboot, and take the token the new
            // agent then never gets (seen in `bench e2e`: the new agent waited forever).
            d.power.set_state(node, PowerTarget::Off).await?;
            node.power_state = Some(crate::drivers::POWER_OFF.into());
            self.db.clear_agent(&node.uuid).await?;
        }
        d.power.set_state(node, PowerTarget::On).await?;
        node.power_state = Some(crate::drivers::POWER_ON.into());
        Ok(())
    }

    /// Powers off and removes the instance (the `deleting` work).
    async fn tear_down(
        &self,
        node: &mut Node,
        d: &NodeDrivers,
    ) -> Result<(), crate::drivers::DriverError> {
        if !Self::keeps_power(node) {
            d.power.set_state(node, PowerTarget::Off).await?;
            node.power_state = Some(crate::drivers::POWER_OFF.into());
        }
        d.boot.clean_up_ramdisk(node).await?;
        node.instance_info.clear();
        node.instance_uuid = None;
        // As Ironic: the node's allocation ends with its instance.
        if let Some(a) = node.extended.remove("allocation_uuid") {
            if let Some(uuid) = a.as_str() {
                if let Err(e) = self.db.delete_resource(crate::db::ALLOCATIONS, uuid).await {
                    tracing::error!(node = %node.uuid, allocation = uuid,
                                    error = %crate::error_chain(&e), "deleting the allocation");
                }
            }
        }
        node.deploy_step.clear();
        StepProgress::edit(&mut node.driver_internal_info, |p| {
            p.user_deploy_steps = None;
            p.manual_clean = false;
            p.user_clean_steps = None;
            p.reset(Kind::Deploy);
            p.reset(Kind::Clean);
        })?;
        Ok(())
    }
}
