//! Steps engine (CONTRACT.md §8): gathers conductor and agent steps, orders them by
//! priority, saves the current step and its index before it runs, runs asynchronous agent
//! steps and resumes them from heartbeats.

use std::sync::Arc;

use ferrite_proto::agent::{CommandResult, CommandStatus};
use ferrite_proto::steps::Step;
use serde_json::{json, Map, Value};

use super::{Conductor, EResult, EngineError};
use crate::agent_client::AgentTarget;
use crate::drivers::{NodeDrivers, PowerTarget, POWER_OFF, POWER_ON};
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
        match self {
            Kind::Clean => "clean",
            Kind::Deploy => "deploy",
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

enum Outcome {
    Done,
    Wait(&'static str),
    Hold,
}

/// Agent steps from a `get_*_steps` result: `{"clean_steps": {"Manager": [steps]}}`.
fn agent_steps(result: &Option<Value>, kind: Kind) -> Vec<Step> {
    let mut out: Vec<Step> = vec![];
    let by_manager = result
        .as_ref()
        .and_then(|r| r.get(kind.steps_key()))
        .and_then(Value::as_object);
    for list in by_manager.into_iter().flat_map(|m| m.values()) {
        for s in list.as_array().into_iter().flatten() {
            if let Ok(step) = serde_json::from_value::<Step>(s.clone()) {
                match out.iter_mut().find(|o| same(o, &step)) {
                    // Several managers offer it: the highest priority wins (IPA's rule).
                    Some(o) if o.priority < step.priority => *o = step,
                    Some(_) => {}
                    None => out.push(step),
                }
            }
        }
    }
    out
}

fn command_error(r: &CommandResult) -> String {
    match &r.command_error {
        Some(Value::Object(o)) => {
            let get = |k: &str| o.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            match (get("message"), get("details")) {
                (Some(m), Some(d)) if m != d => format!("{m}: {d}"),
                (Some(m), _) => m.to_string(),
                (None, Some(d)) => d.to_string(),
                (None, None) => Value::Object(o.clone()).to_string(),
            }
        }
        Some(v) => v.to_string(),
        None => "the agent reported failure without details".into(),
    }
}

impl Conductor {
    fn target<'a>(&self, node: &'a Node) -> Result<AgentTarget<'a>, String> {
        let url = node
            .agent_url
            .as_deref()
            .ok_or("the agent has not heartbeated yet, so its URL is unknown")?;
        Ok(AgentTarget {
            url,
            token: node.agent_token.as_deref(),
            verify_ca: node.agent_verify_ca.as_deref(),
        })
    }

    fn agent_node(node: &Node) -> Value {
        json!({
            "uuid": node.uuid,
            "properties": node.properties,
            "instance_info": crate::model::mask(&node.instance_info),
            "driver_info": crate::model::mask(&node.driver_info),
            "driver_internal_info": node.driver_internal_info,
        })
    }

    async fn ports_json(&self, node: &Node) -> Value {
        let ports = self
            .db
            .list_ports(&crate::db::PortFilter {
                node_uuid: Some(node.uuid.clone()),
                ..Default::default()
            })
            .await
            .unwrap_or_default();
        Value::Array(
            ports
                .iter()
                .map(
                    |p| json!({"uuid": p.uuid, "address": p.address, "pxe_enabled": p.pxe_enabled}),
                )
                .collect(),
        )
    }

    /// Asks the agent which steps it offers.
    async fn fetch_agent_steps(
        &self,
        node: &Node,
        kind: Kind,
    ) -> Result<(Vec<Step>, Value), String> {
        let t = self.target(node)?;
        let mut params = Map::new();
        params.insert("node".into(), Self::agent_node(node));
        params.insert("ports".into(), self.ports_json(node).await);
        let name = format!("{0}.get_{0}_steps", kind.name());
        let r = self
            .agent
            .command(&t, &name, params, true)
            .await
            .map_err(|e| crate::error_chain(&e))?;
        if r.command_status == CommandStatus::Failed {
            return Err(format!("{name} failed: {}", command_error(&r)));
        }
        // Sent back as `clean_version`: the agent refuses steps listed by other managers.
        let version = r
            .command_result
            .as_ref()
            .and_then(|v| v.get("hardware_manager_version"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        Ok((agent_steps(&r.command_result, kind), version))
    }

    /// The full list of a run, once the agent (if any) has told its steps.
    fn plan(
        &self,
        node: &Node,
        d: &NodeDrivers,
        kind: Kind,
        agent: &[Step],
    ) -> Result<Vec<Step>, String> {
        let dii = &node.driver_internal_info;
        match kind {
            Kind::Clean if node.manual_clean() => {
                let user = stored_user_steps(dii, "user_clean_steps");
                if !d.deploy.uses_agent() {
                    return Ok(user);
                }
                let mut offered = d.deploy.clean_steps();
                offered.extend(agent.iter().cloned());
                offered.push(crate::drivers::step("deploy", "hold", 0));
                for s in &user {
                    if !offered.iter().any(|o| same(o, s)) {
                        let names: Vec<String> = offered
                            .iter()
                            .map(|o| format!("{}.{}", o.interface, o.step))
                            .collect();
                        return Err(format!(
                            "clean step {}.{} is not offered; offered: {}",
                            s.interface,
                            s.step,
                            names.join(", ")
                        ));
                    }
                }
                Ok(user)
            }
            Kind::Clean => {
                let mut steps = d.deploy.clean_steps();
                let erase_priority = node
                    .driver_info
                    .get("erase_devices_priority")
                    .and_then(Value::as_i64);
                for s in agent {
                    let mut s = s.clone();
                    if s.step == "erase_devices" {
                        s.priority = erase_priority.unwrap_or(0) as i32;
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
                    return self
                        .fail(
                            &mut node,
                            format!("Failed to boot the agent for cleaning: {e}"),
                        )
                        .await;
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
                Err(e) => return self.fail(&mut node, e).await,
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
                Ok(Outcome::Wait(why)) => {
                    node.driver_internal_info
                        .insert("waiting".into(), json!(why));
                    return self.transition(&mut node, Event::Wait).await;
                }
                Ok(Outcome::Hold) => {
                    node.driver_internal_info
                        .insert("waiting".into(), json!("hold"));
                    return self.transition(&mut node, Event::Hold).await;
                }
                Err(e) => {
                    let msg = format!(
                        "{} step {}.{} failed: {e}",
                        if kind == Kind::Clean {
                            "Clean"
                        } else {
                            "Deploy"
                        },
                        step.interface,
                        step.step
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
    ) -> Result<Outcome, String> {
        let agent = d.deploy.uses_agent();
        let s = |e: crate::drivers::DriverError| e.to_string();
        match (step.interface.as_str(), step.step.as_str(), kind) {
            ("deploy", "hold", _) => Ok(Outcome::Hold),
            ("deploy", "deploy", Kind::Deploy) => {
                if agent {
                    self.boot_agent(node, d).await.map_err(s)?;
                    Ok(Outcome::Wait("agent_boot"))
                } else {
                    d.power.set_state(node, PowerTarget::On).await.map_err(s)?;
                    node.power_state = Some(POWER_ON.into());
                    Ok(Outcome::Done)
                }
            }
            ("deploy", "write_image", Kind::Deploy) if d.deploy.name() == "iscsi" => {
                let t = self.target(node)?;
                let info = image_info(node)?;
                let summary =
                    crate::drivers::iscsi::write_image(&self.agent, &t, node, info).await?;
                node.driver_internal_info
                    .insert("ferrite_iscsi_write".into(), summary);
                Ok(Outcome::Done)
            }
            ("deploy", "write_image", Kind::Deploy) if agent => {
                let mut params = Map::new();
                params.insert("image_info".into(), image_info(node)?);
                params.insert(
                    "configdrive".into(),
                    node.instance_info
                        .get("configdrive")
                        .cloned()
                        .unwrap_or(Value::Null),
                );
                self.agent_async(node, "standby.prepare_image", params)
                    .await
            }
            ("deploy", "prepare_instance_boot", Kind::Deploy) => {
                d.boot.prepare_instance(node).await.map_err(s)?;
                d.management
                    .set_boot_device(node, "disk", true)
                    .await
                    .map_err(s)?;
                Ok(Outcome::Done)
            }
            ("deploy", "tear_down_agent", Kind::Deploy) => {
                if agent {
                    let t = self.target(node)?;
                    let r = self
                        .agent
                        .command(&t, "standby.sync", Map::new(), true)
                        .await
                        .map_err(|e| crate::error_chain(&e))?;
                    if r.command_status == CommandStatus::Failed {
                        return Err(format!("standby.sync failed: {}", command_error(&r)));
                    }
                }
                d.power.set_state(node, PowerTarget::Off).await.map_err(s)?;
                node.power_state = Some(POWER_OFF.into());
                Ok(Outcome::Done)
            }
            ("deploy", "boot_instance", Kind::Deploy) => {
                d.power.set_state(node, PowerTarget::On).await.map_err(s)?;
                node.power_state = Some(POWER_ON.into());
                Ok(Outcome::Done)
            }
            _ if agent => {
                let mut params = Map::new();
                params.insert("step".into(), Value::Object(step_obj(step)));
                params.insert("node".into(), Self::agent_node(node));
                params.insert("ports".into(), self.ports_json(node).await);
                if kind == Kind::Clean {
                    let version = node
                        .driver_internal_info
                        .get("hardware_manager_version")
                        .cloned()
                        .unwrap_or_else(|| json!({}));
                    params.insert("clean_version".into(), version);
                }
                let name = format!("{0}.execute_{0}_step", kind.name());
                self.agent_async(node, &name, params).await
            }
            // Fake deploy: conductor-less steps have nothing to do.
            _ => Ok(Outcome::Done),
        }
    }

    /// Starts an asynchronous agent command; remembers it so a heartbeat can poll it.
    async fn agent_async(
        &self,
        node: &mut Node,
        name: &str,
        params: Map<String, Value>,
    ) -> Result<Outcome, String> {
        let t = self.target(node)?;
        let r = self
            .agent
            .command(&t, name, params, false)
            .await
            .map_err(|e| crate::error_chain(&e))?;
        match r.command_status {
            CommandStatus::Succeeded => {
                record_result(node, &r);
                Ok(Outcome::Done)
            }
            CommandStatus::Failed => Err(command_error(&r)),
            CommandStatus::Running => {
                node.driver_internal_info
                    .insert("agent_command".into(), json!({"id": r.id, "name": name}));
                Ok(Outcome::Wait("agent_command"))
            }
        }
    }

    /// The id of the agent command the node waits for, if any.
    pub(crate) fn pending_command(node: &Node) -> Option<String> {
        node.driver_internal_info
            .get("agent_command")
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// Polls the pending agent command (no lock needed).
    pub(crate) async fn poll_command(&self, node: &Node) -> Result<Option<CommandResult>, String> {
        let Some(id) = Self::pending_command(node) else {
            return Ok(None);
        };
        let t = self.target(node)?;
        self.agent
            .get_command(&t, &id)
            .await
            .map(Some)
            .map_err(|e| crate::error_chain(&e))
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
                                .insert("hardware_manager_version".into(), version);
                            s
                        }
                        Err(e) => {
                            return self
                                .fail(
                                    &mut node,
                                    format!("Cannot get the agent's {} steps: {e}", kind.name()),
                                )
                                .await
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
                        Err(e) => return self.fail(&mut node, e).await,
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
                            let msg = format!("Cannot poll the agent: {e}");
                            return self.fail(&mut node, msg).await;
                        }
                    },
                };
                if let Some(r) = r {
                    match r.command_status {
                        CommandStatus::Running => return Ok(()),
                        CommandStatus::Failed => {
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
                                if kind == Kind::Clean {
                                    "Clean"
                                } else {
                                    "Deploy"
                                },
                                command_error(&r)
                            );
                            return self.fail(&mut node, msg).await;
                        }
                        CommandStatus::Succeeded => record_result(&mut node, &r),
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
                        return self
                            .fail(
                                &mut node,
                                format!("Failed to tear down after cleaning: {e}"),
                            )
                            .await;
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

/// `image_info` for `standby.prepare_image` from the node's `instance_info` (CONTRACT.md §5).
/// A partition image also gets its layout, as Ironic sends it: sizes (`root_gb`/`root_mb`,
/// `swap_mb`, `ephemeral_gb`/`ephemeral_mb`), `disk_label` and `boot_mode` from the
/// capabilities (instance_info's first, then the node's), `deploy_boot_mode` defaulting to
/// uefi as Ironic's does.
fn image_info(node: &Node) -> Result<Value, String> {
    let ii = &node.instance_info;
    let get = |k: &str| ii.get(k).cloned().unwrap_or(Value::Null);
    let source = ii.get("image_source").and_then(Value::as_str).unwrap_or("");
    let image_type = ii.get("image_type").cloned().unwrap_or(json!("whole-disk"));
    let mut info = json!({
        "id": source,
        "urls": [source],
        "disk_format": ii.get("image_disk_format").cloned().unwrap_or(json!("raw")),
        "image_type": image_type,
        "os_hash_algo": get("image_os_hash_algo"),
        "os_hash_value": get("image_os_hash_value"),
        "checksum": get("image_checksum"),
        "stream_raw_images": true,
        "node_uuid": node.uuid,
    });
    if image_type != "partition" {
        return Ok(info);
    }
    let layout = json!({
        "root_mb": mebibytes(ii, "root")?,
        "swap_mb": mebibytes(ii, "swap")?,
        "ephemeral_mb": mebibytes(ii, "ephemeral")?,
        "ephemeral_format": get("ephemeral_format"),
        "preserve_ephemeral": flag(ii, "preserve_ephemeral")?,
        "disk_label": node.capability("disk_label"),
        "deploy_boot_mode": node.boot_mode(),
        "boot_option": "local",
    });
    if let (Some(i), Value::Object(l)) = (info.as_object_mut(), layout) {
        i.extend(l);
    }
    Ok(info)
}

/// `NAME_mb`, or `NAME_gb` × 1024, from instance_info: a whole number (or a string of one).
fn mebibytes(ii: &Map<String, Value>, name: &str) -> Result<Value, String> {
    let whole = |k: &str| -> Result<Option<u64>, String> {
        match ii.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(Value::String(s)) if s.trim().parse::<u64>().is_ok() => {
                Ok(s.trim().parse::<u64>().ok())
            }
            Some(v) => Err(format!(
                "instance_info.{k} must be a whole number, got {v}; fix it with `ferrite node set`"
            )),
        }
    };
    if let Some(mb) = whole(&format!("{name}_mb"))? {
        return Ok(json!(mb));
    }
    Ok(match whole(&format!("{name}_gb"))? {
        Some(gb) => json!(gb.saturating_mul(1024)),
        None => Value::Null,
    })
}

/// A boolean of instance_info, also as the strings "true"/"false" (the CLI sets strings).
fn flag(ii: &Map<String, Value>, key: &str) -> Result<Value, String> {
    match ii.get(key) {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::Bool(b)) => Ok(json!(b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(json!(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(json!(false)),
        Some(v) => Err(format!(
            "instance_info.{key} must be true or false, got {v}; fix it with `ferrite node set`"
        )),
    }
}

/// Facts a finished agent command leaves on the node: after `prepare_image`, the root
/// UUID it reported (`root_uuid_or_disk_id`, as Ironic keeps it).
fn record_result(node: &mut Node, r: &CommandResult) {
    if !r.command_name.ends_with("prepare_image") {
        return;
    }
    let message = r
        .command_result
        .as_ref()
        .and_then(|v| v.get("result"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(uuid) = message
        .split_whitespace()
        .find_map(|w| w.strip_prefix("root_uuid="))
        .map(|u| u.trim_end_matches([';', ',']))
        .filter(|u| !u.is_empty())
    {
        node.driver_internal_info
            .insert("root_uuid_or_disk_id".into(), json!(uuid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_with(instance_info: Value, properties: Value) -> Node {
        let mut n = crate::api::nodes::blank_node();
        n.instance_info = instance_info.as_object().cloned().unwrap_or_default();
        n.properties = properties.as_object().cloned().unwrap_or_default();
        n
    }

    #[test]
    fn partition_images_get_their_layout_as_ironic_sends_it() {
        let n = node_with(
            json!({"image_source": "http://i/root.img", "image_type": "partition",
                   "root_gb": 10, "swap_mb": "512", "ephemeral_gb": "2",
                   "preserve_ephemeral": "false",
                   "capabilities": {"disk_label": "msdos"}}),
            json!({"capabilities": "boot_mode:bios,disk_label:gpt"}),
        );
        let i = image_info(&n).unwrap();
        assert_eq!(i["image_type"], "partition");
        assert_eq!(i["root_mb"], 10 * 1024);
        assert_eq!(i["swap_mb"], 512);
        assert_eq!(i["ephemeral_mb"], 2048);
        assert_eq!(i["preserve_ephemeral"], false);
        assert_eq!(i["disk_label"], "msdos", "instance_info's capabilities win");
        assert_eq!(i["deploy_boot_mode"], "bios", "then the node's");
        // The agent's own type reads it.
        let parsed: ferrite_proto::image::ImageInfo = serde_json::from_value(i).unwrap();
        assert_eq!(parsed.root_mb, Some(10240));
        assert_eq!(parsed.disk_label.as_deref(), Some("msdos"));

        let plain = node_with(
            json!({"image_source": "http://i/root.img", "image_type": "partition", "root_mb": 64}),
            json!({}),
        );
        let i = image_info(&plain).unwrap();
        assert_eq!(i["deploy_boot_mode"], "uefi", "Ironic's default boot mode");
        assert!(i["disk_label"].is_null());
        assert_eq!(i["root_mb"], 64);

        let whole = node_with(
            json!({"image_source": "http://i/disk.raw", "root_gb": 10}),
            json!({}),
        );
        let i = image_info(&whole).unwrap();
        assert_eq!(i["image_type"], "whole-disk");
        assert!(
            i.get("root_mb").is_none(),
            "whole-disk images carry no layout"
        );
    }

    #[test]
    fn bad_partition_sizes_say_which_field() {
        for (field, v) in [
            ("root_gb", json!("ten")),
            ("swap_mb", json!(-1)),
            ("preserve_ephemeral", json!("yes")),
        ] {
            let mut ii = json!({"image_source": "http://i/r.img", "image_type": "partition"});
            ii[field] = v;
            let e = image_info(&node_with(ii, json!({}))).unwrap_err();
            assert!(e.contains(&format!("instance_info.{field}")), "{e}");
        }
    }

    #[test]
    fn prepare_image_result_leaves_the_root_uuid() {
        let mut n = node_with(json!({}), json!({}));
        let r = |name: &str, msg: &str| CommandResult {
            id: "1".into(),
            command_name: name.into(),
            command_params: Map::new(),
            command_status: CommandStatus::Succeeded,
            command_error: None,
            command_result: Some(json!({"result": msg})),
        };
        record_result(&mut n, &r("prepare_image", "prepare_image: image (x) written to device /dev/sda root_uuid=0x1234abcd; config drive written"));
        assert_eq!(n.driver_internal_info["root_uuid_or_disk_id"], "0x1234abcd");
        let mut m = node_with(json!({}), json!({}));
        record_result(&mut m, &r("execute_clean_step", "root_uuid=nope"));
        record_result(&mut m, &r("prepare_image", "written root_uuid="));
        assert!(!m.driver_internal_info.contains_key("root_uuid_or_disk_id"));
    }

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
        let r = Some(json!({"clean_steps": {
            "A": [{"interface": "deploy", "step": "erase_devices_metadata", "priority": 99}],
            "B": [{"interface": "deploy", "step": "erase_devices_metadata", "priority": 50},
                  {"interface": "deploy", "step": "erase_devices", "priority": 10}]
        }}));
        let s = agent_steps(&r, Kind::Clean);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].priority, 99);
    }
}
