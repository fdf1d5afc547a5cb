//! The command framework: a registry of `extension.command` names → async handlers, each
//! synchronous (answered when done) or asynchronous (answered at once, polled later), and
//! `execute`, which admits one command at a time as IPA does and stores its result.

pub mod clean;
pub mod deploy;
pub mod image;
pub mod iscsi;
pub mod log;
pub mod poll;
pub mod rescue;
pub mod service;
pub mod standby;
pub mod system;

use std::sync::Arc;

use ferrite_proto::agent::CommandResult;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::state::{AgentConfig, AgentState, SystemHooks};

// The job types are the steps' too, so they live below both in `crate::job`; the registry
// type lives with the state that holds it.
pub use crate::job::{blocking, CommandEntry, CommandError, CommandFuture, CommandStore};
pub use crate::state::registry::{parse_params, CommandSpec, Handler, Mode, Registry};

/// Parameters of commands that take none; anything given is an unknown field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl Registry {
    /// The commands of this agent (CONTRACT.md §1).
    pub fn standard() -> Self {
        let mut r = Self::empty();
        standby::register(&mut r);
        poll::register(&mut r);
        clean::register(&mut r);
        deploy::register(&mut r);
        service::register(&mut r);
        rescue::register(&mut r);
        system::register(&mut r);
        log::register(&mut r);
        iscsi::register(&mut r);
        crate::bootloader::register(&mut r);
        crate::kexec::register(&mut r);
        r
    }
}

impl AgentState {
    /// State with the standard commands and hardware managers. Defined here, not in
    /// `crate::state`, because the state layer sits below the commands and steps it holds.
    pub fn new(config: AgentConfig, hooks: Arc<dyn SystemHooks>) -> Self {
        Self::with_parts(
            config,
            hooks,
            Registry::standard(),
            crate::steps::default_managers(),
        )
    }
}

/// What [`execute`] started.
#[derive(Debug)]
pub struct Started {
    pub entry: Arc<CommandEntry>,
    pub mode: Mode,
}

impl Started {
    pub fn snapshot(&self) -> CommandResult {
        self.entry.snapshot()
    }
}

/// Admit and start `name(params)`: refuses with `Busy` while the last command runs, with
/// `InvalidCommand`/`InvalidParams` on bad input. A synchronous command has finished when
/// this returns; an asynchronous one is RUNNING and its entry can be awaited.
///
/// The command runs in its own task, so it completes and its result is stored even if
/// the caller (an HTTP connection) goes away.
pub async fn execute(
    state: Arc<AgentState>,
    name: String,
    params: Map<String, Value>,
) -> Result<Started, CommandError> {
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let state = task_state;
        let store = &state.commands;
        let guard = store.exec_lock.lock().await;
        if state.is_locked_down() {
            return Err(CommandError::LockedDown);
        }
        if let Some(running) = store.running() {
            return Err(CommandError::Busy(running));
        }
        let spec = state.registry.lookup(&name)?.clone();
        let future = (spec.prepare)(params.clone(), state.clone())?;
        let entry = CommandEntry::running(&name, params);
        match spec.mode {
            Mode::Sync => {
                let outcome = run_guarded(&name, future).await;
                if let Err(
                    e @ (CommandError::InvalidParams { .. } | CommandError::InvalidCommand(_)),
                ) = outcome
                {
                    // Like IPA's InvalidContentError: answered with 400, not stored.
                    return Err(e);
                }
                entry.finish_sync(&name, outcome);
                store.push(entry.clone());
                drop(guard);
            }
            Mode::Async => {
                store.push(entry.clone());
                drop(guard);
                let entry = entry.clone();
                tokio::spawn(async move {
                    let outcome = run_guarded(&name, future).await;
                    entry.finish(outcome);
                    state.request_heartbeat();
                });
            }
        }
        Ok(Started {
            entry,
            mode: spec.mode,
        })
    });
    match task.await {
        Ok(result) => result,
        Err(join) => Err(CommandError::failed_msg(format!(
            "the command task ended abnormally: {join}"
        ))),
    }
}

/// Runs a handler future in its own task so a panic becomes a FAILED result.
async fn run_guarded(name: &str, future: CommandFuture) -> Result<Value, CommandError> {
    match tokio::spawn(future).await {
        Ok(outcome) => outcome,
        Err(join) => Err(CommandError::failed_msg(format!(
            "command {name} ended abnormally: {join}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[allow(dead_code)]
        node: Map<String, Value>,
        #[allow(dead_code)]
        #[serde(default)]
        count: u32,
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn params_errors_name_the_field() {
        let e = parse_params::<P>(params(serde_json::json!({"node": {}, "bogus": 1}))).unwrap_err();
        assert!(
            matches!(&e, CommandError::InvalidParams { field, .. } if field == "bogus"),
            "{e:?}"
        );
        let e = parse_params::<P>(params(serde_json::json!({}))).unwrap_err();
        assert!(matches!(&e, CommandError::InvalidParams { field, .. } if field == "node"));
        let e = parse_params::<P>(params(serde_json::json!({"node": [], "count": 1}))).unwrap_err();
        assert!(matches!(&e, CommandError::InvalidParams { field, .. } if field == "node"));
        let e =
            parse_params::<P>(params(serde_json::json!({"node": {}, "count": "x"}))).unwrap_err();
        assert!(matches!(&e, CommandError::InvalidParams { field, .. } if field == "count"));
        assert!(parse_params::<P>(params(serde_json::json!({"node": {}}))).is_ok());
    }

    #[test]
    fn command_names_are_checked() {
        let r = Registry::standard();
        assert!(r.names().any(|n| n == "standby.sync"));
        let e = r.lookup("nodot").err().unwrap();
        assert!(e.to_string().contains("<extension>.<command>"));
        let e = r.lookup("standby.fly").err().unwrap();
        assert!(e.to_string().contains("known commands: "), "{e}");
        assert!(e.to_string().contains("standby.sync"));
        assert_eq!(e.status_code(), 400);
    }
}
