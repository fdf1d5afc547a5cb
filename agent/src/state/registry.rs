//! The command registry: `extension.command` names → handlers, each synchronous or
//! asynchronous. The type lives with [`AgentState`], which holds one; the standard set of
//! commands (`Registry::standard`) is registered by the `commands` module, above this layer.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::AgentState;
use crate::job::{CommandError, CommandFuture};

/// A handler in its raw form: the request's `params` object and the agent state.
pub type Handler =
    Arc<dyn Fn(Map<String, Value>, Arc<AgentState>) -> CommandFuture + Send + Sync + 'static>;

/// Parses `params` before anything runs, so bad input is a 400 and never a stored result.
pub(crate) type Prepare = Arc<
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
    pub(crate) prepare: Prepare,
}

/// `extension.command` → handler.
#[derive(Clone, Default)]
pub struct Registry {
    commands: BTreeMap<String, CommandSpec>,
}

impl Registry {
    /// A registry without commands.
    pub fn empty() -> Self {
        Self::default()
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

    pub(crate) fn lookup(&self, name: &str) -> Result<&CommandSpec, CommandError> {
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
