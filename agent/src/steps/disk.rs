//! The generic manager's disk steps: `erase_devices_metadata`, `erase_devices` (clean)
//! and `write_image` (deploy). They act only on disks the safety gate lets through.

use std::path::PathBuf;
use std::sync::Arc;

use ferrite_proto::image::ImageInfo;
use serde_json::{json, Map, Value};

use super::StepKind;
use crate::disk::safety::Choice;
use crate::install;
use crate::job::{blocking, CommandError, CommandFuture};
use crate::state::AgentState;

/// Start one of the generic disk steps; `None` for other steps.
pub fn execute(
    kind: StepKind,
    step: &str,
    args: Map<String, Value>,
    state: Arc<AgentState>,
) -> Option<CommandFuture> {
    match (kind, step) {
        (StepKind::Clean, "erase_devices_metadata") => Some(Box::pin(erase(state, args, false))),
        (StepKind::Clean, "erase_devices") => Some(Box::pin(erase(state, args, true))),
        (StepKind::Deploy, "write_image") => Some(Box::pin(write_image(state, args))),
        _ => None,
    }
}

/// The disks a clean step works on: the named target, or every disk in the ramdisk.
fn disks(state: &AgentState) -> Result<Vec<(PathBuf, Choice)>, CommandError> {
    if let Some(p) = &state.config.target_disk {
        return Ok(vec![(p.clone(), Choice::Explicit)]);
    }
    let inv = crate::inventory::collect(&state.config.root)
        .map_err(|e| CommandError::failed_msg(format!("cannot list the disks: {e:#}")))?;
    Ok(inv
        .disks
        .into_iter()
        .map(|d| (PathBuf::from(d.name), Choice::Discovered))
        .collect())
}

pub use super::erase::erase_disk;

async fn erase(
    state: Arc<AgentState>,
    args: Map<String, Value>,
    full: bool,
) -> Result<Value, CommandError> {
    let force = args.get("force").and_then(Value::as_bool).unwrap_or(false);
    let targets = disks(&state)?;
    let done = blocking("erasing disks", move || {
        targets
            .iter()
            .map(|(p, c)| erase_disk(p, *c, full, force))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(json!({ "erased": done }))
}

async fn write_image(
    state: Arc<AgentState>,
    args: Map<String, Value>,
) -> Result<Value, CommandError> {
    let info: ImageInfo = match args.get("image_info") {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| CommandError::invalid_params("step.args.image_info", e.to_string()))?,
        None => {
            return Err(CommandError::invalid_params(
                "step.args.image_info",
                "missing",
            ))
        }
    };
    let configdrive = args
        .get("configdrive")
        .and_then(Value::as_str)
        .map(str::to_owned);
    install::write_image(state, info, configdrive, None).await
}
