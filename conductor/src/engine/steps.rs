//! Steps engine (CONTRACT.md §8): runs a planned run of clean or deploy steps from its
//! saved index, saving the current step before it runs; asynchronous agent steps wait and
//! are resumed from heartbeats. What runs, in which order, is `plan.rs`; where the run
//! stands is `progress.rs`.

use std::sync::Arc;

use ferrite_proto::agent::{CommandResult, CommandStatus};
use ferrite_proto::commands::{self as cmd, CommandFailure, ExecuteStepParams, GetStepsParams};
use ferrite_proto::steps::{Step, StepsResult};
use serde_json::{json, Map, Value};

use super::plan::{self, Kind, NotOffered};
use super::progress::{StepProgress, Waiting};
use super::{Conductor, EResult};
use crate::drivers::agent::{self, AgentCallError, Progress};
use crate::drivers::{ConductorStep, DResult, NodeDrivers, PowerTarget, POWER_OFF, POWER_ON};
use crate::error_chain;
use crate::model::{now, Node, Obj};
use crate::state::Event;

/// `driver_internal_info` key of the last deploy's kexec outcome.
pub const KEXEC_RESULT: &str = "ferrite_kexec";
/// How long cleaning waits, with fast track, for the first heartbeat of an agent that is
/// up (the node is on) but has not heartbeated yet.
const FAST_TRACK_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the agent may take to load the new kernel and jump.
const KEXEC_WITHIN: std::time::Duration = std::time::Duration::from_secs(120);
/// The timeout of each request of a kexec: starting it, then polling it.
const KEXEC_REQUEST: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// Fast track: the agent runs already; the run goes on with it at once.
    AgentReady,
    /// An agent command does the step; a heartbeat polls it.
    Command(agent::PendingCommand),
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
        let Some(proto) = kind.proto() else {
            // Servicing asks the agent for nothing.
            return Ok((vec![], Map::new()));
        };
        let name = proto.get_steps_command();
        let r: StepsResult = agent::run(self.agent.as_ref(), node, name, &params).await?;
        // Sent back as `clean_version`: the agent refuses steps listed by other managers.
        Ok((plan::agent_steps(&r, kind), r.hardware_manager_version))
    }

    /// The full list of a run, once the agent (if any) has told its steps.
    fn plan(
        &self,
        node: &Node,
        d: &NodeDrivers,
        kind: Kind,
        progress: &StepProgress,
        agent: &[Step],
    ) -> Result<Vec<Step>, String> {
        match kind {
            Kind::Clean if progress.manual_clean => plan::manual_clean(
                progress.user_steps(kind),
                d.deploy.clean_steps(),
                agent,
                d.deploy.uses_agent(),
            )
            .map_err(|e: NotOffered| e.to_string()),
            Kind::Service => plan::service(progress.user_steps(kind), d.deploy.uses_agent())
                .map_err(|e| e.to_string()),
            Kind::Clean => {
                // Ironic's defaults: erase_devices runs at the agent's priority (10) unless
                // the node's driver_info or the conductor's --erase-devices-priority says
                // otherwise (0: never); erase_devices_metadata always runs.
                let erase_priority = node
                    .driver_info
                    .get("erase_devices_priority")
                    .and_then(Value::as_i64)
                    .map(|p| p.clamp(0, i64::from(i32::MAX)) as i32)
                    .or(self.cfg.erase_devices_priority);
                Ok(plan::automated_clean(
                    d.deploy.clean_steps(),
                    agent,
                    erase_priority,
                ))
            }
            Kind::Deploy => Ok(plan::deploy(
                d.deploy.deploy_steps(),
                &progress.user_steps(kind),
            )),
        }
    }

    /// Runs steps from the saved index until one waits, fails or all are done.
    pub(crate) async fn run_steps(
        self: &Arc<Self>,
        mut node: Node,
        d: &NodeDrivers,
        kind: Kind,
    ) -> EResult<()> {
        let progress = StepProgress::load(&node.driver_internal_info)?;
        if progress.steps(kind).is_none() {
            if kind == Kind::Clean && d.deploy.uses_agent() {
                if self.agent_ready(&node) || self.await_fast_track_agent(&mut node).await? {
                    // Fast track: the agent runs already; ask it for its steps now.
                    return self.use_running_agent(node, d, kind).await;
                }
                // The agent's clean steps are only known once it runs.
                if let Err(e) = self.boot_agent(&mut node, d).await {
                    let msg = format!("Failed to boot the agent for cleaning: {}", error_chain(&e));
                    return self.fail(&mut node, msg).await;
                }
                StepProgress::edit(&mut node.driver_internal_info, |p| {
                    p.wait_for_agent_boot(kind)
                })?;
                return self.transition(&mut node, Event::Wait).await;
            }
            match self.plan(&node, d, kind, &progress, &[]) {
                Ok(steps) => StepProgress::edit(&mut node.driver_internal_info, |p| {
                    p.set_steps(kind, steps, 0)
                })?,
                Err(e) => return self.fail(&mut node, e).await,
            }
        }
        loop {
            let progress = StepProgress::load(&node.driver_internal_info)?;
            let idx = progress.index(kind);
            let Some(step) = progress.steps(kind).and_then(|s| s.get(idx)).cloned() else {
                return self.finish_steps(node, d, kind).await;
            };
            match kind {
                Kind::Clean => node.clean_step = step_obj(&step),
                Kind::Deploy => node.deploy_step = step_obj(&step),
                Kind::Service => {
                    node.extended
                        .insert("service_step".into(), Value::Object(step_obj(&step)));
                }
            }
            StepProgress::edit(&mut node.driver_internal_info, |p| {
                p.step_started_at = Some(now())
            })?;
            node.updated_at = Some(now());
            self.db.save_node(&node).await?;
            self.timeline
                .step_started(&node, kind.name(), &step.name())
                .await;
            // The agent refuses clean steps listed by other managers than those it told.
            let clean_version = (kind == Kind::Clean).then(|| {
                progress
                    .hardware_manager_version
                    .clone()
                    .unwrap_or_default()
            });
            match self
                .execute_step(&mut node, d, kind, &step, clean_version)
                .await
            {
                Ok(Outcome::Done) => {
                    self.timeline
                        .step_finished(&node.uuid, super::timeline::Outcome::Ok, None)
                        .await;
                    StepProgress::edit(&mut node.driver_internal_info, |p| p.advance(kind))?;
                }
                Ok(Outcome::AgentBoot) => {
                    StepProgress::edit(&mut node.driver_internal_info, |p| {
                        p.wait_for_agent_boot(kind)
                    })?;
                    return self.transition(&mut node, Event::Wait).await;
                }
                Ok(Outcome::AgentReady) => return self.use_running_agent(node, d, kind).await,
                Ok(Outcome::Command(pending)) => {
                    StepProgress::edit(&mut node.driver_internal_info, |p| {
                        p.wait_for_command(pending)
                    })?;
                    return self.transition(&mut node, Event::Wait).await;
                }
                // The hold state says what the node waits for.
                Ok(Outcome::Hold) => return self.transition(&mut node, Event::Hold).await,
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

    /// `driver_info.ferrite_kexec`: asks the agent to kexec into the OS it wrote. True when
    /// it did: the command succeeded (the agent loaded the kernel and jumps a moment later;
    /// an in-process agent records the jump), or the agent went away while it ran (an
    /// older agent jumps inside the command and never answers). False when the node must be power cycled instead: the agent
    /// refused (no boot entry it can load, an agent without the command), could not be
    /// asked, or the command still ran after [`KEXEC_WITHIN`]. The outcome and its reason
    /// stay in `driver_internal_info.ferrite_kexec`.
    ///
    /// The command is started without waiting and then polled with short request timeouts:
    /// an agent that jumped leaves no TCP peer to refuse a connection (behind QEMU's port
    /// forward, or a server's NIC reset by the new kernel), so a request to it hangs until
    /// its timeout — waiting for the command's answer with the ordinary 60 s agent timeout,
    /// then probing with it, took 120 s of a 30 s deploy.
    async fn kexec(&self, node: &mut Node) -> bool {
        let (booted, detail) = self.kexec_outcome(node).await;
        if !booted {
            tracing::warn!(node = %node.uuid, reason = %detail,
                           "kexec not possible: rebooting through the firmware");
        }
        node.driver_internal_info.insert(
            KEXEC_RESULT.into(),
            json!({"booted": booted, "detail": detail, "at": now()}),
        );
        booted
    }

    async fn kexec_outcome(&self, node: &Node) -> (bool, Value) {
        use std::time::Instant;
        use tokio::time::{sleep, timeout};
        let t = match agent::target(node) {
            Ok(t) => t,
            Err(e) => return (false, json!(error_chain(&e))),
        };
        let ended = |r: &CommandResult| match r.command_status {
            CommandStatus::Succeeded => {
                Some((true, r.command_result.clone().unwrap_or(Value::Null)))
            }
            CommandStatus::Failed | CommandStatus::VersionMismatch => {
                Some((false, json!(error_chain(&agent::failed(cmd::KEXEC, r)))))
            }
            CommandStatus::Running => None,
        };
        let started = timeout(
            KEXEC_REQUEST,
            self.agent.command(&t, cmd::KEXEC, Map::new(), false),
        )
        .await;
        let id = match started {
            Ok(Ok(r)) => match ended(&r) {
                Some(outcome) => return outcome,
                None => r.id,
            },
            Ok(Err(e)) => {
                return (
                    false,
                    json!(format!("could not start it: {}", error_chain(&e))),
                )
            }
            Err(_) => {
                return (
                    false,
                    json!(format!(
                        "the agent did not take the command within {} s",
                        KEXEC_REQUEST.as_secs()
                    )),
                )
            }
        };
        let deadline = Instant::now() + KEXEC_WITHIN;
        // Two probes in a row without an answer: one lost request is not a new kernel.
        let mut silent = 0;
        while Instant::now() < deadline {
            sleep(std::time::Duration::from_millis(250)).await;
            match timeout(KEXEC_REQUEST, self.agent.get_command(&t, &id)).await {
                Ok(Ok(r)) => {
                    silent = 0;
                    if let Some(outcome) = ended(&r) {
                        return outcome;
                    }
                }
                Ok(Err(crate::agent_client::AgentError::Unreachable { .. })) | Err(_) => {
                    silent += 1;
                    if silent >= 2 {
                        return (true, json!("the agent went away as the new kernel started"));
                    }
                }
                Ok(Err(e)) => {
                    return (
                        false,
                        json!(format!("the agent answered oddly: {}", error_chain(&e))),
                    )
                }
            }
        }
        (
            false,
            json!(format!(
                "the command still ran after {} s",
                KEXEC_WITHIN.as_secs()
            )),
        )
    }

    /// Fast track on a powered-on node whose agent has not heartbeated yet: the agent
    /// that has just posted its inspection data looks up and heartbeats a moment later, and
    /// a `provide` right after `inspect` would otherwise reboot it. Waits up to
    /// [`FAST_TRACK_GRACE`] for that heartbeat (the node's agent fields are refreshed from
    /// the database); false when none came, and the agent is booted as usual.
    async fn await_fast_track_agent(&self, node: &mut Node) -> EResult<bool> {
        if !self.fast_track(node) || node.power_state.as_deref() != Some(POWER_ON) {
            return Ok(false);
        }
        let deadline = std::time::Instant::now() + FAST_TRACK_GRACE;
        while std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            let Some(fresh) = self.db.get_node(&node.uuid).await? else {
                return Ok(false);
            };
            node.agent_url = fresh.agent_url;
            node.agent_token = fresh.agent_token;
            node.agent_verify_ca = fresh.agent_verify_ca;
            node.agent_last_heartbeat = fresh.agent_last_heartbeat;
            if self.agent_ready(node) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Fast track: the node's agent runs already, so the wait for its boot ends at once
    /// (through the wait state, as if its heartbeat had come): its steps are asked now.
    async fn use_running_agent(
        self: &Arc<Self>,
        mut node: Node,
        d: &NodeDrivers,
        kind: Kind,
    ) -> EResult<()> {
        StepProgress::edit(&mut node.driver_internal_info, |p| {
            p.wait_for_agent_boot(kind)
        })?;
        self.transition(&mut node, Event::Wait).await?;
        Box::pin(self.resume(node, d, None)).await
    }

    async fn execute_step(
        &self,
        node: &mut Node,
        d: &NodeDrivers,
        kind: Kind,
        step: &Step,
        clean_version: Option<Map<String, Value>>,
    ) -> DResult<Outcome> {
        let agent = d.deploy.uses_agent();
        if kind == Kind::Service {
            return self.execute_service_step(node, d, step).await;
        }
        let conductor_step = match (ConductorStep::of(step), kind) {
            (Some(ConductorStep::Hold), _) => return Ok(Outcome::Hold),
            (Some(s), Kind::Deploy) => Some(s),
            _ => None,
        };
        match conductor_step {
            Some(ConductorStep::Deploy) => {
                if agent && self.agent_ready(node) {
                    tracing::info!(node = %node.uuid, "fast track: deploying through the running agent");
                    Ok(Outcome::AgentReady)
                } else if agent {
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
                // Ironic's configure_local_boot: a partition image the agent wrote (direct
                // deploy) gets its boot loader from the agent; what was installed stays on
                // the node.
                let direct = agent && d.deploy.agent_installs_bootloader();
                if let Some(params) = direct
                    .then(|| agent::install_bootloader_params(node))
                    .flatten()
                {
                    let installed: Value =
                        agent::run(self.agent.as_ref(), node, cmd::INSTALL_BOOTLOADER, &params)
                            .await?;
                    tracing::info!(node = %node.uuid, ?installed, "boot loader installed");
                    node.driver_internal_info
                        .insert("ferrite_bootloader".into(), installed);
                }
                node.conductor = Some(self.cfg.host.clone());
                d.management.set_boot_device(node, "disk", true).await?;
                Ok(Outcome::Done)
            }
            Some(ConductorStep::TearDownAgent) => {
                node.driver_internal_info.remove(KEXEC_RESULT);
                let mut kexeced = false;
                if agent {
                    agent::run::<Value>(self.agent.as_ref(), node, cmd::SYNC, &()).await?;
                    self.collect_logs_after_success(node, "deploy").await;
                    if Self::kexec_wanted(node) {
                        kexeced = self.kexec(node).await;
                    }
                }
                if kexeced {
                    // The written OS runs already: nothing to power off or on.
                    return Ok(Outcome::Done);
                }
                if !Self::keeps_power(node) {
                    d.power.set_state(node, PowerTarget::Off).await?;
                    node.power_state = Some(POWER_OFF.into());
                }
                Ok(Outcome::Done)
            }
            Some(ConductorStep::BootInstance) => {
                if node
                    .driver_internal_info
                    .get(KEXEC_RESULT)
                    .and_then(|k| k["booted"].as_bool())
                    == Some(true)
                {
                    node.power_state = Some(POWER_ON.into());
                    return Ok(Outcome::Done);
                }
                let target = if Self::keeps_power(node) {
                    PowerTarget::Reboot
                } else {
                    PowerTarget::On
                };
                d.power.set_state(node, target).await?;
                node.power_state = Some(POWER_ON.into());
                Ok(Outcome::Done)
            }
            Some(ConductorStep::Hold) | None if agent => {
                let params = ExecuteStepParams {
                    step: step_obj(step),
                    node: Self::agent_node(node),
                    ports: self.ports_json(node).await,
                    clean_version,
                    deploy_version: None,
                    service_version: None,
                };
                let Some(proto) = kind.proto() else {
                    return Err(crate::drivers::DriverError::Invalid(format!(
                        "{} step {} cannot run on the agent",
                        kind.title(),
                        step.name()
                    )));
                };
                let name = proto.execute_step_command();
                Ok(agent::start(self.agent.as_ref(), node, name, &params)
                    .await?
                    .into())
            }
            // Fake deploy: conductor-less steps have nothing to do.
            Some(ConductorStep::Hold) | None => Ok(Outcome::Done),
        }
    }

    /// A service step (servicing runs on the conductor, see [`plan::service`]): Ironic's
    /// reserved steps act; any other step (accepted only without an agent) does nothing.
    async fn execute_service_step(
        &self,
        node: &mut Node,
        d: &NodeDrivers,
        step: &Step,
    ) -> DResult<Outcome> {
        let target = match step.step.as_str() {
            "hold" => return Ok(Outcome::Hold),
            "power_on" => PowerTarget::On,
            "power_off" if Self::keeps_power(node) => {
                return Err(crate::drivers::DriverError::Invalid(
                    "Failed to set node power state to power off: disable_power_off is set".into(),
                ))
            }
            "power_off" => PowerTarget::Off,
            "reboot" => PowerTarget::Reboot,
            _ if d.deploy.uses_agent() => {
                return Err(crate::drivers::DriverError::Invalid(
                    plan::service(vec![step.clone()], true)
                        .map(|_| String::new())
                        .unwrap_or_else(|e| e.to_string()),
                ))
            }
            _ => return Ok(Outcome::Done),
        };
        d.power.set_state(node, target).await?;
        node.power_state = Some(target.result().into());
        Ok(Outcome::Done)
    }

    /// The agent command the node waits for, if any.
    pub(crate) fn pending_command(node: &Node) -> EResult<Option<agent::PendingCommand>> {
        Ok(StepProgress::load(&node.driver_internal_info)?.agent_command)
    }

    /// Polls the agent command `pending` of `node` (no lock needed).
    pub(crate) async fn poll_command(
        &self,
        node: &Node,
        pending: &agent::PendingCommand,
    ) -> Result<CommandResult, AgentCallError> {
        agent::poll(self.agent.as_ref(), node, pending).await
    }

    /// Keeps what a running agent command says of its progress (`ferrite_progress`: the
    /// image writer's phase, bytes and rate) on the step's timeline entry.
    pub(crate) async fn note_agent_progress(&self, node: &str, r: &CommandResult) {
        if let Some(p) = r
            .command_result
            .as_ref()
            .and_then(|v| v.get("ferrite_progress"))
        {
            self.timeline.step_progress(node, p).await;
        }
    }

    /// Continues a waiting node (locked): after the agent booted, a command ended, or unhold.
    pub(crate) async fn resume(
        self: &Arc<Self>,
        mut node: Node,
        d: &NodeDrivers,
        polled: Option<CommandResult>,
    ) -> EResult<()> {
        let kind = Kind::of(node.provision_state);
        let mut progress = StepProgress::load(&node.driver_internal_info)?;
        let idx = progress.index(kind);
        match progress.waiting(kind) {
            Waiting::AgentBoot => {
                let agent = if d.deploy.uses_agent() {
                    match self.fetch_agent_steps(&node, kind).await {
                        Ok((s, version)) => {
                            progress.hardware_manager_version = Some(version);
                            progress.store(&mut node.driver_internal_info);
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
                match progress.steps(kind) {
                    None => match self.plan(&node, d, kind, &progress, &agent) {
                        Ok(steps) => progress.set_steps(kind, steps, 0),
                        Err(e) => return self.fail(&mut node, e).await,
                    },
                    // Deploy: the agent is up, so `deploy.deploy` is done; merge its steps.
                    Some(steps) => {
                        let user = progress.user_steps(kind);
                        let steps = plan::merge_agent_steps(steps.to_vec(), idx, agent, &user);
                        progress.set_steps(kind, steps, idx + 1);
                    }
                }
            }
            Waiting::AgentCommand => {
                let r = match (polled, &progress.agent_command) {
                    (Some(r), _) => Some(r),
                    (None, None) => None,
                    (None, Some(pending)) => match self.poll_command(&node, pending).await {
                        Ok(r) => Some(r),
                        Err(e) => {
                            let msg = format!("Cannot poll the agent: {}", error_chain(&e));
                            return self.fail(&mut node, msg).await;
                        }
                    },
                };
                if let Some(r) = r {
                    match r.command_status {
                        CommandStatus::Running => {
                            self.note_agent_progress(&node.uuid, &r).await;
                            return Ok(());
                        }
                        CommandStatus::Failed | CommandStatus::VersionMismatch => {
                            let service_step = node.ext("service_step");
                            let step = match kind {
                                Kind::Clean => &node.clean_step,
                                Kind::Deploy => &node.deploy_step,
                                Kind::Service => {
                                    service_step.as_object().unwrap_or(&node.clean_step)
                                }
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
                progress.advance(kind);
            }
            // After `unhold`: the hold step is over.
            Waiting::Nothing => progress.advance(kind),
        }
        progress.stop_waiting();
        progress.store(&mut node.driver_internal_info);
        self.transition(&mut node, Event::Resume).await?;
        Box::pin(self.run_steps(node, d, kind)).await
    }

    async fn finish_steps(&self, mut node: Node, d: &NodeDrivers, kind: Kind) -> EResult<()> {
        // The last step, when an agent command the heartbeat found finished.
        self.timeline
            .step_finished(&node.uuid, super::timeline::Outcome::Ok, None)
            .await;
        let agent = d.deploy.uses_agent();
        let fast = kind == Kind::Clean && self.fast_track(&node);
        match kind {
            Kind::Clean => {
                if agent {
                    // Fast track: the agent keeps running for the deploy that follows.
                    let keep = Self::keeps_power(&node) || fast;
                    self.collect_logs_after_success(&node, "clean").await;
                    let r = async {
                        if !keep {
                            d.power.set_state(&node, PowerTarget::Off).await?;
                        }
                        if fast {
                            return Ok(());
                        }
                        d.boot.clean_up_ramdisk(&node).await
                    }
                    .await;
                    if let Err(e) = r {
                        let msg =
                            format!("Failed to tear down after cleaning: {}", error_chain(&e));
                        return self.fail(&mut node, msg).await;
                    }
                    if !keep {
                        node.power_state = Some(POWER_OFF.into());
                    }
                }
                node.clean_step.clear();
                StepProgress::edit(&mut node.driver_internal_info, |p| {
                    p.user_clean_steps = None
                })?;
            }
            Kind::Deploy => {
                node.deploy_step.clear();
            }
            Kind::Service => {
                node.extended.remove("service_step");
                StepProgress::edit(&mut node.driver_internal_info, |p| {
                    p.user_service_steps = None
                })?;
            }
        }
        StepProgress::edit(&mut node.driver_internal_info, |p| {
            p.reset(kind);
            p.step_started_at = None;
        })?;
        if agent && kind != Kind::Service && !fast {
            self.db.clear_agent(&node.uuid).await?;
        }
        self.transition(&mut node, Event::Done).await
    }
}
