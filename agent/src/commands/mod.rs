//! The command framework: a registry of `extension.command` names → async handlers, each
//! synchronous (answered when done) or asynchronous (answered at once, polled later), and
//! `execute`, which admits one command at a time as IPA does and stores its result.

mod store;

pub mod clean;
pub mod deploy;
pub mod image;
pub mod iscsi;
pub mod log;
pub mod poll;
pub mod standby;
pub mod system;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use ferrite_proto::agent::CommandResult;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::state::AgentState;

// The job types are the steps' too, so they live below both in `crate::job`.
pub use crate::job::{blocking, CommandError, CommandFuture};
pub use store::{CommandEntry, CommandStore};

/// A handler in its raw form: the request's `params` object and the agent state.
pub type Handler =
    Arc<dyn Fn(Map<String, Value>, Arc<AgentState>) -> CommandFuture + Send + Sync + 'static>;

/// Parses `params` before anything runs, so bad input is a 400 and never a stored result.
type Prepare = Arc<
    dyn Fn(Map<String, Value>, Arc<AgentState>) -> Result<CommandFuture, CommandError>
        + Send
        + Sync
        + 'static,
>;

/// Whether the request waits for the command (sync) or gets a RUNNING result (async).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sync,
    Async,
}

/// One registered command.
#[derive(Clone)]
pub struct CommandSpec {
    pub mode: Mode,
    prepare: Prepare,
}

/// `extension.command` → handler.
#[derive(Clone, Default)]
pub struct Registry {
    commands: BTreeMap<String, CommandSpec>,
}

/// Parameters of commands that take none; anything given is an unknown field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl Registry {
    /// A registry without commands.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The commands of this agent (CONTRACT.md §1).
    pub fn standard() -> Self {
        let mut r = Self::empty();
        standby::register(&mut r);
        poll::register(&mut r);
        clean::register(&mut r);
        deploy::register(&mut r);
        system::register(&mut r);
        log::register(&mut r);
        iscsi::register(&mut r);
        crate::bootloader::register(&mut r);
        r
    }

    /// Register a command whose params deserialize into `P` (use
    /// `#[serde(deny_unknown_fields)]` on `P`); bad params are refused with 400 naming
    /// the field before the command starts.
    pub fn register<P, F, Fut>(&mut self, name: &str, mode: Mode, handler: F)
    where
        P: DeserializeOwned + Send + 'static,
        F: Fn(P, Arc<AgentState>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, CommandError>> + Send + 'static,
    {
        self.register_checked(name, mode, |_: &P| Ok(()), handler);
    }

    /// Like [`Registry::register`], and `check` validates the params before the command
    /// starts (IPA's `async_command` validator): its error is answered 400 and nothing is
    /// stored, where an error of an async handler would be a stored FAILED command.
    pub fn register_checked<P, C, F, Fut>(&mut self, name: &str, mode: Mode, check: C, handler: F)
    where
        P: DeserializeOwned + Send + 'static,
        C: Fn(&P) -> Result<(), CommandError> + Send + Sync + 'static,
        F: Fn(P, Arc<AgentState>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, CommandError>> + Send + 'static,
    {
        let prepare: Prepare = Arc::new(move |params, state| {
            let params: P = parse_params(params)?;
            check(&params)?;
            Ok(Box::pin(handler(params, state)) as CommandFuture)
        });
        self.insert(name, mode, prepare);
    }

    /// Register a handler that takes the raw `params` object.
    pub fn register_raw(&mut self, name: &str, mode: Mode, handler: Handler) {
        self.insert(
            name,
            mode,
            Arc::new(move |params, state| Ok(handler(params, state))),
        );
    }

    fn insert(&mut self, name: &str, mode: Mode, prepare: Prepare) {
        assert!(
            split_command(name).is_ok(),
            "command names are <extension>.<command>, got {name:?}"
        );
        self.commands
            .insert(name.to_string(), CommandSpec { mode, prepare });
    }

    /// Registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.commands.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&CommandSpec> {
        self.commands.get(name)
    }

    fn lookup(&self, name: &str) -> Result<&CommandSpec, CommandError> {
        split_command(name)?;
        self.get(name).ok_or_else(|| {
            CommandError::InvalidCommand(format!(
                "unknown command {name:?}; known commands: {}",
                self.names().collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

fn split_command(name: &str) -> Result<(&str, &str), CommandError> {
    match name.split_once('.') {
        Some((ext, cmd)) if !ext.is_empty() && !cmd.is_empty() => Ok((ext, cmd)),
        _ => Err(CommandError::InvalidCommand(format!(
            "command name {name:?} must be of the form <extension>.<command>, \
             e.g. standby.sync"
        ))),
    }
}

/// Deserialize `params` into `P`; the error names the offending field.
pub fn parse_params<P: DeserializeOwned>(params: Map<String, Value>) -> Result<P, CommandError> {
    let value = Value::Object(params);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let reason = err.inner().to_string();
        let field = if path == "." || path.is_empty() {
            // Unknown/missing fields are reported at the object itself; the name is in
            // the message between backticks.
            reason
                .split('`')
                .nth(1)
                .map(str::to_string)
                .unwrap_or_else(|| "params".to_string())
        } else {
            path
        };
        CommandError::invalid_params(field, reason)
    })
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
