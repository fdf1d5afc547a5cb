//! `standby.*`: sync, power off and reboot (`run_image`), each of which first stops an
//! iSCSI target `iscsi.start_iscsi_target` left running; image preparation lives in
//! `commands::image`.

use std::sync::Arc;

use serde_json::Value;

use super::{blocking, CommandError, Mode, NoParams, Registry};
use crate::state::AgentState;

pub fn register(r: &mut Registry) {
    r.register(ferrite_proto::commands::SYNC, Mode::Sync, sync);
    r.register("standby.power_off", Mode::Async, power_off);
    r.register("standby.run_image", Mode::Async, run_image);
    super::image::register(r);
}

async fn sync(_: NoParams, state: Arc<AgentState>) -> Result<Value, CommandError> {
    // The deploy is over once the conductor asks for a sync: stop exporting the disk.
    super::iscsi::stop_running(&state).await;
    blocking("sync", move || {
        state
            .hooks
            .sync()
            .map_err(|e| CommandError::failed("flushing file system buffers failed", e))
    })
    .await?;
    Ok(Value::Null)
}

async fn power_off(_: NoParams, state: Arc<AgentState>) -> Result<Value, CommandError> {
    super::iscsi::stop_running(&state).await;
    blocking("power off", move || {
        state
            .hooks
            .power_off()
            .map_err(|e| CommandError::failed("powering off failed", e))
    })
    .await?;
    Ok(Value::Null)
}

async fn run_image(_: NoParams, state: Arc<AgentState>) -> Result<Value, CommandError> {
    super::iscsi::stop_running(&state).await;
    blocking("reboot", move || {
        state
            .hooks
            .reboot()
            .map_err(|e| CommandError::failed("rebooting into the instance failed", e))
    })
    .await?;
    Ok(Value::Null)
}
