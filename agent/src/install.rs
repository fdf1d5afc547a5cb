//! Installing an image on this machine, as a job of the agent: the target disk (the
//! configured one, the root device hints' pick, or IPA's default), the write with progress
//! published to the running command and the heartbeat, the config drive, and the partition
//! UUIDs recorded for `standby.get_partition_uuids`. Shared by the `standby.prepare_image`
//! command and the `write_image` deploy step.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferrite_image::disk::gpt::{self, Table};
use ferrite_image::http::HttpConfig;
use ferrite_image::{Outcome, Progress};
use ferrite_proto::commands::PrepareImageResult;
use ferrite_proto::image::ImageInfo;
use serde_json::{json, Map, Value};

use crate::disk::hints;
use crate::disk::safety::Choice;
use crate::image::deploy::{self, TargetDisk};
use crate::image::partition;
use crate::job::{blocking, CommandError};
use crate::state::{AgentProgress, AgentState};

/// The disk to write: the one named in the agent's configuration (tests, standalone), or
/// the one the node's root device hints name (`instance_info.root_device`, else
/// `properties.root_device`, as IPA), or IPA's default pick, which skips USB, removable
/// media and multipath paths. `node` is the node a command was sent with; without one the
/// node cached from the lookup or the last step command applies.
pub fn target_disk(
    state: &AgentState,
    node: Option<&Map<String, Value>>,
) -> Result<TargetDisk, CommandError> {
    if let Some(path) = &state.config.target_disk {
        return Ok(TargetDisk {
            path: path.clone(),
            choice: Choice::Explicit,
        });
    }
    let inventory = crate::inventory::collect(&state.config.root)
        .map_err(|e| CommandError::failed_msg(format!("cannot list the disks: {e:#}")))?;
    let cached = state.cached_node();
    let root_device = root_device_hints(node.or(cached.as_ref()));
    let root = state.config.root.clone();
    let disk = hints::choose(&inventory.disks, root_device, |d| {
        crate::inventory::install_exclusion(&root, d)
    })
    .map_err(|e| CommandError::failed("choosing the install disk failed", e))?;
    tracing::info!(disk = %disk.name, hints = ?root_device, "install disk chosen");
    Ok(TargetDisk {
        path: disk.name.clone().into(),
        choice: Choice::Discovered,
    })
}

/// `instance_info.root_device`, else `properties.root_device` (IPA's order: the
/// instance's wish wins over the node's); an empty object means none.
pub fn root_device_hints(node: Option<&Map<String, Value>>) -> Option<&Map<String, Value>> {
    let hints = |field: &str| {
        node.and_then(|n| n.get(field))
            .and_then(|f| f.get("root_device"))
            .and_then(Value::as_object)
            .filter(|h| !h.is_empty())
    };
    hints("instance_info").or_else(|| hints("properties"))
}

fn status_message(p: &Value) -> String {
    let mib = |v: &Value| {
        v.as_u64()
            .map(|b| format!("{} MiB", b >> 20))
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "writing image: {} {} of {} at {} MiB/s",
        p["phase"].as_str().unwrap_or("?"),
        mib(&p["bytes_done"]),
        mib(&p["bytes_total"]),
        p["rate_bytes_per_s"].as_f64().unwrap_or(0.0) as u64 >> 20
    )
}

/// Seconds between progress heartbeats during an image write.
const HEARTBEAT_PROGRESS_SECS: u32 = 5;

/// Publish progress into the running command's result every second and into the
/// heartbeat's `agent_status_message` on each phase change and every
/// [`HEARTBEAT_PROGRESS_SECS`]: each such heartbeat lets the conductor poll the command and
/// keep its progress on the step's timeline, which `ferrite … --wait` draws as a bar.
fn spawn_reporter(state: Arc<AgentState>, progress: Progress) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let entry = state.commands.last();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_phase = None;
        let mut since_publish = 0u32;
        loop {
            tick.tick().await;
            let snap = progress.snapshot();
            if let Some(e) = &entry {
                e.set_running_result(json!({ "ferrite_progress": snap.clone() }));
            }
            let phase = progress.phase();
            since_publish += 1;
            if last_phase != Some(phase) || since_publish >= HEARTBEAT_PROGRESS_SECS {
                since_publish = 0;
                last_phase = Some(phase);
                state.set_progress(AgentProgress {
                    agent_status: Some("start".into()),
                    agent_status_message: Some(status_message(&snap)),
                });
            }
        }
    })
}

/// Read back what `get_partition_uuids` reports for a whole-disk image.
pub fn partition_uuids(path: &Path) -> std::io::Result<Value> {
    let t = crate::image::writer::Target::open(path)?;
    let sector = deploy::sector_size(&t);
    let table = gpt::read_table(t.file(), sector)?;
    let mut head = [0u8; 512];
    std::os::unix::fs::FileExt::read_exact_at(t.file(), &mut head, 0)?;
    let sig = u32::from_le_bytes([head[440], head[441], head[442], head[443]]);
    let parts: Vec<Value> = match &table {
        Table::Gpt { partitions, header } => partitions
            .iter()
            .map(|p| json!({"number": p.number, "uuid": p.uuid, "type": p.type_guid, "name": p.name, "disk_guid": gpt::guid_string(&header.disk_guid)}))
            .collect(),
        Table::Mbr { partitions, .. } => partitions
            .iter()
            .map(|(n, ty, start, len)| json!({"number": n, "uuid": format!("{sig:08x}-{n:02x}"), "type": format!("0x{ty:02x}"), "start_lba": start, "sectors": len}))
            .collect(),
        Table::None => vec![],
    };
    // IPA's root uuid of a whole-disk image is the MBR disk identifier (hexdump -s 440).
    Ok(json!({ "root uuid": format!("0x{sig:08x}"), "ferrite_partitions": parts }))
}

/// Write `info` (and a config drive) to the target; shared by prepare_image and the
/// write_image deploy step.
pub async fn write_image(
    state: Arc<AgentState>,
    info: ImageInfo,
    configdrive: Option<String>,
    node: Option<Map<String, Value>>,
) -> Result<Value, CommandError> {
    let target = target_disk(&state, node.as_ref())?;
    let progress = Progress::new();
    let reporter = spawn_reporter(state.clone(), progress.clone());
    let rt = tokio::runtime::Handle::current();
    let job_progress = progress.clone();
    let job_target = target.clone();
    let job_info = info.clone();
    let result = blocking(
        "writing the image",
        move || -> Result<(Outcome, Value, Option<String>, Value), CommandError> {
            let cfg = HttpConfig::default();
            let failed = |e: deploy::DeployError| {
                CommandError::failed_msg(format!(
                    "writing image {} to {} failed: {}",
                    job_info.id,
                    job_target.path.display(),
                    ferrite_proto::error::chain(&e)
                ))
            };
            let with_cd = configdrive.as_deref().is_some_and(|c| !c.is_empty());
            let (outcome, facts, part) = if job_info.image_type.as_deref() == Some("partition") {
                let d = partition::deploy_partition_image(
                    &rt,
                    &job_info,
                    &job_target,
                    &cfg,
                    &job_progress,
                    with_cd,
                )
                .map_err(failed)?;
                let facts = json!({
                    "image_type": "partition", "disk_identifier": d.disk_id,
                    "partitions_reread": d.partitions_reread,
                    "boot_loader_installed": false,
                });
                (d.outcome.clone(), facts, Some(d))
            } else {
                let d = deploy::deploy_whole_disk(&rt, &job_info, &job_target, &cfg, &job_progress)
                    .map_err(failed)?;
                let facts = json!({
                    "image_type": "whole-disk", "backup_gpt_moved": d.backup_gpt_moved,
                    "partitions_reread": d.partitions_reread,
                });
                (d.outcome, facts, None)
            };
            let cd = match configdrive.as_deref() {
                Some(cd) if !cd.is_empty() => {
                    let node_uuid = job_info.node_uuid.clone().unwrap_or_else(|| "local".into());
                    Some(
                        crate::image::configdrive::write(&rt, cd, &job_target, &cfg, &node_uuid)
                            .map_err(|e| {
                                CommandError::failed_msg(format!(
                                    "writing the config drive to {} failed: {}",
                                    job_target.path.display(),
                                    ferrite_proto::error::chain(&e)
                                ))
                            })?,
                    )
                }
                _ => None,
            };
            let mut uuids = partition_uuids(&job_target.path)
                .map_err(|e| CommandError::failed("reading the partition table back failed", e))?;
            if let (Some(p), Some(map)) = (&part, uuids.as_object_mut()) {
                if let Value::Object(extra) = p.uuids(&job_target.path) {
                    map.extend(extra);
                }
            }
            Ok((outcome, facts, cd, uuids))
        },
    )
    .await;
    reporter.abort();
    let (status, message) = match &result {
        Ok(_) => ("end", "image written".to_string()),
        Err(e) => ("error", e.details()),
    };
    state.set_progress(AgentProgress {
        agent_status: Some(status.into()),
        agent_status_message: Some(message),
    });
    let (o, facts, cd, uuids) = result?;
    let root_uuid = uuids["root uuid"].as_str().unwrap_or("").to_owned();
    // IPA's message names the ESP too, which Ironic passes back to install_bootloader.
    let efi_uuid = uuids["efi system partition uuid"]
        .as_str()
        .map(str::to_owned);
    *state
        .partition_uuids
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(uuids);
    let mut msg = format!(
        "image ({}) written to device {} root_uuid={root_uuid}",
        info.id,
        target.path.display()
    );
    if let Some(efi) = &efi_uuid {
        msg.push_str(&format!(" efi_system_partition_uuid={efi}"));
    }
    if let Some(cd) = &cd {
        msg.push_str(&format!("; {cd}"));
    }
    let mut image = json!({
        "format": o.format, "compression": o.compression, "image_bytes": o.image_bytes,
        "disk_bytes": o.disk_bytes, "zero_bytes_skipped": o.zero_bytes_skipped,
        "checksum": o.checksum, "ferrite_progress": progress.snapshot(),
    });
    if let (Some(m), Value::Object(f)) = (image.as_object_mut(), facts) {
        m.extend(f);
    }
    let result = PrepareImageResult {
        result: format!("prepare_image: {msg}"),
        ferrite_image: Some(image),
    };
    Ok(serde_json::to_value(result).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15 finding 2: the hints come from the node, the instance's before the node's.
    #[test]
    fn root_device_hints_from_instance_info_then_properties() {
        let node = |v: Value| v.as_object().unwrap().clone();
        let both = node(json!({
            "properties": {"root_device": {"serial": "NODE"}},
            "instance_info": {"root_device": {"serial": "INSTANCE"}},
        }));
        assert_eq!(
            root_device_hints(Some(&both)).unwrap()["serial"],
            "INSTANCE"
        );
        let props = node(json!({
            "properties": {"root_device": {"serial": "NODE"}},
            "instance_info": {"root_device": {}},
        }));
        assert_eq!(root_device_hints(Some(&props)).unwrap()["serial"], "NODE");
        assert!(root_device_hints(Some(&node(json!({"properties": {}})))).is_none());
        assert!(root_device_hints(None).is_none());
    }
}
