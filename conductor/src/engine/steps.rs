//! Steps engine (CONTRACT.md §8): gathers conductor and agent steps, orders them by
//! priority, saves the current step and its index before it runs, runs asynchronous agent
//! steps and resumes them from heartbeats.

use std::sync::Arc;

use ferrite_proto::agent::{CommandResult, CommandStatus};
use ferrite_proto::commands::{self as cmd, CommandFailure, ExecuteStepParams, GetStepsParams};
use ferrite_proto::steps::{Step, StepKind, StepsResult};
use serde_json::{json, Map, Value};

use super::{Conductor, EResult, EngineError};
use crate::drivers::agent::{self, AgentCallError, PendingCommand, Progress};
use crate::drivers::{ConductorStep, DResult, NodeDrivers, PowerTarget, POWER_OFF, POWER_ON};
use crate::error_chain;
use crate::model::{now, Node, Obj};
use crate::state::{Event, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Clean,
    Deploy,
}

impl Kind {
    pub fn of(state: State) -> Kind {
        match state {
            State::Cleaning | State::CleanWait | State::CleanHold => Kind::Clean,
            _ => Kind::Deploy,
        }
    }
    fn name(self) -> &'static str {
        self.proto().name()
    }
    fn title(self) -> &'static str {
        match self {
            Kind::Clean => "Clean",
            Kind::Deploy => "Deploy",
        }
    }
    fn proto(self) -> StepKind {
        match self {
            Kind::Clean => StepKind::Clean,
            Kind::Deploy => StepKind::Deploy,
        }
    }
    fn steps_key(self) -> &'static str {
        match self {
            Kind::Clean => "clean_steps",
            Kind::Deploy => "deploy_steps",
        }
    }
    fn index_key(self) -> &'static str {
        match self {
            Kind::Clean => "clean_step_index",
            Kind::Deploy => "deploy_step_index",
        }
    }
}

/// Forgets a previous run's step list and position.
pub fn reset(dii: &mut Obj, kind: Kind) {
    for k in [
        kind.steps_key(),
        kind.index_key(),
        "agent_command",
        "waiting",
    ] {
        dii.remove(k);
    }
}

const STEP_KEYS: &[&str] = &["interface", "step", "args", "priority"];
const INTERFACES: &[&str] = &[
    "deploy",
    "power",
    "management",
    "boot",
    "bios",
    "raid",
    "firmware",
    "inspect",
];

/// Validates user-given steps (`clean_steps`/`deploy_steps`).
pub fn parse_user_steps(list: &[Value], what: &str) -> EResult<Vec<Step>> {
    let bad = |i: usize, why: String| EngineError::Invalid(format!("{what}[{i}]: {why}"));
    let mut out = vec![];
    for (i, v) in list.iter().enumerate() {
        let o = v
            .as_object()
            .ok_or_else(|| bad(i, "each step must be an object".into()))?;
        if let Some(k) = o.keys().find(|k| !STEP_KEYS.contains(&k.as_str())) {
            return Err(bad(
                i,
                format!("unknown key {k:?}; allowed: interface, step, args, priority"),
            ));
        }
        let interface = o
            .get("interface")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(i, "\"interface\" (a string) is required".into()))?;
        if !INTERFACES.contains(&interface) {
            return Err(bad(
                i,
                format!(
                    "interface {interface:?} is unknown; use one of {}",
                    INTERFACES.join(", ")
                ),
            ));
        }
        let step = o
            .get("step")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(i, "\"step\" (a non-empty string) is required".into()))?;
        let args = match o.get("args") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(a)) => a.clone(),
            Some(_) => return Err(bad(i, "\"args\" must be an object".into())),
        };
        let priority = match o.get("priority") {
            None => 0,
            Some(p) => p
                .as_i64()
                .filter(|p| (0..=1000).contains(p))
                .ok_or_else(|| bad(i, "\"priority\" must be an integer 0..1000".into()))?
                as i32,
        };
        out.push(Step {
            interface: interface.into(),
            step: step.into(),
            priority,
            args,
            abortable: false,
            reboot_requested: false,
        });
    }
    Ok(out)
}

fn same(a: &Step, b: &Step) -> bool {
    a.interface == b.interface && a.step == b.step
}

fn sort(steps: &mut [Step]) {
    steps.sort_by_key(|s| std::cmp::Reverse(s.priority));
}

fn stored_steps(dii: &Obj, kind: Kind) -> Vec<Step> {
    dii.get(kind.steps_key())
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

fn stored_user_steps(dii: &Obj, key: &str) -> Vec<Step> {
    dii.get(key)
        .and_then(Value::as_array)
        .and_then(|l| parse_user_steps(l, key).ok())
        .unwrap_or_default()
}

fn step_obj(s: &Step) -> Obj {
    match serde_json::to_value(s) {
        Ok(Value::Object(o)) => o,
        _ => Obj::new(),
    }
}

/// Where a step left the run.
enum Outcome {
    Done,
    /// The agent is booting; its heartbeat resumes the run.
    AgentBoot,
    /// An agent command does the step; a heartbeat polls it.
    Command(PendingCommand),
    /// `deploy.hold`: wait for `unhold`.
    Hold,
}

impl From<Progress> for Outcome {
    fn from(p: Progress) -> Outcome {
        match p {
            Progress::Done => Outcome::Done,
            Progress::Running(c) => Outcome::Command(c),
        }
    }
}

/// Agent steps from a `get_*_steps` result: `{"clean_steps": {"Manager": [steps]}}`.
fn agent_steps(result: &StepsResult, kind: Kind) -> Vec<Step> {
    let mut out: Vec<Step> = vec![];
    for list in result
        .steps(kind.proto())
        .into_iter()
        .flat_map(|m| m.values())
    {
        for step in list {
            match out.iter_mut().find(|o| same(o, step)) {
                // Several managers offer it: the highest priority wins (IPA's rule).
                Some(o) if o.priority < step.priority => *o = step.clone(),
                Some(_) => {}
                None => out.push(step.clone()),
            }
        }
    }
    out
}

/// A clean step the user asked for that neither the conductor nor the agent offers.
#[derive(Debug, thiserror::Error)]
#[error("clean step {step} is not offered; offered: {offered}")]
pub struct NotOffered {
    step: String,
    offered: String,
}

impl Conductor {
    fn agent_node(node: &Node) -> Obj {
        let v = json!({
            "uuid": node.uuid,
            "properties": node.properties,
            "instance_info": crate::model::mask(&node.instance_info),
            "driver_info": crate::model::mask(&node.driver_info),
            "driver_internal_info": node.driver_internal_info,
        });
        match v {
            Value::Object(o) => o,
            _ => Obj::new(),
        }
    }

    async fn ports_json(&self, node: &Node) -> Vec<Value> {
        let ports = self
            .db
            .list_ports(&crate::db::PortFilter {
                node_uuid: Some(node.uuid.clone()),
                ..Default::default()
            })
            .await
            .unwrap_or_default();
        ports
            .iter()
            .map(|p| json!({"uuid": p.uuid, "address": p.address, "pxe_enabled": p.pxe_enabled}))
            .collect()
    }

    /// Asks the agent which steps it offers, and the versions of its managers.
    async fn fetch_agent_steps(
        &self,
        node: &Node,
        kind: Kind,
    ) -> Result<(Vec<Step>, Map<String, Value>), AgentCallError> {
        let params = GetStepsParams {
            node: Self::agent_node(node),
            ports: self.ports_json(node).await,
        };
        let name = kind.proto().get_steps_command();
        let r: StepsResult = agent::run(self.agent.as_ref(), node, name, &params).await?;
        // Sent back as `clean_version`: the agent refuses steps listed by other managers.
        Ok((agent_steps(&r, kind), r.hardware_manager_version))
    }

    /// The full list of a run, once the agent (if any) has told its steps.
    fn plan(
        &self,
        node: &Node,
        d: &NodeDrivers,
        kind: Kind,
        agent: &[Step],
    ) -> Result<Vec<Step>, NotOffered> {
        let dii = &node.driver_internal_info;
        match kind {
            Kind::Clean if node.manual_clean() => {
                let user = stored_user_steps(dii, "user_clean_steps");
                if !d.deploy.uses_agent() {
                    return Ok(user);
                }
                let mut offered = d.deploy.clean_steps();
                offered.extend(agent.iter().cloned());
                offered.push(ConductorStep::Hold.with_priority(0));
                for s in &user {
                    if !offered.iter().any(|o| same(o, s)) {
                        let names: Vec<String> = offered.iter().map(Step::name).collect();
                        return Err(NotOffered {
                            step: s.name(),
                            offered: names.join(", "),
                        });
                    }
                }
                Ok(user)
            }
            Kind::Clean => {
                let mut steps = d.deploy.clean_steps();
                // Ironic's defaults: erase_devices runs at the agent's priority (10) unless
                // the node's driver_info or the conductor's --erase-devices-priority says
                // otherwise (0: never); erase_devices_metadata always runs.
                let erase_priority = node
                    .driver_info
                    .get("erase_devices_priority")
                    .and_then(Value::as_i64)
                    .map(|p| p.clamp(0, i64::from(i32::MAX)) as i32)
                    .or(self.cfg.erase_devices_priority);
                for s in agent {
                    let mut s = s.clone();
                    if s.step == "erase_devices" {
                        if let Some(p) = erase_priority {
                            s.priority = p;
                        }
                    }
                    if !steps.iter().any(|o| same(o, &s)) {
                        steps.push(s);
                    }
                }
                steps.retain(|s| s.priority > 0);
                sort(&mut steps);
                Ok(steps)
            }
            Kind::Deploy => {
                let mut steps = d.deploy.deploy_steps();
                for u in stored_user_steps(dii, "user_deploy_steps") {
                    match steps.iter_mut().find(|s| same(s, &u)) {
                        Some(s) => *s = u,
                        None => steps.push(u),
                    }
                }
                steps.retain(|s| s.priority > 0);
                sort(&mut steps);
                Ok(steps)
            }
        }
    }

    /// Runs steps from the saved index until one waits, fails or all are done.
    pub(crate) async fn run_steps(
        self: &Arc<Self>,
        mut node: Node,
        d: &NodeDrivers,
        kind: Kind,
    ) -> EResult<()> {
        if !node.driver_internal_info.contains_key(kind.steps_key()) {
            if kind == Kind::Clean && d.deploy.uses_agent() {
                // The agent's clean steps are only known once it runs.
                if let Err(e) = self.boot_agent(&mut node, d).await {
                    let msg = format!("Failed to boot the agent for cleaning: {}", error_chain(&e));
                    return self.fail(&mut node, msg).await;
                }
                return self.transition(&mut node, Event::Wait).await;
            }
            match self.plan(&node, d, kind, &[]) {
                Ok(steps) => {
                    node.driver_internal_info
                        .insert(kind.steps_key().into(), json!(steps));
                    node.driver_internal_info
                        .insert(kind.index_key().into(), json!(0));
                }
                Err(e) => return self.fail(&mut node, e.to_string()).await,
            }
        }
        loop {
            let steps = stored_steps(&node.driver_internal_info, kind);
            let idx = node
                .driver_internal_info
                .get(kind.index_key())
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize;
            let Some(step) = steps.get(idx).cloned() else {
                return self.finish_steps(node, d, kind).await;
            };
            match kind {
                Kind::Clean => node.clean_step = step_obj(&step),
                Kind::Deploy => node.deploy_step = step_obj(&step),
            }
            node.driver_internal_info
                .insert("step_started_at".into(), json!(now()));
            node.updated_at = Some(now());
            self.db.save_node(&node).await?;
            match self.execute_step(&mut node, d, kind, &step).await {
                Ok(Outcome::Done) => {
                    node.driver_internal_info
                        .insert(kind.index_key().into(), json!(idx + 1));
                }
                Ok(Outcome::AgentBoot) => {
                    node.driver_internal_info
                        .insert("waiting".into(), json!("agent_boot"));
                    return self.transition(&mut node, Event::Wait).await;
                }
                Ok(Outcome::Command(pending)) => {
                    node.driver_internal_info
                        .insert("agent_command".into(), json!(pending));
                    node.driver_internal_info
                        .insert("waiting".into(), json!("agent_command"));
                    return self.transition(&mut node, Event::Wait).await;
                }
                Ok(Outcome::Hold) => {
                    node.driver_internal_info
                        .insert("waiting".into(), json!("hold"));
                    return self.transition(&mut node, Event::Hold).await;
                }
                Err(e) => {
                    let msg = format!(
                        "{} step {} failed: {}",
                        kind.title(),
                        step.name(),
                        error_chain(&e)
                    );
                    return self.fail(&mut node, msg).await;
                }
            }
        }
    }

    async fn execute_step(
        &self,
        node: &mut Node,
        d: &NodeDrivers,
        kind: Kind,
        step: &Step,
    ) -> DResult<Outcome> {
        let agent = d.deploy.uses_agent();
        let conductor_step = match (ConductorStep::of(step), kind) {
            (Some(ConductorStep::Hold), _) => return Ok(Outcome::Hold),
            (Some(s), Kind::Deploy) => Some(s),
            _ => None,
        };
        match conductor_step {
            Some(ConductorStep::Deploy) => {
                if agent {
                    self.boot_agent(node, d).await?;
                    Ok(Outcome::AgentBoot)
                } else {
                    d.power.set_state(node, PowerTarget::On).await?;
                    node.power_state = Some(POWER_ON.into());
                    Ok(Outcome::Done)
                }
            }
            Some(ConductorStep::WriteImage) => Ok(d
                .deploy
                .write_image(self.agent.as_ref(), node)
                .await?
                .into()),
            Some(ConductorStep::PrepareInstanceBoot) => {
                d.boot.prepare_instance(node).await?;
                d.management.set_boot_device(node, "disk", true).await?;
                Ok(Outcome::Done)
            }
            Some(ConductorStep::TearDownAgent) => {
                if agent {
                    agent::run::<Value>(self.agent.as_ref(), node, cmd::SYNC, &()).await?;
                }
                d.power.set_state(node, PowerTarget::Off).await?;
                node.power_state = Some(POWER_OFF.into());
                Ok(Outcome::Done)
            }
            Some(ConductorStep::BootInstance) => {
                d.power.set_state(node, PowerTarget::On).await?;
                node.power_state = Some(POWER_ON.into());
                Ok(Outcome::Done)
            }
            Some(ConductorStep::Hold) | None if agent => {
                let clean_version = (kind == Kind::Clean).then(|| {
                    node.driver_internal_info
                        .get("hardware_manager_version")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default()
                });
                let params = ExecuteStepParams {
                    step: step_obj(step),
                    node: Self::agent_node(node),
                    ports: self.ports_json(node).await,
                    clean_version,
                    deploy_version: None,
                };
                let name = kind.proto().execute_step_command();
                Ok(agent::start(self.agent.as_ref(), node, name, &params)
                    .await?
                    .into())
            }
            // Fake deploy: conductor-less steps have nothing to do.
            Some(ConductorStep::Hold) | None => Ok(Outcome::Done),
        }
    }

    /// The agent command the node waits for, if any.
    pub(crate) fn pending_command(node: &Node) -> Option<PendingCommand> {
        node.driver_internal_info
            .get("agent_command")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
    }

    /// Polls the pending agent command (no lock needed).
    pub(crate) async fn poll_command(
        &self,
        node: &Node,
    ) -> Result<Option<CommandResult>, AgentCallError> {
        let Some(pending) = Self::pending_command(node) else {
            return Ok(None);
        };
        agent::poll(self.agent.as_ref(), node, &pending)
            .await
            .map(Some)
    }

    /// Continues a waiting node (locked): after the agent booted, a command ended, or unhold.
    pub(crate) async fn resume(
        self: &Arc<Self>,
        mut node: Node,
        d: &NodeDrivers,
        polled: Option<CommandResult>,
    ) -> EResult<()> {
        let kind = Kind::of(node.provision_state);
        let waiting = node
            .driver_internal_info
            .get("waiting")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let idx = node
            .driver_internal_info
            .get(kind.index_key())
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        match waiting.as_str() {
            "agent_boot" => {
                let agent = if d.deploy.uses_agent() {
                    match self.fetch_agent_steps(&node, kind).await {
                        Ok((s, version)) => {
                            node.driver_internal_info
                                .insert("hardware_manager_version".into(), Value::Object(version));
                            s
                        }
                        Err(e) => {
                            let msg = format!(
                                "Cannot get the agent's {} steps: {}",
                                kind.name(),
                                error_chain(&e)
                            );
                            return self.fail(&mut node, msg).await;
                        }
                    }
                } else {
                    vec![]
                };
                if !node.driver_internal_info.contains_key(kind.steps_key()) {
                    match self.plan(&node, d, kind, &agent) {
                        Ok(steps) => {
                            node.driver_internal_info
                                .insert(kind.steps_key().into(), json!(steps));
                            node.driver_internal_info
                                .insert(kind.index_key().into(), json!(0));
                        }
                        Err(e) => return self.fail(&mut node, e.to_string()).await,
                    }
                } else {
                    // Deploy: the agent is up, so `deploy.deploy` is done; merge its steps.
                    let dii = &mut node.driver_internal_info;
                    let mut steps = stored_steps(dii, kind);
                    let current = steps.get(idx).map(|s| s.priority).unwrap_or(i32::MAX);
                    let mut rest: Vec<Step> = steps.split_off((idx + 1).min(steps.len()));
                    for a in agent {
                        let known = steps.iter().chain(rest.iter()).any(|s| same(s, &a));
                        if !known && a.priority > 0 && a.priority < current {
                            rest.push(a);
                        }
                    }
                    sort(&mut rest);
                    steps.extend(rest);
                    dii.insert(kind.steps_key().into(), json!(steps));
                    dii.insert(kind.index_key().into(), json!(idx + 1));
                }
            }
            "agent_command" => {
                let r = match polled {
                    Some(r) => Some(r),
                    None => match self.poll_command(&node).await {
                        Ok(r) => r,
                        Err(e) => {
                            let msg = format!("Cannot poll the agent: {}", error_chain(&e));
                            return self.fail(&mut node, msg).await;
                        }
                    },
                };
                if let Some(r) = r {
                    match r.command_status {
                        CommandStatus::Running => return Ok(()),
                        CommandStatus::Failed | CommandStatus::VersionMismatch => {
                            let step = match kind {
                                Kind::Clean => &node.clean_step,
                                Kind::Deploy => &node.deploy_step,
                            };
                            let name = format!(
                                "{}.{}",
                                step.get("interface").and_then(Value::as_str).unwrap_or("?"),
                                step.get("step").and_then(Value::as_str).unwrap_or("?")
                            );
                            let msg = format!(
                                "{} step {name} failed on the agent: {}",
                                kind.title(),
                                CommandFailure::describe(r.command_error.as_ref())
                            );
                            return self.fail(&mut node, msg).await;
                        }
                        CommandStatus::Succeeded => agent::record_result(&mut node, &r),
                    }
                }
                node.driver_internal_info
                    .insert(kind.index_key().into(), json!(idx + 1));
            }
            _ => {
                node.driver_internal_info
                    .insert(kind.index_key().into(), json!(idx + 1));
            }
        }
        node.driver_internal_info.remove("agent_command");
        node.driver_internal_info.remove("waiting");
        self.transition(&mut node, Event::Resume).await?;
        Box::pin(self.run_steps(node, d, kind)).await
    }

    async fn finish_steps(&self, mut node: Node, d: &NodeDrivers, kind: Kind) -> EResult<()> {
        let agent = d.deploy.uses_agent();
        match kind {
            Kind::Clean => {
                if agent {
                    let r = async {
                        d.power.set_state(&node, PowerTarget::Off).await?;
                        d.boot.clean_up_ramdisk(&node).await
                    }
                    .await;
                    if let Err(e) = r {
                        let msg =
                            format!("Failed to tear down after cleaning: {}", error_chain(&e));
                        return self.fail(&mut node, msg).await;
                    }
                    node.power_state = Some(POWER_OFF.into());
                }
                node.clean_step.clear();
                node.driver_internal_info.remove("user_clean_steps");
            }
            Kind::Deploy => {
                node.deploy_step.clear();
            }
        }
        reset(&mut node.driver_internal_info, kind);
        node.driver_internal_info.remove("step_started_at");
        if agent {
            self.db.clear_agent(&node.uuid).await?;
        }
        self.transition(&mut node, Event::Done).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_steps_are_validated() {
        let ok = parse_user_steps(
            &[json!({"interface": "deploy", "step": "erase_devices_metadata"})],
            "clean_steps",
        )
        .unwrap();
        assert_eq!(ok[0].step, "erase_devices_metadata");
        for (bad, why) in [
            (json!("x"), "must be an object"),
            (json!({"interface": "deploy"}), "\"step\""),
            (json!({"interface": "nope", "step": "a"}), "is unknown"),
            (
                json!({"interface": "deploy", "step": "a", "args": 1}),
                "\"args\"",
            ),
            (
                json!({"interface": "deploy", "step": "a", "bogus": 1}),
                "unknown key",
            ),
            (
                json!({"interface": "deploy", "step": "a", "priority": -1}),
                "priority",
            ),
        ] {
            let e = parse_user_steps(&[bad], "clean_steps")
                .unwrap_err()
                .to_string();
            assert!(e.contains(why), "{e}");
            assert!(e.starts_with("clean_steps[0]"), "{e}");
        }
    }

    #[test]
    fn agent_steps_take_the_highest_priority_per_step() {
        let r: StepsResult = serde_json::from_value(json!({"clean_steps": {
            "A": [{"interface": "deploy", "step": "erase_devices_metadata", "priority": 99}],
            "B": [{"interface": "deploy", "step": "erase_devices_metadata", "priority": 50},
                  {"interface": "deploy", "step": "erase_devices", "priority": 10}]
        }}))
        .unwrap();
        let s = agent_steps(&r, Kind::Clean);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].priority, 99);
    }
}
