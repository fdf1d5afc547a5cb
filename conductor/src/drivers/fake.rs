//! `fake-hardware`: every interface succeeds at once. `driver_info.fake_delay` (seconds,
//! ≤ 60) slows power and boot-device calls, and `driver_info.fake_fail` = `"power"` makes
//! power calls fail, so tests can catch a node mid-step or in a failure. `deploy_interface
//! = direct` or `iscsi` and `inspect_interface = agent` (drivers::agent, drivers::iscsi)
//! use a real agent with fake power.

use std::sync::Arc;
use std::time::Duration;

use ferrite_proto::steps::Step;

use super::agent::{AgentApi, AgentInspect, DirectDeploy, Progress};
use super::iscsi::IscsiDeploy;
use super::*;

async fn delay(node: &Node) {
    let secs = node
        .driver_info
        .get("fake_delay")
        .and_then(|v| {
            v.as_f64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0.0)
        .clamp(0.0, 60.0);
    if secs > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    }
}

fn fails(node: &Node, what: &str) -> DResult<()> {
    match node.driver_info.get("fake_fail").and_then(|v| v.as_str()) {
        Some(w) if w == what => Err(DriverError::Invalid(format!(
            "fake {what} failure requested by driver_info.fake_fail"
        ))),
        _ => Ok(()),
    }
}

pub struct FakePower;
impl Power for FakePower {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn validate(&self, _node: &Node) -> DResult<()> {
        Ok(())
    }
    fn get_state<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<String>> {
        Box::pin(async move {
            fails(node, "power")?;
            Ok(node.power_state.clone().unwrap_or_else(|| POWER_OFF.into()))
        })
    }
    fn set_state<'a>(&'a self, node: &'a Node, _t: PowerTarget) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move {
            delay(node).await;
            fails(node, "power")
        })
    }
}

pub struct FakeManagement;
impl Management for FakeManagement {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn validate(&self, _node: &Node) -> DResult<()> {
        Ok(())
    }
    fn supported_boot_devices(&self) -> &'static [&'static str] {
        &["pxe", "disk", "cdrom", "bios", "safe"]
    }
    fn set_boot_device<'a>(
        &'a self,
        node: &'a Node,
        device: &'a str,
        _persistent: bool,
    ) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move {
            if !self.supported_boot_devices().contains(&device) {
                return Err(DriverError::Invalid(format!(
                    "boot device {device:?} is not supported; choose one of: {}",
                    self.supported_boot_devices().join(", ")
                )));
            }
            delay(node).await;
            fails(node, "management")
        })
    }
}

pub struct FakeBoot;
impl Boot for FakeBoot {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn validate(&self, _node: &Node) -> DResult<()> {
        Ok(())
    }
    fn prepare_ramdisk<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move { fails(node, "boot") })
    }
    fn clean_up_ramdisk<'a>(&'a self, _node: &'a Node) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move { Ok(()) })
    }
    fn prepare_instance<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move { fails(node, "boot") })
    }
}

/// Deploys and cleans instantly without an agent (Ironic's `fake` deploy).
pub struct FakeDeploy;
impl Deploy for FakeDeploy {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn validate(&self, _node: &Node) -> DResult<()> {
        Ok(())
    }
    fn uses_agent(&self) -> bool {
        false
    }
    fn write_image<'a>(
        &'a self,
        _agent: &'a dyn AgentApi,
        _node: &'a mut Node,
    ) -> BoxFut<'a, DResult<Progress>> {
        Box::pin(async { Ok(Progress::Done) })
    }
    fn deploy_steps(&self) -> Vec<Step> {
        vec![ConductorStep::Deploy.with_priority(100)]
    }
    fn clean_steps(&self) -> Vec<Step> {
        vec![]
    }
}

pub struct FakeInspect;
impl Inspect for FakeInspect {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn validate(&self, _node: &Node) -> DResult<()> {
        Ok(())
    }
    fn uses_agent(&self) -> bool {
        false
    }
}

/// `fake-hardware`; `ipxe` is an optional boot interface (fake stays the default).
pub fn hardware_type(ipxe: Option<Arc<dyn Boot>>) -> HardwareType {
    let mut boot: Vec<Arc<dyn Boot>> = vec![Arc::new(FakeBoot)];
    boot.extend(ipxe);
    HardwareType {
        name: "fake-hardware",
        power: vec![Arc::new(FakePower)],
        management: vec![Arc::new(FakeManagement)],
        boot,
        deploy: vec![
            Arc::new(FakeDeploy),
            Arc::new(DirectDeploy),
            Arc::new(IscsiDeploy),
        ],
        inspect: vec![Arc::new(FakeInspect), Arc::new(AgentInspect)],
    }
}
