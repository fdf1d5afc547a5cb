//! Lookup, heartbeat and inspection bodies (CONTRACT.md §2).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::inventory::{InspectionExtras, Inventory};

/// `GET /v1/lookup` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupResponse {
    pub node: LookupNode,
    #[serde(default)]
    pub config: LookupConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookupNode {
    pub uuid: String,
    #[serde(default)]
    pub properties: Map<String, Value>,
    #[serde(default)]
    pub instance_info: Map<String, Value>,
    #[serde(default)]
    pub driver_internal_info: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LookupConfig {
    /// Seconds; the agent heartbeats every `heartbeat_timeout × uniform(0.3, 0.6)`.
    #[serde(default)]
    pub heartbeat_timeout: Option<f64>,
    /// The token, or `"******"` when it was handed out before.
    #[serde(default)]
    pub agent_token: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `POST /v1/heartbeat/{node}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub callback_url: String,
    pub agent_token: String,
    pub agent_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_verify_ca: Option<String>,
    /// `start`, `end` or `error` (Ironic ≥ 1.72; refused below it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<Value>,
    /// Human-readable detail for `agent_status` (Ironic ≥ 1.72, with `agent_status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status_message: Option<String>,
}

/// `POST /v1/continue_inspection` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectionData {
    pub inventory: Inventory,
    /// The disk a deploy without root device hints would pick (IPA's `root_disk`; Ironic's
    /// `root-device` inspection hook sets `local_gb` from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_disk: Option<crate::inventory::Disk>,
    pub boot_interface: Option<String>,
    /// The node's agent token, or the one-time inspection token of the ramdisk's kernel
    /// command line (`ferrite-inspection-token`); required by the conductor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_token: Option<String>,
    /// IPA's `pci_devices` and `numa_topology`, top-level keys beside `inventory`.
    #[serde(flatten)]
    pub extras: InspectionExtras,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub ferrite: Map<String, Value>,
}

/// `POST /v1/continue_inspection` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectionResponse {
    pub uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<LookupConfig>,
}
