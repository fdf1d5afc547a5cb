//! `service.get_service_steps` and `service.execute_service_step` (IPA's `service`
//! extension, for Ironic's servicing of active nodes), dispatched to the hardware managers
//! like the clean and deploy steps (see `steps`).

use std::sync::Arc;

use ferrite_proto::commands::{EXECUTE_SERVICE_STEP, GET_SERVICE_STEPS};
use serde_json::Value;

use super::clean::{check_step, run_step, ExecuteStepParams, GetStepsParams};
use super::{CommandError, Mode, Registry};
use crate::state::AgentState;
use crate::steps::{self, StepKind};

pub fn register(r: &mut Registry) {
    r.register(GET_SERVICE_STEPS, Mode::Sync, get_service_steps);
    r.register_checked(
        EXECUTE_SERVICE_STEP,
        Mode::Async,
        check_step,
        execute_service_step,
    );
}

async fn get_service_steps(
    p: GetStepsParams,
    state: Arc<AgentState>,
) -> Result<Value, CommandError> {
    super::clean::cache_node(&state, p.node);
    Ok(steps::steps_result(&state.managers, StepKind::Service))
}

async fn execute_service_step(
    p: ExecuteStepParams,
    state: Arc<AgentState>,
) -> Result<Value, CommandError> {
    run_step(p, state, StepKind::Service).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{AgentConfig, HardwareManager, RecordingHooks};
    use ferrite_proto::agent::CommandStatus;
    use ferrite_proto::steps::Step;
    use serde_json::{json, Map};

    /// A vendor manager with one service step that answers at once.
    struct Burnin;
    impl HardwareManager for Burnin {
        fn class_name(&self) -> &str {
            "BurninManager"
        }
        fn name(&self) -> &str {
            "burnin"
        }
        fn version(&self) -> &str {
            "1.0"
        }
        fn steps(&self, kind: StepKind) -> Vec<Step> {
            match kind {
                StepKind::Service => vec![Step {
                    interface: "deploy".into(),
                    step: "burnin_noop".into(),
                    priority: 0,
                    args: Map::new(),
                    abortable: false,
                    reboot_requested: false,
                }],
                _ => vec![],
            }
        }
        fn execute_step(
            &self,
            kind: StepKind,
            step: &str,
            args: Map<String, Value>,
            _state: Arc<AgentState>,
        ) -> Option<crate::commands::CommandFuture> {
            (kind == StepKind::Service && step == "burnin_noop")
                .then(|| Box::pin(async move { Ok(json!({"ran_with": args})) }) as _)
        }
    }

    fn state() -> Arc<AgentState> {
        Arc::new(AgentState::with_parts(
            AgentConfig::default(),
            Arc::new(RecordingHooks::new()),
            Registry::standard(),
            vec![Arc::new(Burnin), Arc::new(steps::GenericHardwareManager)],
        ))
    }

    async fn run(
        s: &Arc<AgentState>,
        name: &str,
        params: Value,
    ) -> ferrite_proto::agent::CommandResult {
        let started =
            crate::commands::execute(s.clone(), name.into(), params.as_object().unwrap().clone())
                .await
                .unwrap();
        started.entry.wait().await
    }

    #[tokio::test]
    async fn service_steps_are_listed_by_manager_as_ipa_does() {
        let s = state();
        let r = run(&s, GET_SERVICE_STEPS, json!({"node": {}, "ports": []})).await;
        assert_eq!(r.command_name, "get_service_steps");
        let v = r.command_result.unwrap();
        assert_eq!(
            v["service_steps"]["BurninManager"][0]["step"],
            "burnin_noop"
        );
        assert_eq!(
            v["service_steps"]["GenericHardwareManager"],
            json!([{"interface": "deploy", "step": "write_image", "priority": 0,
                    "args": {}, "abortable": false, "reboot_requested": false}])
        );
        assert_eq!(
            v["hardware_manager_version"],
            json!({"burnin": "1.0", "generic_hardware_manager": "1.2"})
        );
        assert!(v.get("clean_steps").is_none() && v.get("deploy_steps").is_none());
    }

    #[tokio::test]
    async fn a_service_step_runs_and_reports_ipa_keys() {
        let s = state();
        let step = json!({"interface": "deploy", "step": "burnin_noop", "priority": 0,
                          "args": {"minutes": 1}});
        let r = run(
            &s,
            EXECUTE_SERVICE_STEP,
            json!({"step": step, "node": {}, "ports": [],
                   "service_version": {"burnin": "1.0", "generic_hardware_manager": "1.2"}}),
        )
        .await;
        assert_eq!(r.command_status, CommandStatus::Succeeded, "{r:?}");
        assert_eq!(r.command_name, "execute_service_step");
        assert_eq!(
            r.command_result.unwrap(),
            json!({"service_result": {"ran_with": {"minutes": 1}}, "service_step": step})
        );

        // Another agent version than the conductor saw: IPA's version mismatch.
        let r = run(
            &s,
            EXECUTE_SERVICE_STEP,
            json!({"step": step, "node": {}, "ports": [],
                   "service_version": {"burnin": "0.9"}}),
        )
        .await;
        assert_eq!(r.command_status, CommandStatus::VersionMismatch, "{r:?}");

        // A step nobody implements fails, naming it.
        let r = run(
            &s,
            EXECUTE_SERVICE_STEP,
            json!({"step": {"interface": "raid", "step": "apply_configuration"},
                   "node": {}, "ports": []}),
        )
        .await;
        assert_eq!(r.command_status, CommandStatus::Failed);
        let err = r.command_error.unwrap().to_string();
        assert!(
            err.contains("no hardware manager implements the service step"),
            "{err}"
        );
    }
}
