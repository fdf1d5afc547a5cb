//! The generic manager's disk steps: `erase_devices_metadata`, `erase_devices` (clean)
//! and `write_image` (deploy). They act only on disks the safety gate lets through.

use std::path::PathBuf;
use std::sync::Arc;

use ferrite_proto::image::ImageInfo;
use serde_json::{json, Map, Value};

use super::StepKind;
use crate::disk::hints::{Exclusion, Hints};
use crate::disk::safety::Choice;
use crate::install;
use crate::job::{blocking, CommandError, CommandFuture};
use crate::state::AgentState;
use ferrite_proto::inventory::Disk;

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
        (StepKind::Deploy | StepKind::Service, "write_image") => {
            Some(Box::pin(write_image(state, args)))
        }
        _ => None,
    }
}

/// A disk a clean step leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub disk: String,
    pub why: String,
}

/// The disks a clean step works on: the named target, or every disk in the ramdisk but
/// removable media (not the server's storage), the paths of a multipath device (erased
/// once, through the device itself) and those `properties.skip_block_devices` names (IPA's
/// list of root-device-hint objects; `volume_name` entries are RAID volumes, not disks).
/// The disks to erase (with how they were chosen) and those left alone.
type ErasePlan = (Vec<(PathBuf, Choice)>, Vec<Skipped>);

fn disks(state: &AgentState) -> Result<ErasePlan, CommandError> {
    if let Some(p) = &state.config.target_disk {
        return Ok((vec![(p.clone(), Choice::Explicit)], vec![]));
    }
    let inv = crate::inventory::collect(&state.config.root)
        .map_err(|e| CommandError::failed_msg(format!("cannot list the disks: {e:#}")))?;
    let node = state.cached_node();
    let skip_hints = node
        .as_ref()
        .and_then(|n| n.get("properties"))
        .and_then(|p| p.get("skip_block_devices"));
    let root = state.config.root.clone();
    let (keep, skipped) = plan_erase(inv.disks, skip_hints, |d| {
        crate::inventory::install_exclusion(&root, d)
    })?;
    Ok((
        keep.into_iter()
            .map(|d| (PathBuf::from(d.name), Choice::Discovered))
            .collect(),
        skipped,
    ))
}

/// Splits `disks` into those to erase and those skipped (see [`disks`]). USB disks that
/// are not removable media are erased: they may be the server's own storage.
pub fn plan_erase(
    disks: Vec<Disk>,
    skip_block_devices: Option<&Value>,
    excluded: impl Fn(&Disk) -> Option<Exclusion>,
) -> Result<(Vec<Disk>, Vec<Skipped>), CommandError> {
    let bad = |why: String| CommandError::invalid_params("node.properties.skip_block_devices", why);
    let hints: Vec<Hints> = match skip_block_devices {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .filter(|h| h.get("volume_name").is_none())
            .map(|h| {
                let obj = h
                    .as_object()
                    .ok_or_else(|| bad(format!("{h} is not an object of root device hints")))?;
                Hints::parse(obj).map_err(|e| bad(e.to_string()))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(bad(format!("{other} is not a list"))),
    };
    let mut keep = vec![];
    let mut skipped = vec![];
    for d in disks {
        let why = match excluded(&d) {
            Some(e @ (Exclusion::Removable | Exclusion::MultipathPath(_))) => Some(e.to_string()),
            _ if hints.iter().any(|h| !h.is_empty() && h.matches(&d)) => {
                Some("named by properties.skip_block_devices".to_string())
            }
            _ => None,
        };
        match why {
            Some(why) => {
                tracing::info!(disk = %d.name, %why, "not erasing");
                skipped.push(Skipped { disk: d.name, why });
            }
            None => keep.push(d),
        }
    }
    Ok((keep, skipped))
}

pub use super::erase::erase_disk;

async fn erase(
    state: Arc<AgentState>,
    args: Map<String, Value>,
    full: bool,
) -> Result<Value, CommandError> {
    let force = args.get("force").and_then(Value::as_bool).unwrap_or(false);
    let (targets, skipped) = disks(&state)?;
    let done = blocking("erasing disks", move || {
        targets
            .iter()
            .map(|(p, c)| erase_disk(p, *c, full, force))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(json!({ "erased": done, "skipped": skipped }))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, serial: &str) -> Disk {
        Disk {
            name: name.into(),
            serial: Some(serial.into()),
            size: 10 << 30,
            ..Disk::default()
        }
    }

    /// Issue 15 finding 9: removable media and multipath paths are never erased (the
    /// multipath device is, once), nor what skip_block_devices names; a USB disk that is
    /// not removable is erased.
    #[test]
    fn erase_plan_skips_removable_paths_and_the_skip_list() {
        let disks = vec![
            disk("/dev/sda", "OS"),
            disk("/dev/sdb", "CARD"),
            disk("/dev/sdc", "P1"),
            disk("/dev/sdd", "P2"),
            disk("/dev/dm-0", "MPATH"),
            disk("/dev/sde", "KEEP-ME"),
            disk("/dev/sdf", "USB-HDD"),
        ];
        let why = |d: &Disk| match d.name.as_str() {
            "/dev/sdb" => Some(Exclusion::Removable),
            "/dev/sdc" | "/dev/sdd" => Some(Exclusion::MultipathPath("/dev/dm-0".into())),
            "/dev/sdf" => Some(Exclusion::Usb),
            _ => None,
        };
        let skip = serde_json::json!([{"serial": "KEEP-ME"}, {"volume_name": "raid-a"}]);
        let (keep, skipped) = plan_erase(disks, Some(&skip), why).unwrap();
        let kept: Vec<&str> = keep.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(kept, ["/dev/sda", "/dev/dm-0", "/dev/sdf"]);
        let skipped: Vec<(&str, &str)> = skipped
            .iter()
            .map(|s| (s.disk.as_str(), s.why.as_str()))
            .collect();
        assert_eq!(
            skipped,
            [
                ("/dev/sdb", "removable media"),
                ("/dev/sdc", "a path of multipath device /dev/dm-0"),
                ("/dev/sdd", "a path of multipath device /dev/dm-0"),
                ("/dev/sde", "named by properties.skip_block_devices"),
            ]
        );
        for bad in [
            serde_json::json!("sda"),
            serde_json::json!([{"colour": "red"}]),
        ] {
            let e = plan_erase(vec![disk("/dev/sda", "A")], Some(&bad), |_| None).unwrap_err();
            assert!(e.to_string().contains("skip_block_devices"), "{e}");
        }
    }
}
