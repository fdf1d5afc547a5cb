//! The steps engine's bookkeeping in a node's `driver_internal_info`: one serde struct,
//! read and written only through [`StepProgress::load`] and [`StepProgress::edit`], under
//! Ironic's key names wherever Ironic keeps the same fact.

use ferrite_proto::steps::Step;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::plan::{self, Kind};
use crate::db::DbError;
use crate::drivers::agent::PendingCommand;
use crate::model::Obj;

/// Where the clean and deploy runs stand. Absent keys are the defaults; `None` and `false`
/// are stored by removing the key. Keys not named here are left alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StepProgress {
    /// The planned clean run, absent until planned (Ironic's key).
    pub clean_steps: Option<Vec<Step>>,
    /// The clean step that runs, or runs next once the current one is done (Ironic's key).
    pub clean_step_index: Option<usize>,
    /// The agent is booting for cleaning: its heartbeat resumes the run (Ironic's key).
    pub cleaning_reboot: bool,
    /// The planned deploy run (Ironic's key).
    pub deploy_steps: Option<Vec<Step>>,
    /// Ironic's `deploy_step_index`.
    pub deploy_step_index: Option<usize>,
    /// The agent is booting for the deploy (Ironic's `deployment_reboot`).
    pub deployment_reboot: bool,
    /// The planned service run (Ironic's key).
    pub service_steps: Option<Vec<Step>>,
    /// Ironic's `service_step_index`.
    pub service_step_index: Option<usize>,
    /// The service steps the user gave (validated at request time). Ferrite's key.
    pub user_service_steps: Option<Vec<Value>>,
    /// The current clean is a manual one. Ferrite's key: Ironic tells by the target state.
    pub manual_clean: bool,
    /// A manual clean's steps as the user gave them (validated at request time). Ferrite's
    /// key: Ironic keeps them in `clean_steps` until it plans.
    pub user_clean_steps: Option<Vec<Value>>,
    /// The deploy steps the user gave (Ironic's key).
    pub user_deploy_steps: Option<Vec<Value>>,
    /// The agent's hardware manager versions, sent back with clean steps (Ironic's key).
    pub hardware_manager_version: Option<Map<String, Value>>,
    /// The agent command the current step waits for. Ferrite's key: Ironic asks the agent
    /// for its last command instead.
    pub agent_command: Option<PendingCommand>,
    /// When the current step started, for `--step-timeout` (Ferrite's key).
    pub step_started_at: Option<String>,
}

/// Keys the conductor wrote before this struct: `waiting` (`agent_boot`, `agent_command`
/// or `hold`) is now the reboot flags, `agent_command` and the hold states.
const REPLACED_KEYS: &[&str] = &["waiting"];

/// What a waiting node waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// The agent to boot (and heartbeat).
    AgentBoot,
    /// An agent command to end.
    AgentCommand,
    /// Nothing the agent does: `unhold`, or nothing at all.
    Nothing,
}

impl StepProgress {
    /// Reads the bookkeeping out of `driver_internal_info`.
    pub fn load(dii: &Obj) -> Result<StepProgress, DbError> {
        serde_json::from_value(Value::Object(dii.clone())).map_err(|source| DbError::Corrupt {
            column: "driver_internal_info",
            source,
        })
    }

    /// Writes the bookkeeping into `driver_internal_info`, leaving other keys alone
    /// (except keys of the previous layout, which this replaces).
    pub fn store(&self, dii: &mut Obj) {
        for key in REPLACED_KEYS {
            dii.remove(*key);
        }
        // A struct of strings, numbers and maps always serializes to an object.
        let Ok(Value::Object(fields)) = serde_json::to_value(self) else {
            return;
        };
        for (key, value) in fields {
            if value.is_null() || value == Value::Bool(false) {
                dii.remove(&key);
            } else {
                dii.insert(key, value);
            }
        }
    }

    /// Loads, changes with `f` and stores back.
    pub fn edit<R>(dii: &mut Obj, f: impl FnOnce(&mut StepProgress) -> R) -> Result<R, DbError> {
        let mut p = StepProgress::load(dii)?;
        let r = f(&mut p);
        p.store(dii);
        Ok(r)
    }

    /// The planned steps of `kind`, if planned.
    pub fn steps(&self, kind: Kind) -> Option<&[Step]> {
        match kind {
            Kind::Clean => self.clean_steps.as_deref(),
            Kind::Deploy => self.deploy_steps.as_deref(),
            Kind::Service => self.service_steps.as_deref(),
        }
    }

    /// The index of the current (or next) step of `kind`.
    pub fn index(&self, kind: Kind) -> usize {
        match kind {
            Kind::Clean => self.clean_step_index,
            Kind::Deploy => self.deploy_step_index,
            Kind::Service => self.service_step_index,
        }
        .unwrap_or(0)
    }

    /// Stores a run's steps, to go on at `index`.
    pub fn set_steps(&mut self, kind: Kind, steps: Vec<Step>, index: usize) {
        let (s, i) = match kind {
            Kind::Clean => (&mut self.clean_steps, &mut self.clean_step_index),
            Kind::Deploy => (&mut self.deploy_steps, &mut self.deploy_step_index),
            Kind::Service => (&mut self.service_steps, &mut self.service_step_index),
        };
        *s = Some(steps);
        *i = Some(index);
    }

    /// Moves past the current step.
    pub fn advance(&mut self, kind: Kind) {
        let next = self.index(kind) + 1;
        match kind {
            Kind::Clean => self.clean_step_index = Some(next),
            Kind::Deploy => self.deploy_step_index = Some(next),
            Kind::Service => self.service_step_index = Some(next),
        }
    }

    /// The reboot flag of `kind`; servicing never boots the agent, so it has none.
    fn reboot_mut(&mut self, kind: Kind) -> Option<&mut bool> {
        match kind {
            Kind::Clean => Some(&mut self.cleaning_reboot),
            Kind::Deploy => Some(&mut self.deployment_reboot),
            Kind::Service => None,
        }
    }

    /// The run of `kind` waits for the agent to boot.
    pub fn wait_for_agent_boot(&mut self, kind: Kind) {
        if let Some(r) = self.reboot_mut(kind) {
            *r = true;
        }
    }

    /// The run waits for `command` to end.
    pub fn wait_for_command(&mut self, command: PendingCommand) {
        self.agent_command = Some(command);
    }

    /// What the run of `kind` waits for.
    pub fn waiting(&self, kind: Kind) -> Waiting {
        let reboot = match kind {
            Kind::Clean => self.cleaning_reboot,
            Kind::Deploy => self.deployment_reboot,
            Kind::Service => false,
        };
        if reboot {
            Waiting::AgentBoot
        } else if self.agent_command.is_some() {
            Waiting::AgentCommand
        } else {
            Waiting::Nothing
        }
    }

    /// Forgets what any run waits for (it resumed, failed or was aborted).
    pub fn stop_waiting(&mut self) {
        self.agent_command = None;
        self.cleaning_reboot = false;
        self.deployment_reboot = false;
    }

    /// Forgets a previous run's step list, position and wait.
    pub fn reset(&mut self, kind: Kind) {
        match kind {
            Kind::Clean => {
                self.clean_steps = None;
                self.clean_step_index = None;
            }
            Kind::Deploy => {
                self.deploy_steps = None;
                self.deploy_step_index = None;
            }
            Kind::Service => {
                self.service_steps = None;
                self.service_step_index = None;
            }
        }
        if let Some(r) = self.reboot_mut(kind) {
            *r = false;
        }
        self.agent_command = None;
    }

    /// The user's steps for the run of `kind` (already validated; any that no longer
    /// parse are dropped).
    pub fn user_steps(&self, kind: Kind) -> Vec<Step> {
        let (list, what) = match kind {
            Kind::Clean => (&self.user_clean_steps, "user_clean_steps"),
            Kind::Deploy => (&self.user_deploy_steps, "user_deploy_steps"),
            Kind::Service => (&self.user_service_steps, "user_service_steps"),
        };
        list.as_deref()
            .and_then(|l| plan::parse_user_steps(l, what).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::step;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        match v {
            Value::Object(o) => o,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn stored_under_ironics_keys() {
        let mut p = StepProgress::default();
        p.set_steps(Kind::Deploy, vec![step("deploy", "deploy", 100)], 0);
        p.wait_for_agent_boot(Kind::Deploy);
        p.user_deploy_steps = Some(vec![json!({"interface": "deploy", "step": "x"})]);
        p.hardware_manager_version = Some(obj(json!({"generic": "1"})));
        let mut dii = obj(json!({"root_uuid_or_disk_id": "0x1", "clean_step_index": 4}));
        p.store(&mut dii);
        assert_eq!(
            Value::Object(dii.clone()),
            json!({
                "root_uuid_or_disk_id": "0x1",
                "deploy_steps": [{"interface": "deploy", "step": "deploy", "priority": 100,
                                  "args": {}, "abortable": false, "reboot_requested": false}],
                "deploy_step_index": 0,
                "deployment_reboot": true,
                "user_deploy_steps": [{"interface": "deploy", "step": "x"}],
                "hardware_manager_version": {"generic": "1"},
            }),
            "other keys kept, None and false removed"
        );
        assert_eq!(StepProgress::load(&dii).unwrap(), p);
    }

    #[test]
    fn waiting_is_per_run() {
        let mut dii = Obj::new();
        StepProgress::edit(&mut dii, |p| p.wait_for_agent_boot(Kind::Clean)).unwrap();
        assert_eq!(dii["cleaning_reboot"], true);
        let p = StepProgress::load(&dii).unwrap();
        assert_eq!(p.waiting(Kind::Clean), Waiting::AgentBoot);
        assert_eq!(p.waiting(Kind::Deploy), Waiting::Nothing);

        let cmd = PendingCommand {
            id: "c1".into(),
            name: "deploy.execute_deploy_step".into(),
        };
        StepProgress::edit(&mut dii, |p| {
            p.stop_waiting();
            p.wait_for_command(cmd.clone());
        })
        .unwrap();
        assert!(!dii.contains_key("cleaning_reboot"));
        assert_eq!(dii["agent_command"]["id"], "c1");
        let p = StepProgress::load(&dii).unwrap();
        assert_eq!(p.waiting(Kind::Deploy), Waiting::AgentCommand);
        StepProgress::edit(&mut dii, StepProgress::stop_waiting).unwrap();
        assert!(dii.is_empty(), "{dii:?}");
    }

    #[test]
    fn reset_forgets_one_run() {
        let mut p = StepProgress::default();
        p.set_steps(Kind::Clean, vec![step("deploy", "erase_devices", 10)], 0);
        p.advance(Kind::Clean);
        p.set_steps(Kind::Deploy, vec![step("deploy", "deploy", 100)], 0);
        assert_eq!(p.index(Kind::Clean), 1);
        p.reset(Kind::Clean);
        assert_eq!(p.steps(Kind::Clean), None);
        assert_eq!(p.index(Kind::Clean), 0);
        assert_eq!(p.steps(Kind::Deploy).map(<[Step]>::len), Some(1));
    }

    #[test]
    fn rows_of_the_previous_layout_load() {
        // What the conductor stored before this struct: the same keys, plus `waiting`.
        let dii = obj(json!({
            "clean_steps": [{"interface": "deploy", "step": "erase_devices", "priority": 10}],
            "clean_step_index": 0,
            "agent_command": {"id": "a", "name": "clean.execute_clean_step"},
            "waiting": "agent_command",
            "manual_clean": false,
            "user_clean_steps": null,
            "step_started_at": "2024-01-01T00:00:00Z",
        }));
        let p = StepProgress::load(&dii).unwrap();
        assert_eq!(p.waiting(Kind::Clean), Waiting::AgentCommand);
        assert_eq!(p.user_steps(Kind::Clean), vec![]);
        assert_eq!(p.steps(Kind::Clean).unwrap()[0].step, "erase_devices");
        let mut stored = dii.clone();
        p.store(&mut stored);
        assert!(!stored.contains_key("waiting"), "{stored:?}");
        assert!(!stored.contains_key("manual_clean"), "{stored:?}");
        assert_eq!(StepProgress::load(&stored).unwrap(), p);
    }

    #[test]
    fn corrupt_bookkeeping_is_an_error() {
        let dii = obj(json!({"deploy_step_index": "one"}));
        let e = StepProgress::load(&dii).unwrap_err();
        assert!(matches!(
            e,
            DbError::Corrupt {
                column: "driver_internal_info",
                ..
            }
        ));
    }

    #[test]
    fn user_steps_are_read_back() {
        let p = StepProgress {
            user_clean_steps: Some(vec![
                json!({"interface": "deploy", "step": "erase_devices", "priority": 5}),
            ]),
            ..Default::default()
        };
        assert_eq!(
            p.user_steps(Kind::Clean),
            vec![step("deploy", "erase_devices", 5)]
        );
        assert_eq!(p.user_steps(Kind::Deploy), vec![]);
    }
}
