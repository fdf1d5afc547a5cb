//! Deploy and clean steps (CONTRACT.md §8).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub interface: String,
    pub step: String,
    pub priority: i32,
    #[serde(default)]
    pub args: Map<String, Value>,
    #[serde(default)]
    pub abortable: bool,
    #[serde(default)]
    pub reboot_requested: bool,
}

/// Result of `clean.get_clean_steps` / `deploy.get_deploy_steps`: steps keyed by the
/// hardware manager that offers them, as IPA reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepsResult {
    pub hardware_manager_version: Map<String, Value>,
    /// `clean_steps` or `deploy_steps` keyed by manager name.
    #[serde(flatten)]
    pub steps: Map<String, Value>,
}
