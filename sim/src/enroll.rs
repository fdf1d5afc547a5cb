//! The fleet as the conductor enrolls it: one `ipmi` node per machine (driver_info naming
//! its BMC's UDP port and deploy kernel/ramdisk files the simulator serves, the fake boot
//! interface by default since nothing network-boots, the `direct` deploy and `agent`
//! inspection), with a port for each MAC. [`enroll`] creates them
//! through the conductor's (Ironic) API; [`specs`] is the same list for other tools.

use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use thiserror::Error;

use crate::Fleet;

/// The API version enrollment asks for (interfaces settable, as Ironic's clients send).
const API_VERSION: &str = "1.68";

/// One simulated server as the conductor should know it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeSpec {
    pub index: usize,
    pub name: String,
    /// The body of `POST /v1/nodes`.
    pub node: Value,
    /// MAC addresses, one port each (`pxe_enabled` for the first).
    pub macs: Vec<String>,
}

pub fn specs(fleet: &Fleet) -> Vec<NodeSpec> {
    fleet
        .machines
        .iter()
        .map(|m| {
            let name = format!("sim-{:05}", m.index);
            NodeSpec {
                index: m.index,
                node: json!({
                    "name": name,
                    "driver": "ipmi",
                    "boot_interface": fleet.cfg.boot_interface,
                    "deploy_interface": "direct",
                    "inspect_interface": "agent",
                    "driver_info": {
                        "ipmi_address": fleet.cfg.bind_ip.to_string(),
                        "ipmi_port": m.bmc_port,
                        "ipmi_username": fleet.cfg.username,
                        "ipmi_password": fleet.cfg.password,
                        "deploy_kernel": format!("{}/sim/files/deploy_kernel", fleet.agent_base),
                        "deploy_ramdisk": format!("{}/sim/files/deploy_ramdisk", fleet.agent_base),
                    },
                    "properties": {"cpu_arch": "x86_64"},
                }),
                name,
                macs: m.macs.clone(),
            }
        })
        .collect()
}

#[derive(Debug, Error)]
pub enum EnrollError {
    #[error("cannot reach the conductor at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the conductor refused {what} of node {node} with HTTP {status}: {body}")]
    Refused {
        what: &'static str,
        node: String,
        status: u16,
        body: String,
    },
}

async fn post(
    http: &reqwest::Client,
    url: String,
    body: &Value,
    what: &'static str,
    node: &str,
) -> Result<Value, EnrollError> {
    let r = http
        .post(&url)
        .header("X-OpenStack-Ironic-API-Version", API_VERSION)
        .json(body)
        .send()
        .await
        .map_err(|source| EnrollError::Unreachable {
            url: url.clone(),
            source,
        })?;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    if status != 201 {
        return Err(EnrollError::Refused {
            what,
            node: node.into(),
            status,
            body: text,
        });
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates every node and its ports, `concurrency` nodes at a time; the nodes' UUIDs in
/// index order.
pub async fn enroll(
    fleet: &Arc<Fleet>,
    conductor_url: &str,
    concurrency: usize,
) -> Result<Vec<String>, EnrollError> {
    let base = conductor_url.trim_end_matches('/').to_string();
    let results: Vec<Result<String, EnrollError>> = stream::iter(specs(fleet))
        .map(|spec| {
            let http = fleet.http.clone();
            let base = base.clone();
            async move {
                let created = post(
                    &http,
                    format!("{base}/v1/nodes"),
                    &spec.node,
                    "creation",
                    &spec.name,
                )
                .await?;
                let uuid = created["uuid"].as_str().unwrap_or_default().to_string();
                for (i, mac) in spec.macs.iter().enumerate() {
                    let port = json!({"address": mac, "node_uuid": uuid, "pxe_enabled": i == 0});
                    post(
                        &http,
                        format!("{base}/v1/ports"),
                        &port,
                        "port creation",
                        &spec.name,
                    )
                    .await?;
                }
                Ok(uuid)
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}
