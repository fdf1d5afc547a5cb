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
    /// The hardware managers changed since the conductor listed the steps: restart the
    /// operation. IPA still writes `CLEAN_VERSION_MISMATCH` for clean and deploy steps
    /// alike; Ironic takes `VERSION_MISMATCH` as its alias.
    #[serde(rename = "CLEAN_VERSION_MISMATCH", alias = "VERSION_MISMATCH")]
    VersionMismatch,
}

/// One command's state as the agent reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub id: String,
    /// As IPA reports it: the command without its extension (`execute_clean_step` for
    /// `clean.execute_clean_step`, see [`reported_name`]); only a synchronous command that
    /// failed keeps the full name. Ironic finds its commands by this name.
    pub command_name: String,
    /// Kept by the agent but, as in IPA, never sent: params can hold a whole config drive.
    #[serde(default, skip_serializing)]
    pub command_params: Map<String, Value>,
    pub command_status: CommandStatus,
    pub command_error: Option<Value>,
    pub command_result: Option<Value>,
}

/// The `command_name` IPA reports for the command requested as `name`
/// (`<extension>.<command>`): the part after the extension.
pub fn reported_name(name: &str) -> &str {
    name.split_once('.').map_or(name, |(_, command)| command)
}

/// Whether a reported `command_name` is that of the command requested as `name`, in
/// IPA's bare form or the full one.
pub fn names_command(command_name: &str, name: &str) -> bool {
    command_name == name || command_name == reported_name(name)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ipa_command_results_parse() {
        // ironic-python-agent's GET /v1/commands/ after cleaning: bare command names, a
        // sync command's null result, the version-mismatch status and its alias.
        let ipa = json!({"commands": [
            {"id": "a", "command_name": "get_clean_steps", "command_status": "SUCCEEDED",
             "command_error": null, "command_result": {"clean_steps": {},
             "hardware_manager_version": {}}},
            {"id": "b", "command_name": "execute_clean_step",
             "command_status": "CLEAN_VERSION_MISMATCH",
             "command_error": {"type": "VersionMismatch", "code": 409,
                               "message": "Hardware managers version mismatch, reload agent with correct version",
                               "details": "Current versions: {}, versions used by ironic: {}"},
             "command_result": null},
            {"id": "c", "command_name": "sync", "command_status": "SUCCEEDED",
             "command_error": null, "command_result": null}
        ]});
        let l: CommandList = serde_json::from_value(ipa).unwrap();
        assert_eq!(l.commands[1].command_status, CommandStatus::VersionMismatch);
        assert_eq!(l.commands[2].command_result, None);
        let alias: CommandStatus = serde_json::from_value(json!("VERSION_MISMATCH")).unwrap();
        assert_eq!(alias, CommandStatus::VersionMismatch);
        assert_eq!(
            serde_json::to_value(CommandStatus::VersionMismatch).unwrap(),
            "CLEAN_VERSION_MISMATCH"
        );
    }

    #[test]
    fn reported_names_are_bare() {
        assert_eq!(
            reported_name("clean.execute_clean_step"),
            "execute_clean_step"
        );
        assert_eq!(
            reported_name("image.install_bootloader"),
            "install_bootloader"
        );
        assert_eq!(reported_name("bare"), "bare");
        assert!(names_command("prepare_image", "standby.prepare_image"));
        assert!(names_command(
            "standby.prepare_image",
            "standby.prepare_image"
        ));
        assert!(!names_command(
            "image.prepare_image",
            "standby.prepare_image"
        ));
        assert!(!names_command("sync", "standby.prepare_image"));
    }
}
