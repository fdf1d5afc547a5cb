//! `standby.prepare_image` (async: check `image_info`, then `install::write_image`) and
//! `standby.get_partition_uuids`.

use std::sync::Arc;

use ferrite_proto::commands::{PrepareImageParams, GET_PARTITION_UUIDS, PREPARE_IMAGE};
use serde_json::{json, Value};

use super::{CommandError, Mode, NoParams, Registry};
use crate::install::write_image;
use crate::state::AgentState;

pub fn register(r: &mut Registry) {
    r.register_checked(PREPARE_IMAGE, Mode::Async, check_image_info, prepare_image);
    r.register(GET_PARTITION_UUIDS, Mode::Sync, get_partition_uuids);
}

/// What can be refused before the write starts (answered 400, nothing stored).
fn check_image_info(p: &PrepareImageParams) -> Result<(), CommandError> {
    let info = &p.image_info;
    match info.image_type.as_deref() {
        None | Some("whole-disk") | Some("partition") => {}
        Some(other) => {
            return Err(CommandError::invalid_params(
                "image_info.image_type",
                format!("{other:?} is not an image type: use whole-disk or partition"),
            ))
        }
    }
    if info.urls.is_empty() {
        return Err(CommandError::invalid_params(
            "image_info.urls",
            "at least one URL is required",
        ));
    }
    if info.preserve_ephemeral == Some(true) {
        // Writing the partition table again would lose the ephemeral partition's data.
        return Err(CommandError::invalid_params(
            "image_info.preserve_ephemeral",
            "keeping the ephemeral partition across a rebuild is not supported by this agent; \
             copy its data off and rebuild without preserve_ephemeral",
        ));
    }
    Ok(())
}

/// Runs after [`check_image_info`].
async fn prepare_image(
    p: PrepareImageParams,
    state: Arc<AgentState>,
) -> Result<Value, CommandError> {
    let mut info = p.image_info;
    info.image_type.get_or_insert_with(|| "whole-disk".into());
    write_image(state, info, p.configdrive, None).await
}

async fn get_partition_uuids(_: NoParams, state: Arc<AgentState>) -> Result<Value, CommandError> {
    let v = state
        .partition_uuids
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(v.unwrap_or_else(|| json!({})))
}
