//! Hardware interfaces as traits (STYLE.md §4): power, management, boot, deploy, inspect.
//! A hardware type (`fake-hardware`) names the implementations a node may use.

pub mod agent;
pub mod fake;
pub mod ipmi;
pub mod ipxe;
pub mod iscsi;
pub mod iscsi_disk;
pub mod metered;
pub mod redfish;
pub mod scripted_agent;
pub mod vmedia;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ferrite_proto::steps::Step;

use crate::model::Node;
pub use metered::{PowerCall, PowerObserver, PowerOp};

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a driver call failed. The message says what failed; the cause is the source
/// (render with [`crate::error_chain`]).
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The node's settings (or the request) cannot work; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// An operation failed for a reason below it.
    #[error("{what}")]
    Failed {
        what: String,
        #[source]
        source: BoxError,
    },
    #[error("storage error")]
    Db(#[from] crate::db::DbError),
    #[error("invalid IPMI driver_info")]
    IpmiInfo(#[source] ferrite_ipmi::DriverInfoError),
    #[error(transparent)]
    Bmc(ferrite_ipmi::ClientError),
    #[error(transparent)]
    Power(ferrite_ipmi::PowerError),
    #[error("invalid Redfish driver_info")]
    RedfishInfo(#[source] ferrite_redfish::DriverInfoError),
    #[error(transparent)]
    Redfish(ferrite_redfish::RedfishError),
    #[error(transparent)]
    BootFiles(#[from] ferrite_netboot::files::FilesError),
    #[error(transparent)]
    BootScript(#[from] ferrite_netboot::ipxe::ScriptError),
    #[error(transparent)]
    Agent(#[from] agent::AgentCallError),
    #[error(transparent)]
    Iscsi(#[from] iscsi::IscsiError),
}

impl DriverError {
    pub fn invalid(message: impl Into<String>) -> Self {
        DriverError::Invalid(message.into())
    }
    pub fn failed(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        DriverError::Failed {
            what: what.into(),
            source: source.into(),
        }
    }
}

pub type DResult<T> = Result<T, DriverError>;

pub const POWER_ON: &str = "power on";
pub const POWER_OFF: &str = "power off";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerTarget {
    On,
    Off,
    Reboot,
    /// An ACPI shutdown request, then wait for off (Ironic's "soft power off").
    SoftOff,
    /// A graceful restart (Ironic's "soft rebooting").
    SoftReboot,
}

impl PowerTarget {
    pub fn parse(s: &str) -> Option<PowerTarget> {
        match s {
            "power on" => Some(PowerTarget::On),
            "power off" => Some(PowerTarget::Off),
            "rebooting" | "reboot" => Some(PowerTarget::Reboot),
            "soft power off" => Some(PowerTarget::SoftOff),
            "soft rebooting" => Some(PowerTarget::SoftReboot),
            _ => None,
        }
    }
    /// The power state a node is in once this target is reached.
    pub fn result(self) -> &'static str {
        match self {
            PowerTarget::Off | PowerTarget::SoftOff => POWER_OFF,
            _ => POWER_ON,
        }
    }
}

pub trait Power: Send + Sync {
    fn name(&self) -> &'static str;
    fn validate(&self, node: &Node) -> DResult<()>;
    fn get_state<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<String>>;
    fn set_state<'a>(&'a self, node: &'a Node, target: PowerTarget) -> BoxFut<'a, DResult<()>>;
}

pub trait Management: Send + Sync {
    fn name(&self) -> &'static str;
    fn validate(&self, node: &Node) -> DResult<()>;
    fn supported_boot_devices(&self) -> &'static [&'static str];
    fn set_boot_device<'a>(
        &'a self,
        node: &'a Node,
        device: &'a str,
        persistent: bool,
    ) -> BoxFut<'a, DResult<()>>;
    /// Injects a non-maskable interrupt; `None` when the interface cannot (Ironic's
    /// `UnsupportedDriverExtension`).
    fn inject_nmi<'a>(&'a self, _node: &'a Node) -> Option<BoxFut<'a, DResult<()>>> {
        None
    }
}

pub trait Boot: Send + Sync {
    fn name(&self) -> &'static str;
    fn validate(&self, node: &Node) -> DResult<()>;
    /// Makes the next network boot load the agent ramdisk.
    fn prepare_ramdisk<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<()>>;
    /// The boot device the ramdisk boots from once prepared (a one-time override).
    fn ramdisk_boot_device(&self) -> &'static str {
        "pxe"
    }
    fn clean_up_ramdisk<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<()>>;
    /// Makes the next boot start the deployed instance.
    fn prepare_instance<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<()>>;
    /// Whether the deployed instance boots through files this conductor serves (iPXE's
    /// local-boot script), which a conductor taking the node over must rebuild.
    fn instance_boots_from_conductor(&self) -> bool {
        false
    }
}

pub trait Deploy: Send + Sync {
    fn name(&self) -> &'static str;
    fn validate(&self, node: &Node) -> DResult<()>;
    /// Whether deploy and clean run through the agent ramdisk.
    fn uses_agent(&self) -> bool;
    /// The `deploy.write_image` step: puts the image of `instance_info` on the node's
    /// disk, or starts an agent command that does.
    fn write_image<'a>(
        &'a self,
        agent: &'a dyn agent::AgentApi,
        node: &'a mut Node,
    ) -> BoxFut<'a, DResult<agent::Progress>>;
    /// The conductor's own deploy steps (agent steps are merged in later).
    fn deploy_steps(&self) -> Vec<Step>;
    /// The conductor's own clean steps.
    fn clean_steps(&self) -> Vec<Step>;
    /// Whether the agent wrote the image itself, so a partition image gets its boot loader
    /// from the agent (`image.install_bootloader`), as Ironic's direct deploy does.
    fn agent_installs_bootloader(&self) -> bool {
        false
    }
}

pub trait Inspect: Send + Sync {
    fn name(&self) -> &'static str;
    fn validate(&self, node: &Node) -> DResult<()>;
    /// Whether inspection boots the agent and waits for its inventory.
    fn uses_agent(&self) -> bool;
    /// Out-of-band inspection (interfaces without the agent): properties and NIC MACs read
    /// from the BMC. `None`: nothing to record.
    fn inspect_hardware<'a>(
        &'a self,
        _node: &'a Node,
    ) -> BoxFut<'a, DResult<Option<HardwareInfo>>> {
        Box::pin(async { Ok(None) })
    }
}

/// What out-of-band inspection found: properties to set (`cpus`, `memory_mb`, `cpu_arch`,
/// `local_gb`) and the MACs of the node's NICs (a port is created for each new one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HardwareInfo {
    pub properties: serde_json::Map<String, serde_json::Value>,
    pub macs: Vec<String>,
}

/// A hardware type: which implementations of each interface a node may pick, with defaults
/// first.
pub struct HardwareType {
    pub name: &'static str,
    pub power: Vec<Arc<dyn Power>>,
    pub management: Vec<Arc<dyn Management>>,
    pub boot: Vec<Arc<dyn Boot>>,
    pub deploy: Vec<Arc<dyn Deploy>>,
    pub inspect: Vec<Arc<dyn Inspect>>,
}

/// The interfaces one node uses.
pub struct NodeDrivers {
    pub power: Arc<dyn Power>,
    pub management: Arc<dyn Management>,
    pub boot: Arc<dyn Boot>,
    pub deploy: Arc<dyn Deploy>,
    pub inspect: Arc<dyn Inspect>,
}

fn pick<T: ?Sized>(
    list: &[Arc<T>],
    wanted: &str,
    name: impl Fn(&T) -> &'static str,
    kind: &str,
) -> DResult<Arc<T>> {
    list.iter()
        .find(|i| name(i) == wanted)
        .cloned()
        .ok_or_else(|| {
            let names: Vec<&str> = list.iter().map(|i| name(i)).collect();
            DriverError::Invalid(format!(
                "{kind} interface {wanted:?} is not supported by this hardware type; \
                 choose one of: {}",
                names.join(", ")
            ))
        })
}

impl HardwareType {
    pub fn defaults(&self) -> [(&'static str, &'static str); 5] {
        [
            ("power_interface", self.power[0].name()),
            ("management_interface", self.management[0].name()),
            ("boot_interface", self.boot[0].name()),
            ("deploy_interface", self.deploy[0].name()),
            ("inspect_interface", self.inspect[0].name()),
        ]
    }

    /// The implementations `node` names, or which one is unknown.
    pub fn for_node(&self, node: &Node) -> DResult<NodeDrivers> {
        Ok(NodeDrivers {
            power: pick(&self.power, &node.power_interface, |i| i.name(), "power")?,
            management: pick(
                &self.management,
                &node.management_interface,
                |i| i.name(),
                "management",
            )?,
            boot: pick(&self.boot, &node.boot_interface, |i| i.name(), "boot")?,
            deploy: pick(&self.deploy, &node.deploy_interface, |i| i.name(), "deploy")?,
            inspect: pick(
                &self.inspect,
                &node.inspect_interface,
                |i| i.name(),
                "inspect",
            )?,
        })
    }

    /// Interface name lists, for `GET /v1/drivers/{name}`.
    pub fn interfaces(&self) -> BTreeMap<&'static str, Vec<&'static str>> {
        let mut m = BTreeMap::new();
        m.insert("power", self.power.iter().map(|i| i.name()).collect());
        m.insert(
            "management",
            self.management.iter().map(|i| i.name()).collect(),
        );
        m.insert("boot", self.boot.iter().map(|i| i.name()).collect());
        m.insert("deploy", self.deploy.iter().map(|i| i.name()).collect());
        m.insert("inspect", self.inspect.iter().map(|i| i.name()).collect());
        m
    }
}

/// Every hardware type this conductor offers.
pub struct Registry {
    pub types: Vec<HardwareType>,
    /// Told about every power call (timeline, metrics): the power interface a node gets
    /// from [`Registry::for_node`] is wrapped when there are any.
    pub observers: Arc<[Arc<dyn PowerObserver>]>,
}

impl Registry {
    /// The hardware types; `ipxe` (and, for `redfish`, `redfish-virtual-media`) is offered
    /// when the conductor has a boot directory.
    pub fn standard(ipxe: Option<Arc<ipxe::IpxeBoot>>) -> Registry {
        let boot = ipxe.clone().map(|b| b as Arc<dyn Boot>);
        Registry {
            types: vec![
                fake::hardware_type(boot.clone()),
                ipmi::hardware_type(ipmi::IpmiSettings::default(), boot),
                redfish::hardware_type(ferrite_redfish::PowerWait::default(), ipxe),
            ],
            observers: Arc::new([]),
        }
    }

    pub fn get(&self, name: &str) -> Option<&HardwareType> {
        self.types.iter().find(|t| t.name == name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.types.iter().map(|t| t.name).collect()
    }

    pub fn for_node(&self, node: &Node) -> DResult<NodeDrivers> {
        let hw = self.get(&node.driver).ok_or_else(|| {
            DriverError::Invalid(format!(
                "driver {:?} is not loaded; available: {}",
                node.driver,
                self.names().join(", ")
            ))
        })?;
        let mut d = hw.for_node(node)?;
        if !self.observers.is_empty() {
            d.power = Arc::new(metered::Metered {
                inner: d.power,
                observers: self.observers.clone(),
            });
        }
        Ok(d)
    }
}

/// The steps the conductor itself runs (CONTRACT.md §8); any other step of an agent
/// deploy runs on the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConductorStep {
    /// `deploy.deploy`: boot the agent (or, without one, power on).
    Deploy,
    /// `deploy.write_image`: the deploy interface's [`Deploy::write_image`].
    WriteImage,
    /// `deploy.prepare_instance_boot`: boot from disk next.
    PrepareInstanceBoot,
    /// `deploy.tear_down_agent`: flush the disk and power off.
    TearDownAgent,
    /// `deploy.boot_instance`: power on into the instance.
    BootInstance,
    /// `deploy.hold`: wait for `unhold`.
    Hold,
}

impl ConductorStep {
    const ALL: [(ConductorStep, &'static str); 6] = [
        (ConductorStep::Deploy, "deploy"),
        (ConductorStep::WriteImage, "write_image"),
        (ConductorStep::PrepareInstanceBoot, "prepare_instance_boot"),
        (ConductorStep::TearDownAgent, "tear_down_agent"),
        (ConductorStep::BootInstance, "boot_instance"),
        (ConductorStep::Hold, "hold"),
    ];

    /// The conductor step `s` names, if it is one (all are on the deploy interface).
    pub fn of(s: &Step) -> Option<ConductorStep> {
        if s.interface != "deploy" {
            return None;
        }
        Self::ALL
            .iter()
            .find(|(_, name)| *name == s.step)
            .map(|(c, _)| *c)
    }

    /// This step with `priority`.
    pub fn with_priority(self, priority: i32) -> Step {
        let name = Self::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, n)| *n)
            .unwrap_or("hold");
        step("deploy", name, priority)
    }
}

/// The conductor-side deploy steps of an agent-based deploy (CONTRACT.md §8).
pub fn agent_deploy_steps() -> Vec<Step> {
    [
        (ConductorStep::Deploy, 100),
        (ConductorStep::WriteImage, 80),
        (ConductorStep::PrepareInstanceBoot, 60),
        (ConductorStep::TearDownAgent, 40),
        (ConductorStep::BootInstance, 20),
    ]
    .into_iter()
    .map(|(s, priority)| s.with_priority(priority))
    .collect()
}

pub fn step(interface: &str, name: &str, priority: i32) -> Step {
    Step {
        interface: interface.into(),
        step: name.into(),
        priority,
        args: Default::default(),
        abortable: false,
        reboot_requested: false,
    }
}

/// The rescue interfaces (node field `rescue_interface`, API 1.38): `no-rescue` (the
/// default, as Ironic's), `agent` (Ironic's AgentRescue: the agent ramdisk boots and sets
/// the rescue user's password) and `fake` (fake-hardware only, Ironic's FakeRescue: the
/// node is rescued at once).
pub const NO_RESCUE: &str = "no-rescue";
pub const AGENT_RESCUE: &str = "agent";
pub const FAKE_RESCUE: &str = "fake";

/// The node's rescue interface.
pub fn rescue_interface(node: &Node) -> &str {
    node.extended
        .get("rescue_interface")
        .and_then(|v| v.as_str())
        .unwrap_or(NO_RESCUE)
}

/// Whether `node` can be rescued with its rescue interface and the other interfaces `d`.
pub fn validate_rescue(node: &Node, d: &NodeDrivers) -> DResult<()> {
    match rescue_interface(node) {
        AGENT_RESCUE if d.deploy.uses_agent() => d.boot.validate(node),
        AGENT_RESCUE => Err(DriverError::invalid(format!(
            "rescue interface \"agent\" boots the agent ramdisk, which deploy interface {:?} \
             does not use: set deploy_interface to direct (or iscsi)",
            d.deploy.name()
        ))),
        FAKE_RESCUE if node.driver == "fake-hardware" => Ok(()),
        FAKE_RESCUE => Err(DriverError::invalid(format!(
            "rescue interface \"fake\" is only offered by fake-hardware, not {}: use \"agent\"",
            node.driver
        ))),
        // Ironic's UnsupportedDriverExtension.
        _ => Err(DriverError::invalid(format!(
            "Driver {} does not support rescue (disabled or not implemented): set \
             rescue_interface to \"agent\"",
            node.driver
        ))),
    }
}

/// `driver_info.ferrite_power_wait` (seconds, a number or a numeric string, clamped to
/// 1–3600): how long a BMC power change is waited for, for every hardware type.
pub fn power_wait_override(node: &Node) -> Option<std::time::Duration> {
    let secs = node.driver_info.get("ferrite_power_wait").and_then(|v| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    })?;
    Some(std::time::Duration::from_secs_f64(secs.clamp(1.0, 3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conductor_steps_are_named_once() {
        for s in agent_deploy_steps() {
            let c = ConductorStep::of(&s).expect("a conductor step");
            assert_eq!(c.with_priority(s.priority), s);
        }
        assert_eq!(
            ConductorStep::of(&step("deploy", "hold", 0)),
            Some(ConductorStep::Hold)
        );
        assert_eq!(
            ConductorStep::of(&step("deploy", "erase_devices", 10)),
            None
        );
        assert_eq!(ConductorStep::of(&step("bios", "write_image", 80)), None);
    }
}
