//! `iscsi` deploy interface: the agent exports its install disk as an iSCSI target
//! (`iscsi.start_iscsi_target`, with per-deploy CHAP credentials) and the conductor writes
//! the image itself, through our initiator and the agent's own image pipeline (`ferrite_image`) (checksum,
//! decompression, qcow2, sparse skipping, first MiB held back, wipe on failure), then the
//! config drive; it reads the partition table back, logs out and stops the target.
//!
//! `driver_info.ferrite_iscsi_port` picks the agent's portal port (default 3260; 0 lets the
//! agent choose) and `driver_info.ferrite_iscsi_address` (`host:port`) overrides where the
//! conductor connects (a NAT or port forward in front of the agent).

use std::net::SocketAddr;
use std::time::Instant;

use ferrite_image::disk::{configdrive, gpt};
use ferrite_image::http::HttpConfig;
use ferrite_image::{stream_image, BlockSink, Progress};
use ferrite_iscsi::{Credentials, LoginOptions};
use ferrite_proto::agent::CommandStatus;
use ferrite_proto::image::ImageInfo;
use ferrite_proto::steps::Step;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Map, Value};

use super::iscsi_disk::IscsiDisk;
use super::*;
use crate::agent_client::{AgentClient, AgentTarget};

/// Our initiator's name.
pub const INITIATOR_NAME: &str = "iqn.2026-01.org.ferrite:conductor";

/// Writes the image over iSCSI from the conductor (`deploy_interface = iscsi`).
pub struct IscsiDeploy;

impl Deploy for IscsiDeploy {
    fn name(&self) -> &'static str {
        "iscsi"
    }
    fn validate(&self, node: &Node) -> DResult<()> {
        super::fake::DirectDeploy.validate(node)?;
        if let Some(v) = node.driver_info.get("ferrite_iscsi_port") {
            if port_of(v).is_none() {
                return Err(DriverError(format!(
                    "driver_info.ferrite_iscsi_port {v} is not a port number (0-65535)"
                )));
            }
        }
        if let Some(v) = node.driver_info.get("ferrite_iscsi_address") {
            if v.as_str()
                .and_then(|s| s.parse::<SocketAddr>().ok())
                .is_none()
            {
                return Err(DriverError(format!(
                    "driver_info.ferrite_iscsi_address {v} is not an address:port"
                )));
            }
        }
        Ok(())
    }
    fn uses_agent(&self) -> bool {
        true
    }
    fn deploy_steps(&self) -> Vec<Step> {
        agent_deploy_steps()
    }
    fn clean_steps(&self) -> Vec<Step> {
        vec![]
    }
}

fn port_of(v: &Value) -> Option<u16> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .and_then(|p| u16::try_from(p).ok())
}

/// The `iqn` Ironic's iscsi deploy used for a node.
pub fn target_iqn(node: &Node) -> String {
    format!("iqn.2008-10.org.openstack:{}", node.uuid)
}

/// Where to reach the agent's portal: the override, or the agent's host and `port`.
async fn portal(node: &Node, agent_url: &str, port: u16) -> Result<SocketAddr, String> {
    if let Some(a) = node
        .driver_info
        .get("ferrite_iscsi_address")
        .and_then(Value::as_str)
    {
        return a
            .parse()
            .map_err(|e| format!("driver_info.ferrite_iscsi_address {a:?}: {e}"));
    }
    let url = reqwest::Url::parse(agent_url)
        .map_err(|e| format!("the agent URL {agent_url:?} is not a URL: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("the agent URL {agent_url:?} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut addrs = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("resolving the agent's host {host}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("the agent's host {host} has no address"))
}

async fn agent_command(
    agent: &AgentClient,
    t: &AgentTarget<'_>,
    name: &str,
    params: Value,
) -> Result<Value, String> {
    let params = match params {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let r = agent
        .command(t, name, params, true)
        .await
        .map_err(|e| crate::error_chain(&e))?;
    match r.command_status {
        CommandStatus::Succeeded => Ok(r.command_result.unwrap_or(Value::Null)),
        CommandStatus::Failed => Err(format!(
            "{name} failed on the agent: {}",
            r.command_error.unwrap_or(Value::Null)
        )),
        CommandStatus::Running => Err(format!("{name} did not finish")),
    }
}

/// The `write_image` deploy step of the iscsi interface; returns a summary for
/// `driver_internal_info`. `image_info` is what `standby.prepare_image` would get.
pub async fn write_image(
    agent: &AgentClient,
    t: &AgentTarget<'_>,
    node: &Node,
    image_info: Value,
) -> Result<Value, String> {
    let info: ImageInfo = serde_json::from_value(image_info)
        .map_err(|e| format!("building image_info from instance_info: {e}"))?;
    if info
        .image_type
        .as_deref()
        .is_some_and(|t| t != "whole-disk")
    {
        return Err("the iscsi deploy interface writes whole-disk images only".into());
    }
    let configdrive = match node.instance_info.get("configdrive") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(
                "configdrive must be a base64 gzip string or an http(s) URL \
                        for the iscsi deploy interface"
                    .into(),
            )
        }
    };
    let iqn = target_iqn(node);
    let chap = Credentials {
        user: "ferrite".into(),
        secret: Alphanumeric.sample_string(&mut rand::rng(), 16),
    };
    let port = node
        .driver_info
        .get("ferrite_iscsi_port")
        .and_then(port_of)
        .unwrap_or(3260);
    let started = agent_command(
        agent,
        t,
        "iscsi.start_iscsi_target",
        json!({"iqn": iqn, "portal_port": port, "wipe_disk_metadata": true,
               "ferrite_chap_user": chap.user, "ferrite_chap_secret": chap.secret}),
    )
    .await?;
    let port = started
        .get("ferrite_portal_port")
        .and_then(port_of)
        .unwrap_or(port);
    let is_file = started
        .get("ferrite_device_is_file")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let result = write_through(node, t.url, port, &iqn, chap, is_file, info, configdrive).await;
    // Stop exporting the disk whatever happened; standby.sync would stop it too.
    let stopped = agent_command(agent, t, "iscsi.stop_iscsi_target", json!({})).await;
    let summary = result?;
    stopped?;
    Ok(summary)
}

#[allow(clippy::too_many_arguments)]
async fn write_through(
    node: &Node,
    agent_url: &str,
    port: u16,
    iqn: &str,
    chap: Credentials,
    is_file: bool,
    info: ImageInfo,
    configdrive: Option<String>,
) -> Result<Value, String> {
    let addr = portal(node, agent_url, port).await?;
    let mut opts = LoginOptions::new(INITIATOR_NAME, iqn);
    opts.chap = Some(chap);
    let began = Instant::now();
    let disk = IscsiDisk::connect(addr, &opts, is_file)
        .await
        .map_err(|e| format!("logging in to {iqn} at {addr}: {}", crate::error_chain(&e)))?;
    tracing::info!(node = %node.uuid, %addr, iqn, "writing the image over iSCSI");
    let rt = tokio::runtime::Handle::current();
    let iqn = iqn.to_string();
    let job_iqn = iqn.clone();
    let job = move || -> Result<Value, String> {
        let iqn = job_iqn.as_str();
        let mut disk = disk;
        let cfg = HttpConfig::default();
        let progress = Progress::new();
        let o = stream_image(&rt, &info, &mut disk, &cfg, &progress)
            .map_err(|e| format!("writing image {} over iSCSI failed: {}", info.id, e.chain()))?;
        let size = BlockSink::size(&disk);
        let sector = u64::from(disk.block_size());
        let io = |what: &str, e: std::io::Error| format!("{what} over iSCSI: {e}");
        gpt::move_backup_to_end(&disk, size, sector).map_err(|e| io("moving the backup GPT", e))?;
        let cd = match configdrive {
            Some(cd) => {
                let data = configdrive::fetch(&rt, &cd, &cfg).map_err(|e| e.chain())?;
                Some(
                    configdrive::write_data(&disk, size, sector, &data, iqn)
                        .map_err(|e| format!("writing the config drive: {}", e.chain()))?,
                )
            }
            None => None,
        };
        // Verify: the partition table reads back through a fresh read of the LUN.
        let table = gpt::read_table(&disk, sector).map_err(|e| io("reading back", e))?;
        let partitions = match &table {
            gpt::Table::Gpt { partitions, .. } => partitions.len(),
            gpt::Table::Mbr { partitions, .. } => partitions.len(),
            gpt::Table::None => 0,
        };
        if cd.is_some() && partitions == 0 {
            return Err("verification failed: no partition table reads back".into());
        }
        disk.logout().map_err(|e| io("logging out", e))?;
        Ok(json!({
            "iqn": iqn, "portal": addr.to_string(), "format": o.format,
            "compression": o.compression, "image_bytes": o.image_bytes,
            "disk_bytes": o.disk_bytes, "zero_bytes_skipped": o.zero_bytes_skipped,
            "partitions": partitions, "configdrive_written": cd,
        }))
    };
    let mut summary = tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| format!("the iSCSI write of {iqn} ended abnormally: {e}"))??;
    summary["seconds"] = json!(began.elapsed().as_secs_f64());
    Ok(summary)
}
