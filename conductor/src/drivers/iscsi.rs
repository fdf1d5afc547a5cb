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
use ferrite_image::{stream_image, BlockSink, Progress as WriteProgress};
use ferrite_iscsi::{Credentials, LoginOptions};
use ferrite_proto::commands::{
    self as cmd, StartIscsiTargetParams, StartIscsiTargetResult, StopIscsiTargetResult,
};
use ferrite_proto::image::{ImageInfo, WHOLE_DISK};
use ferrite_proto::steps::Step;
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use serde_json::Value;

use super::agent::{self, AgentApi, AgentCallError, Progress};
use super::iscsi_disk::IscsiDisk;
use super::*;

/// Why the iSCSI write of an image failed.
#[derive(Debug, thiserror::Error)]
pub enum IscsiError {
    #[error("the iscsi deploy interface writes whole-disk images only, not {0:?} images; use deploy_interface direct")]
    NotWholeDisk(String),
    #[error("driver_info.ferrite_iscsi_address {address:?} is not an address:port")]
    BadAddress {
        address: String,
        #[source]
        source: std::net::AddrParseError,
    },
    #[error("the agent URL {0:?} has no host to reach its iSCSI portal at")]
    NoHost(String),
    #[error("resolving the agent's host {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the agent's host {0} has no address")]
    NoAddress(String),
    #[error("logging in to {iqn} at {addr}")]
    Login {
        iqn: String,
        addr: SocketAddr,
        #[source]
        source: ferrite_iscsi::InitiatorError,
    },
    #[error("writing image {id} over iSCSI failed")]
    Image {
        id: String,
        #[source]
        source: BoxError,
    },
    #[error("{what} over iSCSI")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the config drive over iSCSI")]
    ConfigDrive(#[source] BoxError),
    #[error("verification failed: no partition table reads back")]
    NoTable,
    #[error("the iSCSI write of {iqn} ended abnormally")]
    Aborted {
        iqn: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Our initiator's name.
pub const INITIATOR_NAME: &str = "iqn.2026-01.org.ferrite:conductor";

/// Writes the image over iSCSI from the conductor (`deploy_interface = iscsi`).
pub struct IscsiDeploy;

impl Deploy for IscsiDeploy {
    fn name(&self) -> &'static str {
        "iscsi"
    }
    fn validate(&self, node: &Node) -> DResult<()> {
        agent::DirectDeploy.validate(node)?;
        if let Some(v) = node.driver_info.get("ferrite_iscsi_port") {
            if port_of(v).is_none() {
                return Err(DriverError::Invalid(format!(
                    "driver_info.ferrite_iscsi_port {v} is not a port number (0-65535)"
                )));
            }
        }
        if let Some(v) = node.driver_info.get("ferrite_iscsi_address") {
            if v.as_str()
                .and_then(|s| s.parse::<SocketAddr>().ok())
                .is_none()
            {
                return Err(DriverError::Invalid(format!(
                    "driver_info.ferrite_iscsi_address {v} is not an address:port"
                )));
            }
        }
        Ok(())
    }
    fn uses_agent(&self) -> bool {
        true
    }
    fn write_image<'a>(
        &'a self,
        agent: &'a dyn AgentApi,
        node: &'a mut Node,
    ) -> BoxFut<'a, DResult<Progress>> {
        Box::pin(async move {
            let written = write_image(agent, node).await?;
            let summary = serde_json::to_value(written).unwrap_or(Value::Null);
            node.driver_internal_info
                .insert("ferrite_iscsi_write".into(), summary);
            Ok(Progress::Done)
        })
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
async fn portal(node: &Node, agent_url: &str, port: u16) -> Result<SocketAddr, IscsiError> {
    if let Some(a) = node
        .driver_info
        .get("ferrite_iscsi_address")
        .and_then(Value::as_str)
    {
        return a.parse().map_err(|source| IscsiError::BadAddress {
            address: a.into(),
            source,
        });
    }
    let host = reqwest::Url::parse(agent_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .ok_or_else(|| IscsiError::NoHost(agent_url.into()))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| IscsiError::Resolve {
            host: host.into(),
            source,
        })?;
    addrs
        .next()
        .ok_or_else(|| IscsiError::NoAddress(host.into()))
}

/// What the iSCSI write did (`driver_internal_info.ferrite_iscsi_write`).
#[derive(Debug, Clone, Serialize)]
pub struct IscsiWrite {
    pub iqn: String,
    pub portal: String,
    pub format: &'static str,
    pub compression: &'static str,
    pub image_bytes: u64,
    pub disk_bytes: u64,
    pub zero_bytes_skipped: u64,
    pub partitions: usize,
    /// Where the config drive went. Not `configdrive`: the API masks a key of that name
    /// at any depth.
    pub configdrive_written: Option<String>,
    pub seconds: f64,
}

/// The `write_image` deploy step of the iscsi interface: the agent exports its disk, the
/// conductor writes the image of `instance_info` and the config drive, the agent stops
/// the target.
pub async fn write_image(agent: &dyn AgentApi, node: &Node) -> DResult<IscsiWrite> {
    let info = agent::image_info(node)?;
    if let Some(t) = info.image_type.as_deref().filter(|t| *t != WHOLE_DISK) {
        return Err(IscsiError::NotWholeDisk(t.into()).into());
    }
    let configdrive = agent::configdrive(node)?;
    let agent_url = node.agent_url.as_deref().ok_or(AgentCallError::NoUrl)?;
    let iqn = target_iqn(node);
    let chap = Credentials {
        user: "ferrite".into(),
        secret: Alphanumeric.sample_string(&mut rand::rng(), 16),
    };
    let port = node
        .driver_info
        .get("ferrite_iscsi_port")
        .and_then(port_of)
        .unwrap_or(cmd::ISCSI_PORT);
    let params = StartIscsiTargetParams {
        iqn: iqn.clone(),
        portal_port: port,
        wipe_disk_metadata: true,
        ferrite_chap_user: Some(chap.user.clone()),
        ferrite_chap_secret: Some(chap.secret.clone()),
    };
    let started: StartIscsiTargetResult =
        agent::run(agent, node, cmd::START_ISCSI_TARGET, &params).await?;
    let port = started.ferrite_portal_port.unwrap_or(port);
    let is_file = started.ferrite_device_is_file;
    let result = write_through(
        node,
        agent_url,
        port,
        &iqn,
        chap,
        is_file,
        info,
        configdrive,
    )
    .await;
    // Stop exporting the disk whatever happened; standby.sync would stop it too.
    let stopped =
        agent::run::<StopIscsiTargetResult>(agent, node, cmd::STOP_ISCSI_TARGET, &()).await;
    let written = result?;
    stopped?;
    Ok(written)
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
) -> Result<IscsiWrite, IscsiError> {
    let addr = portal(node, agent_url, port).await?;
    let mut opts = LoginOptions::new(INITIATOR_NAME, iqn);
    opts.chap = Some(chap);
    let began = Instant::now();
    let disk = IscsiDisk::connect(addr, &opts, is_file)
        .await
        .map_err(|source| IscsiError::Login {
            iqn: iqn.into(),
            addr,
            source,
        })?;
    tracing::info!(node = %node.uuid, %addr, iqn, "writing the image over iSCSI");
    let rt = tokio::runtime::Handle::current();
    let job_iqn = iqn.to_string();
    let job = move || -> Result<IscsiWrite, IscsiError> {
        let iqn = job_iqn;
        let mut disk = disk;
        let cfg = HttpConfig::default();
        let progress = WriteProgress::new();
        let o = stream_image(&rt, &info, &mut disk, &cfg, &progress).map_err(|e| {
            IscsiError::Image {
                id: info.id.clone(),
                source: e.into(),
            }
        })?;
        let size = BlockSink::size(&disk);
        let sector = u64::from(disk.block_size());
        let io = |what: &'static str| move |source| IscsiError::Io { what, source };
        gpt::move_backup_to_end(&disk, size, sector).map_err(io("moving the backup GPT"))?;
        let cd = match configdrive {
            Some(cd) => {
                let data = configdrive::fetch(&rt, &cd, &cfg)
                    .map_err(|e| IscsiError::ConfigDrive(e.into()))?;
                Some(
                    configdrive::write_data(&disk, size, sector, &data, &iqn)
                        .map_err(|e| IscsiError::ConfigDrive(e.into()))?,
                )
            }
            None => None,
        };
        // Verify: the partition table reads back through a fresh read of the LUN.
        let table = gpt::read_table(&disk, sector).map_err(io("reading back"))?;
        let partitions = match &table {
            gpt::Table::Gpt { partitions, .. } => partitions.len(),
            gpt::Table::Mbr { partitions, .. } => partitions.len(),
            gpt::Table::None => 0,
        };
        if cd.is_some() && partitions == 0 {
            return Err(IscsiError::NoTable);
        }
        disk.logout().map_err(io("logging out"))?;
        Ok(IscsiWrite {
            iqn,
            portal: addr.to_string(),
            format: o.format,
            compression: o.compression,
            image_bytes: o.image_bytes,
            disk_bytes: o.disk_bytes,
            zero_bytes_skipped: o.zero_bytes_skipped,
            partitions,
            configdrive_written: cd,
            seconds: 0.0,
        })
    };
    let mut written =
        tokio::task::spawn_blocking(job)
            .await
            .map_err(|source| IscsiError::Aborted {
                iqn: iqn.into(),
                source,
            })??;
    written.seconds = began.elapsed().as_secs_f64();
    Ok(written)
}
