//! `clean.get_clean_steps` and `clean.execute_clean_step`, dispatched to the hardware
//! managers (see `steps`).

use std::sync::Arc;

pub use ferrite_proto::commands::{ExecuteStepParams, GetStepsParams};
use ferrite_proto::commands::{EXECUTE_CLEAN_STEP, GET_CLEAN_STEPS};
use ferrite_proto::steps::ExecuteStepResult;
use serde_json::{Map, Value};

use super::{CommandError, Mode, Registry};
use crate::state::AgentState;
use crate::steps::{self, StepKind};

pub fn register(r: &mut Registry) {
    r.register(GET_CLEAN_STEPS, Mode::Sync, get_clean_steps);
    r.register_checked(
        EXECUTE_CLEAN_STEP,
        Mode::Async,
        check_step,
        execute_clean_step,
    );
}

async fn get_clean_steps(p: GetStepsParams, state: Arc<AgentState>) -> Result<Value, CommandError> {
    cache_node(&state, p.node);
    Ok(steps::steps_result(&state.managers, StepKind::Clean))
}

async fn execute_clean_step(
    p: ExecuteStepParams,
    state: Arc<AgentState>,
) -> Result<Value, CommandError> {
    run_step(p, state, StepKind::Clean).await
}

/// Keeps the node a step command was sent with (IPA's `hardware.cache_node`); an empty
/// one (`{}`) does not replace what the lookup said.
pub(crate) fn cache_node(state: &AgentState, node: Map<String, Value>) {
    if !node.is_empty() {
        state.cache_node(node);
    }
}

/// Shared by clean and deploy: checks the step and the manager versions, then runs it.
/// The step's own fields, checked before the command starts (answered 400, nothing
/// stored): `step.step` a non-empty string, `step.args` an object when given.
pub(super) fn check_step(p: &ExecuteStepParams) -> Result<(), CommandError> {
    step_name_and_args(p).map(|_| ())
}

fn step_name_and_args(p: &ExecuteStepParams) -> Result<(String, Map<String, Value>), CommandError> {
    let name = match p.step.get("step") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(CommandError::invalid_params(
                "step.step",
                "missing or not a string",
            ))
        }
    };
    let args = match p.step.get("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(CommandError::invalid_params(
                "step.args",
                "must be an object",
            ))
        }
    };
    Ok((name, args))
}

/// Shared by clean, deploy and service: checks the manager versions, then runs the step.
pub(super) async fn run_step(
    p: ExecuteStepParams,
    state: Arc<AgentState>,
    kind: StepKind,
) -> Result<Value, CommandError> {
    // As IPA's execute_*_step: the node sent with the step is the one whose root device
    // hints apply.
    cache_node(&state, p.node.clone());
    let (name, args) = step_name_and_args(&p)?;
    let seen = p
        .clean_version
        .as_ref()
        .or(p.deploy_version.as_ref())
        .or(p.service_version.as_ref());
    if let Some(seen) = seen {
        let current = steps::current_versions(&state.managers);
        if *seen != current {
            return Err(CommandError::VersionMismatch {
                agent: Value::Object(current),
                conductor: Value::Object(seen.clone()),
            });
        }
    }
    let result = steps::start_step(&state, kind, &name, args)?.await?;
    // IPA's shape: the step's result and the step that ran, which Ironic compares with
    // the node's current step.
    Ok(serde_json::to_value(ExecuteStepResult::new(kind, p.step, result)).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The node cached from the lookup applies when a command brings none, and a step's
    /// node replaces it; an empty step node does not.
    #[test]
    fn the_cached_node_is_the_lookups_until_a_step_brings_one() {
        let state = AgentState::new(
            crate::state::AgentConfig::default(),
            Arc::new(crate::state::RecordingHooks::new()),
        );
        let lookup = ferrite_proto::lookup::LookupNode {
            uuid: "u".into(),
            properties: json!({"root_device": {"serial": "FROM-LOOKUP"}})
                .as_object()
                .unwrap()
                .clone(),
            instance_info: Map::new(),
            driver_internal_info: Map::new(),
        };
        crate::heartbeat::AgentLink::set_node(&state, &lookup);
        let cached = state.cached_node();
        assert_eq!(
            crate::install::root_device_hints(cached.as_ref()).unwrap()["serial"],
            "FROM-LOOKUP"
        );
        cache_node(&state, Map::new());
        assert!(crate::install::root_device_hints(state.cached_node().as_ref()).is_some());
        let step_node = json!({"instance_info": {"root_device": {"serial": "FROM-STEP"}}});
        cache_node(&state, step_node.as_object().unwrap().clone());
        assert_eq!(
            crate::install::root_device_hints(state.cached_node().as_ref()).unwrap()["serial"],
            "FROM-STEP"
        );
    }
}
