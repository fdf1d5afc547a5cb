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
