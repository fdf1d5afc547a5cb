//! `system.lockdown`: as in IPA, stop serving the API and heartbeating, then bring the
//! network down (the ramdisk runner does that through `SystemHooks::lockdown_network`).

use std::sync::Arc;

use serde_json::Value;

use super::{CommandError, Mode, NoParams, Registry};
use crate::state::AgentState;

pub fn register(r: &mut Registry) {
    r.register("system.lockdown", Mode::Sync, lockdown);
}

async fn lockdown(_: NoParams, state: Arc<AgentState>) -> Result<Value, CommandError> {
    tracing::warn!("system.lockdown: refusing further commands, stopping the API");
    state.lock_down();
    Ok(Value::Null)
}
