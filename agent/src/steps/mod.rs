//! Hardware managers offering clean and deploy steps (IPA's model): a list of managers,
//! best first; a step runs on the first manager that implements it.

pub mod disk;
pub mod erase;

use std::collections::BTreeSet;
use std::sync::Arc;

use ferrite_proto::steps::{Step, StepsByManager, StepsResult};
use serde_json::{Map, Value};

use crate::job::{CommandError, CommandFuture};
use crate::state::AgentState;

pub use crate::state::HardwareManager;
pub use ferrite_proto::steps::StepKind;

/// IPA's generic manager: disk erasure (clean) and image writing (deploy), implemented
/// in `steps::disk`.
#[derive(Debug, Default)]
pub struct GenericHardwareManager;

impl GenericHardwareManager {
    pub const NAME: &'static str = "generic_hardware_manager";
    /// IPA's generic manager version; Ironic compares it between steps.
    pub const VERSION: &'static str = "1.2";
}

fn step(name: &str, priority: i32, abortable: bool) -> Step {
    Step {
        interface: "deploy".to_string(),
        step: name.to_string(),
        priority,
        args: Map::new(),
        abortable,
        reboot_requested: false,
    }
}

impl HardwareManager for GenericHardwareManager {
    fn class_name(&self) -> &str {
        "GenericHardwareManager"
    }
    fn name(&self) -> &str {
        Self::NAME
    }
    fn version(&self) -> &str {
        Self::VERSION
    }
    fn steps(&self, kind: StepKind) -> Vec<Step> {
        match kind {
            StepKind::Clean => vec![
                step("erase_devices", 10, true),
                step("erase_devices_metadata", 99, true),
            ],
            // IPA advertises write_image with priority 0 and Ironic proxies it through
            // its own out-of-band step of priority 80; our conductor merges agent steps by
            // priority (CONTRACT.md §8), so the agent states the real priority.
            StepKind::Deploy => vec![step("write_image", 80, false)],
            // IPA's generic manager offers write_image for servicing too (priority 0: run
            // only when asked); RAID and burn-in steps are not implemented here.
            StepKind::Service => vec![step("write_image", 0, false)],
        }
    }
    fn execute_step(
        &self,
        kind: StepKind,
        step: &str,
        args: Map<String, Value>,
        state: Arc<AgentState>,
    ) -> Option<CommandFuture> {
        disk::execute(kind, step, args, state)
    }
}

/// The managers of a standard agent, best first.
pub fn default_managers() -> Vec<Arc<dyn HardwareManager>> {
    vec![Arc::new(GenericHardwareManager)]
}

/// `{"<clean|deploy|service>_steps": {"<Class>": [steps]}, "hardware_manager_version": {...}}`;
/// a step offered by several managers is kept only for the first (best) one.
pub fn steps_result(managers: &[Arc<dyn HardwareManager>], kind: StepKind) -> Value {
    let mut seen = BTreeSet::new();
    let mut by_manager = StepsByManager::new();
    for manager in managers {
        let steps: Vec<Step> = manager
            .steps(kind)
            .into_iter()
            .filter(|s| seen.insert((s.interface.clone(), s.step.clone())))
            .collect();
        by_manager.insert(manager.class_name().to_string(), steps);
    }
    let result = StepsResult::new(kind, by_manager, current_versions(managers));
    serde_json::to_value(result).unwrap_or(Value::Null)
}

/// Start `step` on the first manager that implements it.
pub fn start_step(
    state: &Arc<AgentState>,
    kind: StepKind,
    step: &str,
    args: Map<String, Value>,
) -> Result<CommandFuture, CommandError> {
    for manager in &state.managers {
        if let Some(future) = manager.execute_step(kind, step, args.clone(), state.clone()) {
            return Ok(future);
        }
    }
    Err(CommandError::failed_msg(format!(
        "no hardware manager implements the {} step {step:?}",
        kind.name()
    )))
}

/// `{name: version}` of every manager.
pub fn current_versions(managers: &[Arc<dyn HardwareManager>]) -> Map<String, Value> {
    managers
        .iter()
        .map(|m| (m.name().to_string(), Value::String(m.version().to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Vendor;
    impl HardwareManager for Vendor {
        fn class_name(&self) -> &str {
            "VendorManager"
        }
        fn name(&self) -> &str {
            "vendor"
        }
        fn version(&self) -> &str {
            "3.0"
        }
        fn steps(&self, _kind: StepKind) -> Vec<Step> {
            vec![
                step("erase_devices", 50, true),
                step("firmware_update", 0, false),
            ]
        }
    }

    #[test]
    fn generic_steps_in_ipa_shape() {
        let v = steps_result(&default_managers(), StepKind::Clean);
        let steps = &v["clean_steps"]["GenericHardwareManager"];
        assert_eq!(steps.as_array().unwrap().len(), 2);
        assert_eq!(steps[1]["step"], "erase_devices_metadata");
        assert_eq!(steps[1]["priority"], 99);
        assert_eq!(steps[1]["interface"], "deploy");
        assert_eq!(
            v["hardware_manager_version"],
            json!({"generic_hardware_manager": "1.2"})
        );
        let d = steps_result(&default_managers(), StepKind::Deploy);
        assert_eq!(
            d["deploy_steps"]["GenericHardwareManager"][0]["step"],
            "write_image"
        );
        assert_eq!(
            d["deploy_steps"]["GenericHardwareManager"][0]["priority"],
            80
        );
    }

    #[test]
    fn best_manager_wins_duplicates() {
        let managers: Vec<Arc<dyn HardwareManager>> =
            vec![Arc::new(Vendor), Arc::new(GenericHardwareManager)];
        let v = steps_result(&managers, StepKind::Clean);
        assert_eq!(
            v["clean_steps"]["VendorManager"].as_array().unwrap().len(),
            2
        );
        let generic = v["clean_steps"]["GenericHardwareManager"]
            .as_array()
            .unwrap();
        assert_eq!(generic.len(), 1);
        assert_eq!(generic[0]["step"], "erase_devices_metadata");
        assert_eq!(v["hardware_manager_version"]["vendor"], "3.0");
    }
}
