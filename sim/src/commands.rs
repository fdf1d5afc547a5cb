//! The agent's command API on a simulated machine: the commands the conductor sends
//! (steps, `standby.prepare_image` writing at the configured rate into nothing, sync, power
//! off, partition UUIDs, logs, hardware info), answered with the real agent's result shapes
//! (`ferrite_proto`). Asynchronous commands run one at a time, as in the real agent.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ferrite_proto::agent::{reported_name, CommandRequest, CommandResult, CommandStatus, Fault};
use ferrite_proto::commands::{
    self as cmd, ExecuteStepParams, PrepareImageParams, PrepareImageResult,
};
use ferrite_proto::steps::{ExecuteStepResult, Step, StepKind, StepsResult};
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::agent::AgentBoot;
use crate::machine::Machine;
use crate::Fleet;

/// The real agent's hardware manager, name and version.
const MANAGER_CLASS: &str = "GenericHardwareManager";
const MANAGER_NAME: &str = "generic_hardware_manager";
const MANAGER_VERSION: &str = "1.2";

/// A refused command: HTTP status and IPA's fault body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub fault: Fault,
}

fn refused(status: u16, client: bool, msg: impl Into<String>) -> Refused {
    Refused {
        status,
        fault: Fault {
            faultcode: if client { "Client" } else { "Server" }.into(),
            faultstring: msg.into(),
        },
    }
}

fn step(name: &str, priority: i32, abortable: bool) -> Step {
    Step {
        interface: "deploy".into(),
        step: name.into(),
        priority,
        args: Map::new(),
        abortable,
        reboot_requested: false,
    }
}

fn steps(kind: StepKind) -> Value {
    let list = match kind {
        StepKind::Clean => vec![
            step("erase_devices", 10, true),
            step("erase_devices_metadata", 99, true),
        ],
        StepKind::Deploy => vec![step("write_image", 80, false)],
        StepKind::Service => vec![],
    };
    let mut versions = Map::new();
    versions.insert(MANAGER_NAME.into(), json!(MANAGER_VERSION));
    let by: BTreeMap<String, Vec<Step>> = [(MANAGER_CLASS.to_string(), list)].into();
    serde_json::to_value(StepsResult::new(kind, by, versions)).unwrap_or(Value::Null)
}

/// The simulated disk's identifier (stable per node).
fn root_uuid(machine: &Machine) -> String {
    uuid::Uuid::from_u128(0x5e11_0000_0000_4000_8000_0000_0000_0000 | machine.index as u128)
        .to_string()
}

/// An empty tar (two zero blocks), gzipped and base64-encoded: the system logs.
fn empty_logs() -> String {
    use base64::Engine;
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(&[0u8; 1024]);
    let bytes = gz.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What an asynchronous command does once started.
enum Work {
    /// Writes the image (prepare_image, or the write_image deploy step).
    Write {
        params: Box<PrepareImageParams>,
        step: Option<Map<String, Value>>,
    },
    /// A step that takes `time` and has no result.
    Step {
        kind: StepKind,
        step: Map<String, Value>,
        time: Duration,
    },
    PowerOff,
    Reboot,
    Nothing,
}

fn parse<T: serde::de::DeserializeOwned>(
    name: &str,
    params: Map<String, Value>,
) -> Result<T, Refused> {
    serde_json::from_value(Value::Object(params))
        .map_err(|e| refused(400, true, format!("invalid parameters of {name}: {e}")))
}

/// Runs one `POST /v1/commands/` on the agent of `machine`.
pub async fn execute(
    fleet: &Arc<Fleet>,
    machine: &Arc<Machine>,
    agent: &Arc<AgentBoot>,
    req: CommandRequest,
    wait: bool,
) -> Result<CommandResult, Refused> {
    fleet.stats.command();
    let name = req.name.clone();
    let sync = |result: Value| -> Result<CommandResult, Refused> {
        let r = CommandResult {
            id: uuid::Uuid::new_v4().to_string(),
            command_name: reported_name(&name).to_string(),
            command_params: Map::new(),
            command_status: CommandStatus::Succeeded,
            command_error: None,
            command_result: Some(result),
        };
        agent
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(r.clone());
        Ok(r)
    };
    let work = match name.as_str() {
        cmd::GET_CLEAN_STEPS => return sync(steps(StepKind::Clean)),
        cmd::GET_DEPLOY_STEPS => return sync(steps(StepKind::Deploy)),
        cmd::SYNC => return sync(Value::Null),
        cmd::GET_PARTITION_UUIDS => {
            return sync(json!({"root uuid": root_uuid(machine), "partitions": {},
                               "disk identifier": root_uuid(machine)}))
        }
        "log.collect_system_logs" => return sync(json!({"system_logs": empty_logs()})),
        "poll.get_hardware_info" => {
            return sync(serde_json::to_value(crate::agent::inventory(fleet, machine)).unwrap_or_default())
        }
        "system.lockdown" => {
            let r = sync(Value::Null);
            agent.die();
            return r;
        }
        cmd::PREPARE_IMAGE => Work::Write {
            params: Box::new(parse(&name, req.params)?),
            step: None,
        },
        cmd::EXECUTE_CLEAN_STEP | cmd::EXECUTE_DEPLOY_STEP => {
            let kind = if name == cmd::EXECUTE_CLEAN_STEP {
                StepKind::Clean
            } else {
                StepKind::Deploy
            };
            let p: ExecuteStepParams = parse(&name, req.params)?;
            let step_name = p.step.get("step").and_then(Value::as_str).unwrap_or_default();
            match (kind, step_name) {
                (StepKind::Deploy, "write_image") => {
                    let args = p.step.get("args").cloned().unwrap_or_else(|| json!({}));
                    let params = serde_json::from_value(args)
                        .map_err(|e| refused(400, true, format!("invalid write_image args: {e}")))?;
                    Work::Write {
                        params: Box::new(params),
                        step: Some(p.step),
                    }
                }
                (StepKind::Clean, "erase_devices") => Work::Step {
                    kind,
                    step: p.step,
                    time: fleet.cfg.erase_time,
                },
                (StepKind::Clean, "erase_devices_metadata") => Work::Step {
                    kind,
                    step: p.step,
                    time: fleet.cfg.erase_time,
                },
                _ => Work::Step {
                    kind,
                    step: p.step,
                    time: Duration::MAX,
                },
            }
        }
        "standby.power_off" => Work::PowerOff,
        "standby.run_image" => Work::Reboot,
        cmd::INSTALL_BOOTLOADER => Work::Nothing,
        other => {
            return Err(refused(
                400,
                true,
                format!("unknown command {other:?} (ferrite-sim implements the commands the conductor sends)"),
            ))
        }
    };
    if agent.busy.swap(true, Ordering::SeqCst) {
        return Err(refused(
            409,
            true,
            "an asynchronous command is already running",
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let running = CommandResult {
        id: id.clone(),
        command_name: reported_name(&name).to_string(),
        command_params: Map::new(),
        command_status: CommandStatus::Running,
        command_error: None,
        command_result: None,
    };
    agent
        .commands
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(running.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (f, m, a) = (fleet.clone(), machine.clone(), agent.clone());
    tokio::spawn(async move {
        let outcome = run_work(&f, &m, &a, work).await;
        let Some((status, error, result)) = outcome else {
            return; // the agent died or the machine went off: the command never ends
        };
        let mut list = a.commands.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = None;
        if let Some(c) = list.iter_mut().find(|c| c.id == id) {
            c.command_status = status;
            c.command_error = error;
            c.command_result = result;
            done = Some(c.clone());
        }
        drop(list);
        a.busy.store(false, Ordering::SeqCst);
        a.finished.notify_one();
        if let Some(d) = done {
            let _ = tx.send(d);
        }
    });
    if !wait {
        return Ok(running);
    }
    rx.await
        .map_err(|_| refused(503, false, "the agent stopped while the command ran"))
}

type Outcome = (CommandStatus, Option<Value>, Option<Value>);

fn failure(message: String) -> Outcome {
    (
        CommandStatus::Failed,
        Some(
            json!({"type": "CommandExecutionError", "code": 500, "message": message,
                    "details": message}),
        ),
        None,
    )
}

async fn run_work(
    fleet: &Arc<Fleet>,
    machine: &Arc<Machine>,
    agent: &Arc<AgentBoot>,
    work: Work,
) -> Option<Outcome> {
    let sleep = |d: Duration| async move {
        tokio::select! {
            _ = agent.life().cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    };
    match work {
        Work::Write { params, step } => {
            let (time, dies) = {
                let mut s = machine.state();
                let forced = fleet.cfg.agent_death_nodes.contains(&machine.index) && s.deaths == 0;
                let p = fleet.cfg.agent_death_probability;
                let dies = forced || (p > 0.0 && s.rng.random::<f64>() < p);
                (fleet.cfg.write_time(s.slowdown), dies)
            };
            if dies {
                sleep(time / 2).await;
                machine.state().deaths += 1;
                tracing::info!(
                    node = machine.index,
                    "failure injection: the agent dies mid-write"
                );
                agent.die();
                return None;
            }
            if !sleep(time).await {
                return None;
            }
            {
                let mut s = machine.state();
                s.writes += 1;
                s.has_image = true;
            }
            let result = PrepareImageResult {
                result: format!(
                    "prepare_image: image ({}) written to device /dev/sda root_uuid={}",
                    params.image_info.id,
                    root_uuid(machine)
                ),
                ferrite_image: Some(json!({"simulated": true, "bytes": fleet.cfg.image_size,
                                           "seconds": time.as_secs_f64()})),
            };
            let value = serde_json::to_value(result).unwrap_or_default();
            let value = match step {
                None => value,
                Some(step) => {
                    serde_json::to_value(ExecuteStepResult::new(StepKind::Deploy, step, value))
                        .unwrap_or_default()
                }
            };
            Some((CommandStatus::Succeeded, None, Some(value)))
        }
        Work::Step { kind, step, time } => {
            if time == Duration::MAX {
                let name = step
                    .get("step")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                return Some(failure(format!(
                    "no hardware manager implements the {} step {name:?}",
                    kind.name()
                )));
            }
            if !sleep(time).await {
                return None;
            }
            let r = ExecuteStepResult::new(kind, step, Value::Null);
            Some((CommandStatus::Succeeded, None, serde_json::to_value(r).ok()))
        }
        Work::PowerOff => {
            machine.power_off();
            None
        }
        Work::Reboot => {
            machine.reset(fleet);
            None
        }
        Work::Nothing => Some((CommandStatus::Succeeded, None, None)),
    }
}
