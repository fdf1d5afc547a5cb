//! A power interface wrapped to time every BMC call: each call's latency and outcome goes
//! to the registry's observers (the timeline, the metrics), whatever the hardware type.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{BoxFut, DResult, DriverError, Power, PowerTarget};
use crate::model::Node;

/// Which power call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOp {
    /// Reading the power state.
    Get,
    Set(PowerTarget),
}

/// One finished power call.
pub struct PowerCall<'a> {
    /// The power interface's name (`ipmitool`, `redfish`, `fake`).
    pub interface: &'static str,
    pub op: PowerOp,
    pub elapsed: Duration,
    pub error: Option<&'a DriverError>,
}

impl PowerCall<'_> {
    /// The action as Ironic names power targets (`power on`, `rebooting`, …), or
    /// `get power state`.
    pub fn action(&self) -> String {
        match self.op {
            PowerOp::Get => "get power state".into(),
            PowerOp::Set(t) => match t {
                PowerTarget::On => "power on",
                PowerTarget::Off => "power off",
                PowerTarget::Reboot => "rebooting",
                PowerTarget::SoftOff => "soft power off",
                PowerTarget::SoftReboot => "soft rebooting",
            }
            .into(),
        }
    }
}

/// Told about every power call of every node.
pub trait PowerObserver: Send + Sync {
    fn power_call<'a>(&'a self, node: &'a Node, call: &'a PowerCall<'a>) -> BoxFut<'a, ()>;
}

/// `inner`, timed; the observers hear of each call once it ended.
pub struct Metered {
    pub inner: Arc<dyn Power>,
    pub observers: Arc<[Arc<dyn PowerObserver>]>,
}

impl Metered {
    async fn observe<T>(
        &self,
        node: &Node,
        op: PowerOp,
        call: impl std::future::Future<Output = DResult<T>>,
    ) -> DResult<T> {
        let start = Instant::now();
        let r = call.await;
        let c = PowerCall {
            interface: self.inner.name(),
            op,
            elapsed: start.elapsed(),
            error: r.as_ref().err(),
        };
        for o in self.observers.iter() {
            o.power_call(node, &c).await;
        }
        r
    }
}

impl Power for Metered {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn validate(&self, node: &Node) -> DResult<()> {
        self.inner.validate(node)
    }
    fn get_state<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<String>> {
        Box::pin(self.observe(node, PowerOp::Get, self.inner.get_state(node)))
    }
    fn set_state<'a>(&'a self, node: &'a Node, target: PowerTarget) -> BoxFut<'a, DResult<()>> {
        Box::pin(self.observe(
            node,
            PowerOp::Set(target),
            self.inner.set_state(node, target),
        ))
    }
}
