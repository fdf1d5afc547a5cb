//! Deploy and clean steps (CONTRACT.md §8).

use std::collections::BTreeMap;

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

impl Step {
    /// `interface.step`, as messages name a step.
    pub fn name(&self) -> String {
        format!("{}.{}", self.interface, self.step)
    }

    /// Whether `other` is the same step (priority and arguments aside).
    pub fn same(&self, other: &Step) -> bool {
        self.interface == other.interface && self.step == other.step
    }
}

/// Clean, deploy or service: which commands and keys a run of steps uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Clean,
    Deploy,
    /// Servicing an active node (IPA's `service` extension).
    Service,
}

impl StepKind {
    /// `clean` or `deploy`.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Clean => "clean",
            StepKind::Deploy => "deploy",
            StepKind::Service => "service",
        }
    }
    /// The key of the steps in a [`StepsResult`] (`clean_steps`, `deploy_steps`).
    pub fn result_key(self) -> &'static str {
        match self {
            StepKind::Clean => "clean_steps",
            StepKind::Deploy => "deploy_steps",
            StepKind::Service => "service_steps",
        }
    }
    /// `clean.get_clean_steps` or `deploy.get_deploy_steps`.
    pub fn get_steps_command(self) -> &'static str {
        match self {
            StepKind::Clean => crate::commands::GET_CLEAN_STEPS,
            StepKind::Deploy => crate::commands::GET_DEPLOY_STEPS,
            StepKind::Service => crate::commands::GET_SERVICE_STEPS,
        }
    }
    /// `clean.execute_clean_step` or `deploy.execute_deploy_step`.
    pub fn execute_step_command(self) -> &'static str {
        match self {
            StepKind::Clean => crate::commands::EXECUTE_CLEAN_STEP,
            StepKind::Deploy => crate::commands::EXECUTE_DEPLOY_STEP,
            StepKind::Service => crate::commands::EXECUTE_SERVICE_STEP,
        }
    }
}

/// `command_result` of `clean.execute_clean_step` / `deploy.execute_deploy_step`, as IPA
/// writes it: what the step returned (`clean_result` / `deploy_result`) and the step
/// that ran (`clean_step` / `deploy_step`, the object the conductor sent). Ironic takes a
/// finished step only when `<kind>_step` is the node's current step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecuteStepResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_step: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_step: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_step: Option<Map<String, Value>>,
}

impl ExecuteStepResult {
    /// What a step of `kind` returned (`result`, `null` for nothing) and the step itself.
    pub fn new(kind: StepKind, step: Map<String, Value>, result: Value) -> Self {
        match kind {
            StepKind::Clean => ExecuteStepResult {
                clean_result: Some(result),
                clean_step: Some(step),
                ..Self::default()
            },
            StepKind::Deploy => ExecuteStepResult {
                deploy_result: Some(result),
                deploy_step: Some(step),
                ..Self::default()
            },
            StepKind::Service => ExecuteStepResult {
                service_result: Some(result),
                service_step: Some(step),
                ..Self::default()
            },
        }
    }

    /// The step's own result.
    pub fn result(&self, kind: StepKind) -> Option<&Value> {
        match kind {
            StepKind::Clean => self.clean_result.as_ref(),
            StepKind::Deploy => self.deploy_result.as_ref(),
            StepKind::Service => self.service_result.as_ref(),
        }
    }

    /// The step that ran, as the conductor sent it.
    pub fn step(&self, kind: StepKind) -> Option<&Map<String, Value>> {
        match kind {
            StepKind::Clean => self.clean_step.as_ref(),
            StepKind::Deploy => self.deploy_step.as_ref(),
            StepKind::Service => self.service_step.as_ref(),
        }
    }

    /// The name of the step that ran (`step` of the step object).
    pub fn step_name(&self, kind: StepKind) -> Option<&str> {
        self.step(kind)?.get("step")?.as_str()
    }
}

/// Steps of one kind keyed by the hardware manager (its class name) that offers them.
pub type StepsByManager = BTreeMap<String, Vec<Step>>;

/// Result of `clean.get_clean_steps` / `deploy.get_deploy_steps` /
/// `service.get_service_steps`, as IPA reports it: one of `clean_steps`, `deploy_steps`
/// and `service_steps`, and the managers' versions, which the conductor sends back as
/// `clean_version` / `deploy_version` / `service_version`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepsResult {
    #[serde(default)]
    pub hardware_manager_version: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_steps: Option<StepsByManager>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_steps: Option<StepsByManager>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_steps: Option<StepsByManager>,
}

impl StepsResult {
    pub fn new(kind: StepKind, steps: StepsByManager, versions: Map<String, Value>) -> Self {
        let mut r = StepsResult {
            hardware_manager_version: versions,
            ..StepsResult::default()
        };
        match kind {
            StepKind::Clean => r.clean_steps = Some(steps),
            StepKind::Deploy => r.deploy_steps = Some(steps),
            StepKind::Service => r.service_steps = Some(steps),
        }
        r
    }

    /// The steps of `kind` by manager (none when the agent listed the other kind).
    pub fn steps(&self, kind: StepKind) -> Option<&StepsByManager> {
        match kind {
            StepKind::Clean => self.clean_steps.as_ref(),
            StepKind::Deploy => self.deploy_steps.as_ref(),
            StepKind::Service => self.service_steps.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ipa_get_clean_steps_result_round_trips() {
        // ironic-python-agent's clean.get_clean_steps result (two managers; IPA adds
        // `argsinfo` and `requires_ramdisk`, which the conductor has no use for).
        let ipa = json!({
            "clean_steps": {
                "GenericHardwareManager": [
                    {"step": "erase_devices", "priority": 10, "interface": "deploy",
                     "reboot_requested": false, "abortable": true},
                    {"step": "erase_devices_metadata", "priority": 99, "interface": "deploy",
                     "reboot_requested": false, "abortable": true,
                     "argsinfo": null, "requires_ramdisk": true}
                ],
                "VendorHardwareManager": [
                    {"step": "update_firmware", "priority": 0, "interface": "management",
                     "reboot_requested": true, "abortable": false,
                     "args": {"images": []}}
                ]
            },
            "hardware_manager_version": {"generic_hardware_manager": "1.2",
                                         "vendor_hardware_manager": "3"}
        });
        let r: StepsResult = serde_json::from_value(ipa).unwrap();
        let steps = r.steps(StepKind::Clean).unwrap();
        assert_eq!(
            steps["GenericHardwareManager"][1].step,
            "erase_devices_metadata"
        );
        assert_eq!(steps["GenericHardwareManager"][1].priority, 99);
        assert!(steps["VendorHardwareManager"][0].reboot_requested);
        assert_eq!(steps["VendorHardwareManager"][0].args["images"], json!([]));
        assert!(r.steps(StepKind::Deploy).is_none());
        assert_eq!(r.hardware_manager_version["vendor_hardware_manager"], "3");
        let back: StepsResult = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let v = serde_json::to_value(&r).unwrap();
        assert!(v.get("deploy_steps").is_none(), "{v}");
    }

    #[test]
    fn ipa_execute_step_results_round_trip() {
        // ironic-python-agent's execute_deploy_step result after write_image: the nested
        // prepare_image result and the step exactly as Ironic sent it.
        let step = json!({"interface": "deploy", "step": "write_image", "args": {
            "image_info": {"id": "i"}, "configdrive": null}});
        let ipa = json!({
            "deploy_result": {"result": "prepare_image: image (i) written to device /dev/vda root_uuid=0x1234abcd"},
            "deploy_step": step,
        });
        let r: ExecuteStepResult = serde_json::from_value(ipa.clone()).unwrap();
        assert_eq!(r.step_name(StepKind::Deploy), Some("write_image"));
        assert!(r.result(StepKind::Clean).is_none());
        assert_eq!(serde_json::to_value(&r).unwrap(), ipa);
        let made = ExecuteStepResult::new(
            StepKind::Deploy,
            step.as_object().unwrap().clone(),
            ipa["deploy_result"].clone(),
        );
        assert_eq!(made, r);
        // A clean step that returns nothing: clean_result is null, not missing.
        let c = ExecuteStepResult::new(
            StepKind::Clean,
            json!({"step": "erase_devices_metadata", "interface": "deploy", "priority": 99})
                .as_object()
                .unwrap()
                .clone(),
            Value::Null,
        );
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"clean_result": null, "clean_step": {"step": "erase_devices_metadata",
                   "interface": "deploy", "priority": 99}})
        );
    }

    #[test]
    fn service_steps_have_ipa_keys() {
        assert_eq!(
            StepKind::Service.get_steps_command(),
            "service.get_service_steps"
        );
        assert_eq!(
            StepKind::Service.execute_step_command(),
            "service.execute_service_step"
        );
        let step = json!({"interface": "deploy", "step": "burnin_cpu", "args": {}});
        let r = ExecuteStepResult::new(
            StepKind::Service,
            step.as_object().unwrap().clone(),
            json!("ok"),
        );
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"service_result": "ok", "service_step": step})
        );
        assert_eq!(r.step_name(StepKind::Service), Some("burnin_cpu"));
        let l = StepsResult::new(StepKind::Service, StepsByManager::new(), Map::new());
        assert_eq!(
            serde_json::to_value(&l).unwrap(),
            json!({"service_steps": {}, "hardware_manager_version": {}})
        );
    }

    #[test]
    fn kinds_name_their_commands() {
        assert_eq!(StepKind::Clean.get_steps_command(), "clean.get_clean_steps");
        assert_eq!(
            StepKind::Deploy.execute_step_command(),
            "deploy.execute_deploy_step"
        );
        let r = StepsResult::new(StepKind::Deploy, StepsByManager::new(), Map::new());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"deploy_steps": {}, "hardware_manager_version": {}})
        );
    }
}
