//! The `ipmi` hardware type: power and management (`ipmitool` interfaces, named as in
//! Ironic) over ferrite-ipmi's native lanplus client. One session per BMC is kept and
//! reused; power changes wait until the BMC reports the new state, bounded by
//! `driver_info.ferrite_power_wait` seconds (default 60, Ironic's power_state_change_timeout).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrite_ipmi::{
    set_power, BootDevice, BootOptions, Client, IpmiDriverInfo, PowerAction, PowerState, PowerWait,
};
use serde_json::Value;

use super::*;

/// Per-request bounds of the IPMI client (each request: `attempts` × `timeout`).
#[derive(Debug, Clone, Copy)]
pub struct IpmiSettings {
    pub timeout: Duration,
    pub attempts: u32,
    pub wait: PowerWait,
}

impl Default for IpmiSettings {
    fn default() -> Self {
        IpmiSettings {
            timeout: Duration::from_secs(1),
            attempts: 3,
            wait: PowerWait::default(),
        }
    }
}

/// Clients by BMC and credentials, so repeated calls reuse one session.
pub struct IpmiClients {
    settings: IpmiSettings,
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

fn info(node: &Node) -> DResult<IpmiDriverInfo> {
    IpmiDriverInfo::parse(&Value::Object(node.driver_info.clone())).map_err(DriverError::IpmiInfo)
}

impl IpmiClients {
    pub fn new(settings: IpmiSettings) -> IpmiClients {
        IpmiClients {
            settings,
            clients: Mutex::new(HashMap::new()),
        }
    }

    async fn client(&self, node: &Node) -> DResult<Arc<Client>> {
        let info = info(node)?;
        let key = format!(
            "{}|{}|{}|{}|{:?}|{:?}",
            info.host, info.port, info.username, info.password, info.cipher_suite, info.privilege
        );
        if let Some(c) = self.clients.lock().expect("not poisoned").get(&key) {
            return Ok(c.clone());
        }
        let cfg = info
            .client_config(self.settings.timeout, self.settings.attempts)
            .await
            .map_err(DriverError::IpmiInfo)?;
        let client = Arc::new(Client::new(cfg));
        self.clients
            .lock()
            .expect("not poisoned")
            .insert(key, client.clone());
        Ok(client)
    }

    fn wait(&self, node: &Node) -> PowerWait {
        let mut wait = self.settings.wait;
        if let Some(t) = super::power_wait_override(node) {
            wait.timeout = t;
        }
        wait
    }
}

pub struct IpmiPower(pub Arc<IpmiClients>);

impl Power for IpmiPower {
    fn name(&self) -> &'static str {
        "ipmitool"
    }
    fn validate(&self, node: &Node) -> DResult<()> {
        info(node).map(|_| ())
    }
    fn get_state<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<String>> {
        Box::pin(async move {
            let client = self.0.client(node).await?;
            match client.power_state().await {
                Ok(PowerState::On) => Ok(POWER_ON.into()),
                Ok(PowerState::Off) => Ok(POWER_OFF.into()),
                Err(e) => Err(DriverError::Bmc(e)),
            }
        })
    }
    fn set_state<'a>(&'a self, node: &'a Node, target: PowerTarget) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move {
            let client = self.0.client(node).await?;
            let wait = self.0.wait(node);
            let action = match target {
                PowerTarget::On => PowerAction::On,
                PowerTarget::Off => PowerAction::Off,
                PowerTarget::Reboot => PowerAction::Reboot,
                PowerTarget::SoftOff => PowerAction::SoftOff,
                PowerTarget::SoftReboot => {
                    // IPMI has no graceful restart: an ACPI shutdown, then power on.
                    set_power(&client, PowerAction::SoftOff, wait)
                        .await
                        .map_err(DriverError::Power)?;
                    PowerAction::On
                }
            };
            set_power(&client, action, wait)
                .await
                .map(|_| ())
                .map_err(DriverError::Power)
        })
    }
}

pub struct IpmiManagement(pub Arc<IpmiClients>);

const BOOT_DEVICES: &[&str] = &["pxe", "disk", "cdrom", "bios", "safe"];

impl Management for IpmiManagement {
    fn name(&self) -> &'static str {
        "ipmitool"
    }
    fn validate(&self, node: &Node) -> DResult<()> {
        info(node).map(|_| ())
    }
    fn supported_boot_devices(&self) -> &'static [&'static str] {
        BOOT_DEVICES
    }
    fn set_boot_device<'a>(
        &'a self,
        node: &'a Node,
        device: &'a str,
        persistent: bool,
    ) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move {
            let dev = BootDevice::parse(device)
                .filter(|_| BOOT_DEVICES.contains(&device))
                .ok_or_else(|| {
                    DriverError::Invalid(format!(
                        "boot device {device:?} is not supported; choose one of: {}",
                        BOOT_DEVICES.join(", ")
                    ))
                })?;
            let client = self.0.client(node).await?;
            client
                .set_boot_options(BootOptions {
                    device: dev,
                    persistent,
                    // Ironic's ipmitool driver sets the EFI flag unless the node says bios.
                    uefi: node.boot_mode() == "uefi",
                    valid: true,
                })
                .await
                .map_err(DriverError::Bmc)
        })
    }
    /// Chassis control "pulse diagnostic interrupt", what Ironic's `ipmitool power diag` sends.
    fn inject_nmi<'a>(&'a self, node: &'a Node) -> Option<BoxFut<'a, DResult<()>>> {
        Some(Box::pin(async move {
            let client = self.0.client(node).await?;
            client
                .chassis_control(ferrite_ipmi::ChassisControl::DiagnosticInterrupt)
                .await
                .map_err(DriverError::Bmc)
        }))
    }
}

/// `ipmi`: IPMI power and management, iPXE boot (when the conductor serves boot files),
/// the agent's `direct` deploy and agent inspection by default; the fake boot, deploy and
/// inspect interfaces stay selectable.
pub fn hardware_type(settings: IpmiSettings, ipxe: Option<Arc<dyn Boot>>) -> HardwareType {
    let clients = Arc::new(IpmiClients::new(settings));
    let mut boot: Vec<Arc<dyn Boot>> = ipxe.into_iter().collect();
    boot.push(Arc::new(super::fake::FakeBoot));
    HardwareType {
        name: "ipmi",
        power: vec![Arc::new(IpmiPower(clients.clone()))],
        management: vec![Arc::new(IpmiManagement(clients))],
        boot,
        deploy: vec![
            Arc::new(super::agent::DirectDeploy),
            Arc::new(super::iscsi::IscsiDeploy),
            Arc::new(super::fake::FakeDeploy),
        ],
        inspect: vec![
            Arc::new(super::agent::AgentInspect),
            Arc::new(super::fake::FakeInspect),
        ],
    }
}
