//! Agent API bodies (CONTRACT.md §1): command requests, results and faults.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/commands/` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// `<extension>.<command>`, e.g. `standby.sync`.
    pub name: String,
    #[serde(default)]
    pub params: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandStatus {
    Running,
    Succeeded,
    Failed,
}

/// One command's state as the agent reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub id: String,
    pub command_name: String,
    /// Kept by the agent but, as in IPA, never sent: params can hold a whole config drive.
    #[serde(default, skip_serializing)]
    pub command_params: Map<String, Value>,
    pub command_status: CommandStatus,
    pub command_error: Option<Value>,
    pub command_result: Option<Value>,
}

/// `GET /v1/commands/` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandList {
    pub commands: Vec<CommandResult>,
}

/// IPA's error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// `"Client"` for 4xx, `"Server"` for 5xx.
    pub faultcode: String,
    pub faultstring: String,
}

/// `GET /v1/status` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub started_at: f64,
    pub version: String,
}
