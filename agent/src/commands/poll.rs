//! `poll.get_hardware_info`: the hardware inventory (CONTRACT.md §4).

use std::sync::Arc;

use serde_json::Value;

use super::{blocking, CommandError, Mode, NoParams, Registry};
use crate::state::AgentState;

pub fn register(r: &mut Registry) {
    r.register("poll.get_hardware_info", Mode::Sync, get_hardware_info);
}

async fn get_hardware_info(_: NoParams, state: Arc<AgentState>) -> Result<Value, CommandError> {
    blocking("hardware inventory", move || {
        let root = &state.config.root;
        let inventory = crate::inventory::collect_with(root, state.config.lldp).map_err(|e| {
            CommandError::failed(
                format!("collecting the hardware inventory under {}", root.display()),
                e,
            )
        })?;
        serde_json::to_value(&inventory)
            .map_err(|e| CommandError::failed("serialising the hardware inventory", e))
    })
    .await
}
