//! The `redfish` hardware type: power, management (boot device and mode) and out-of-band
//! inspection over ferrite-redfish, with Ironic's `driver_info` keys (`redfish_address`,
//! `redfish_system_id`, `redfish_username`, `redfish_password`, `redfish_verify_ca`,
//! `redfish_auth_type`). One client (and session) per BMC and credentials is kept; power
//! changes wait until the BMC reports the new state, bounded by
//! `driver_info.ferrite_power_wait` seconds (default 60, Ironic's power_state_change_timeout).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ferrite_redfish::{
    BootMode, BootOverride, BootSource, Client, PowerAction, PowerState, PowerWait,
    RedfishDriverInfo, SystemRef,
};
use serde_json::{json, Value};

use super::*;

pub(crate) fn info(node: &Node) -> DResult<RedfishDriverInfo> {
    RedfishDriverInfo::parse(&Value::Object(node.driver_info.clone()))
        .map_err(DriverError::RedfishInfo)
}

/// Clients by BMC and credentials, and the system path of each (BMC, system id).
pub struct RedfishClients {
    wait: PowerWait,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    systems: Mutex<HashMap<String, SystemRef>>,
}

impl RedfishClients {
    pub fn new(wait: PowerWait) -> RedfishClients {
        RedfishClients {
            wait,
            clients: Mutex::new(HashMap::new()),
            systems: Mutex::new(HashMap::new()),
        }
    }

    /// The node's client and system (found once, then remembered).
    pub(crate) async fn system(&self, node: &Node) -> DResult<(Arc<Client>, SystemRef)> {
        let info = info(node)?;
        let key = format!(
            "{}|{}|{}|{:?}|{:?}",
            info.address, info.username, info.password, info.verify, info.auth
        );
        let existing = self
            .clients
            .lock()
            .expect("not poisoned")
            .get(&key)
            .cloned();
        let client = match existing {
            Some(c) => c,
            None => {
                let c = Arc::new(Client::new(info.client_config()).map_err(DriverError::Redfish)?);
                self.clients
                    .lock()
                    .expect("not poisoned")
                    .insert(key.clone(), c.clone());
                c
            }
        };
        let skey = format!("{key}|{:?}", info.system_id);
        let known = self
            .systems
            .lock()
            .expect("not poisoned")
            .get(&skey)
            .cloned();
        let sys = match known {
            Some(s) => s,
            None => {
                let s = client
                    .find_system(info.system_id.as_deref())
                    .await
                    .map_err(DriverError::Redfish)?;
                self.systems
                    .lock()
                    .expect("not poisoned")
                    .insert(skey, s.clone());
                s
            }
        };
        Ok((client, sys))
    }

    fn wait(&self, node: &Node) -> PowerWait {
        let mut wait = self.wait;
        if let Some(t) = super::power_wait_override(node) {
            wait.timeout = t;
        }
        wait
    }
}

pub struct RedfishPower(pub Arc<RedfishClients>);

impl Power for RedfishPower {
    fn name(&self) -> &'static str {
        "redfish"
    }
    fn validate(&self, node: &Node) -> DResult<()> {
        info(node).map(|_| ())
    }
    fn get_state<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<String>> {
        Box::pin(async move {
            let (client, sys) = self.0.system(node).await?;
            // As Ironic: a transition counts as the state it goes to.
            match client
                .power_state(&sys)
                .await
                .map_err(DriverError::Redfish)?
            {
                PowerState::On | PowerState::PoweringOn => Ok(POWER_ON.into()),
                PowerState::Off | PowerState::PoweringOff => Ok(POWER_OFF.into()),
                other => Err(DriverError::invalid(format!(
                    "the BMC reports power state {other} for {}, which is neither on nor off",
                    sys.path
                ))),
            }
        })
    }
    fn set_state<'a>(&'a self, node: &'a Node, target: PowerTarget) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move {
            let (client, sys) = self.0.system(node).await?;
            let action = match target {
                PowerTarget::On => PowerAction::On,
                PowerTarget::Off => PowerAction::Off,
                PowerTarget::Reboot => PowerAction::Reboot,
                PowerTarget::SoftOff => PowerAction::SoftOff,
                PowerTarget::SoftReboot => PowerAction::SoftReboot,
            };
            client
                .set_power(&sys, action, self.0.wait(node))
                .await
                .map(|_| ())
                .map_err(DriverError::Redfish)
        })
    }
}

pub struct RedfishManagement(pub Arc<RedfishClients>);

/// Ironic's boot device names → `BootSourceOverrideTarget`.
const BOOT_DEVICES: &[(&str, BootSource)] = &[
    ("pxe", BootSource::Pxe),
    ("disk", BootSource::Hdd),
    ("cdrom", BootSource::Cd),
    ("bios", BootSource::BiosSetup),
    ("uefi-http", BootSource::UefiHttp),
];
const BOOT_DEVICE_NAMES: &[&str] = &["pxe", "disk", "cdrom", "bios", "uefi-http"];

/// The node's explicit boot mode (`capabilities: boot_mode:uefi|bios`), if it has one;
/// without it the BMC's mode is left alone.
fn boot_mode(node: &Node) -> Option<BootMode> {
    match node.capability("boot_mode")?.as_str() {
        "uefi" => Some(BootMode::Uefi),
        "bios" => Some(BootMode::Legacy),
        _ => None,
    }
}

impl Management for RedfishManagement {
    fn name(&self) -> &'static str {
        "redfish"
    }
    fn validate(&self, node: &Node) -> DResult<()> {
        info(node).map(|_| ())
    }
    fn supported_boot_devices(&self) -> &'static [&'static str] {
        BOOT_DEVICE_NAMES
    }
    fn set_boot_device<'a>(
        &'a self,
        node: &'a Node,
        device: &'a str,
        persistent: bool,
    ) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move {
            let target = BOOT_DEVICES
                .iter()
                .find(|(n, _)| *n == device)
                .map(|(_, t)| *t)
                .ok_or_else(|| {
                    DriverError::Invalid(format!(
                        "boot device {device:?} is not supported; choose one of: {}",
                        BOOT_DEVICE_NAMES.join(", ")
                    ))
                })?;
            let (client, sys) = self.0.system(node).await?;
            client
                .set_boot(
                    &sys,
                    BootOverride {
                        target,
                        persistent,
                        mode: boot_mode(node),
                    },
                )
                .await
                .map_err(DriverError::Redfish)
        })
    }
}

/// Out-of-band inspection: properties and NIC MACs from the BMC, no ramdisk.
pub struct RedfishInspect(pub Arc<RedfishClients>);

impl Inspect for RedfishInspect {
    fn name(&self) -> &'static str {
        "redfish"
    }
    fn validate(&self, node: &Node) -> DResult<()> {
        info(node).map(|_| ())
    }
    fn uses_agent(&self) -> bool {
        false
    }
    fn inspect_hardware<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<Option<HardwareInfo>>> {
        Box::pin(async move {
            let (client, sys) = self.0.system(node).await?;
            let inv = client.inventory(&sys).await.map_err(DriverError::Redfish)?;
            let mut properties = serde_json::Map::new();
            let mut missing = Vec::new();
            match inv.cpus {
                Some(n) => {
                    properties.insert("cpus".into(), json!(n));
                }
                None => missing.push("cpus"),
            }
            match &inv.cpu_arch {
                Some(a) => {
                    properties.insert("cpu_arch".into(), json!(a));
                }
                None => missing.push("cpu_arch"),
            }
            match inv.memory_mb {
                Some(m) => {
                    properties.insert("memory_mb".into(), json!(m));
                }
                None => missing.push("memory_mb"),
            }
            // Ironic's rule: the largest disk in GiB, minus one for partitioning.
            match inv.disks.iter().map(|d| d.size_bytes).max() {
                Some(b) => {
                    properties.insert(
                        "local_gb".into(),
                        json!((b / (1024 * 1024 * 1024)).saturating_sub(1)),
                    );
                }
                None => missing.push("local_gb"),
            }
            if !missing.is_empty() {
                tracing::warn!(node = %node.uuid, ?missing,
                    "the BMC does not report every property; those keep their values");
            }
            Ok(Some(HardwareInfo {
                properties,
                macs: inv.nics.into_iter().map(|n| n.mac).collect(),
            }))
        })
    }
}

/// `redfish`: Redfish power, management and out-of-band inspection (the default), iPXE
/// and virtual-media boot (when the conductor serves boot files), the agent's `direct`
/// deploy; the agent inspection and the fake boot, deploy and inspect interfaces stay
/// selectable.
pub fn hardware_type(wait: PowerWait, ipxe: Option<Arc<super::ipxe::IpxeBoot>>) -> HardwareType {
    let clients = Arc::new(RedfishClients::new(wait));
    let mut boot: Vec<Arc<dyn Boot>> = Vec::new();
    if let Some(ipxe) = ipxe {
        boot.push(Arc::new(super::vmedia::VirtualMediaBoot {
            settings: ipxe.settings.clone(),
            db: ipxe.db.clone(),
            clients: clients.clone(),
        }));
        boot.insert(0, ipxe);
    }
    boot.push(Arc::new(super::fake::FakeBoot));
    HardwareType {
        name: "redfish",
        power: vec![Arc::new(RedfishPower(clients.clone()))],
        management: vec![Arc::new(RedfishManagement(clients.clone()))],
        boot,
        deploy: vec![
            Arc::new(super::agent::DirectDeploy),
            Arc::new(super::iscsi::IscsiDeploy),
            Arc::new(super::fake::FakeDeploy),
        ],
        inspect: vec![
            Arc::new(RedfishInspect(clients)),
            Arc::new(super::agent::AgentInspect),
            Arc::new(super::fake::FakeInspect),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_boot_device_name_maps() {
        assert_eq!(
            BOOT_DEVICES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            BOOT_DEVICE_NAMES
        );
    }
}
