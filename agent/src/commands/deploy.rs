//! `deploy.get_deploy_steps` and `deploy.execute_deploy_step`, dispatched to the hardware
//! managers (see `steps`).

use std::sync::Arc;

use ferrite_proto::commands::{EXECUTE_DEPLOY_STEP, GET_DEPLOY_STEPS};
use serde_json::Value;

use super::clean::{check_step, run_step, ExecuteStepParams, GetStepsParams};
use super::{CommandError, Mode, Registry};
use crate::state::AgentState;
use crate::steps::{self, StepKind};

pub fn register(r: &mut Registry) {
    r.register(GET_DEPLOY_STEPS, Mode::Sync, get_deploy_steps);
    r.register_checked(
        EXECUTE_DEPLOY_STEP,
        Mode::Async,
        check_step,
        execute_deploy_step,
    );
}

async fn get_deploy_steps(
    p: GetStepsParams,
    state: Arc<AgentState>,
) -> Result<Value, CommandError> {
    super::clean::cache_node(&state, p.node);
    Ok(steps::steps_result(&state.managers, StepKind::Deploy))
}

async fn execute_deploy_step(
    p: ExecuteStepParams,
    state: Arc<AgentState>,
) -> Result<Value, CommandError> {
    run_step(p, state, StepKind::Deploy).await
}
