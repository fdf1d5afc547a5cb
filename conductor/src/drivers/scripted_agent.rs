//! A scripted [`AgentApi`] for unit tests: each call gets the next scripted answer, and
//! every call is recorded so a test can check what the conductor sent.

use std::collections::VecDeque;
use std::sync::Mutex;

use ferrite_proto::agent::{CommandResult, CommandStatus};
use serde_json::{Map, Value};

use super::agent::AgentApi;
use super::BoxFut;
use crate::agent_client::{AgentError, AgentTarget};

/// One call the conductor made.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The command name, or `GET <id>` for a poll.
    pub name: String,
    pub params: Map<String, Value>,
    pub wait: bool,
    pub url: String,
}

/// Answers calls from a script, in order.
#[derive(Default)]
pub struct ScriptedAgent {
    script: Mutex<VecDeque<(String, Result<CommandResult, AgentError>)>>,
    calls: Mutex<Vec<Call>>,
}

fn result(name: &str, id: &str, status: CommandStatus) -> CommandResult {
    CommandResult {
        id: id.into(),
        // As a real agent reports it: without the extension.
        command_name: ferrite_proto::agent::reported_name(name).into(),
        command_params: Map::new(),
        command_status: status,
        command_error: None,
        command_result: None,
    }
}

impl ScriptedAgent {
    pub fn new() -> ScriptedAgent {
        ScriptedAgent::default()
    }

    /// The next call must be `name` (a command, or `GET <id>` for a poll) and gets `answer`.
    pub fn answer(&self, name: &str, answer: Result<CommandResult, AgentError>) {
        self.lock_script().push_back((name.into(), answer));
    }

    /// `name` succeeds with `command_result`.
    pub fn done(&self, name: &str, command_result: Value) {
        let mut r = result(name, "done", CommandStatus::Succeeded);
        r.command_result = Some(command_result);
        self.answer(name, Ok(r));
    }

    /// `name` is still running as command `id`.
    pub fn running(&self, name: &str, id: &str) {
        self.answer(name, Ok(result(name, id, CommandStatus::Running)));
    }

    /// `name` fails with `command_error`.
    pub fn failed(&self, name: &str, command_error: Value) {
        let mut r = result(name, "failed", CommandStatus::Failed);
        r.command_error = Some(command_error);
        self.answer(name, Ok(r));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether every scripted answer was used.
    pub fn finished(&self) -> bool {
        self.lock_script().is_empty()
    }

    fn lock_script(
        &self,
    ) -> std::sync::MutexGuard<'_, VecDeque<(String, Result<CommandResult, AgentError>)>> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next(&self, call: Call) -> Result<CommandResult, AgentError> {
        let name = call.name.clone();
        let url = call.url.clone();
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
        let unexpected = |why: String| AgentError::Status {
            url: url.clone(),
            status: 500,
            body: why,
        };
        match self.lock_script().pop_front() {
            Some((want, answer)) if want == name => answer,
            Some((want, _)) => Err(unexpected(format!(
                "scripted agent: expected {want}, got {name}"
            ))),
            None => Err(unexpected(format!("scripted agent: no answer for {name}"))),
        }
    }
}

impl AgentApi for ScriptedAgent {
    fn command<'a>(
        &'a self,
        t: &'a AgentTarget<'a>,
        name: &'a str,
        params: Map<String, Value>,
        wait: bool,
    ) -> BoxFut<'a, Result<CommandResult, AgentError>> {
        let call = Call {
            name: name.into(),
            params,
            wait,
            url: t.url.into(),
        };
        Box::pin(async move { self.next(call) })
    }

    fn get_command<'a>(
        &'a self,
        t: &'a AgentTarget<'a>,
        id: &'a str,
    ) -> BoxFut<'a, Result<CommandResult, AgentError>> {
        let call = Call {
            name: format!("GET {id}"),
            params: Map::new(),
            wait: false,
            url: t.url.into(),
        };
        Box::pin(async move { self.next(call) })
    }
}
