//! Command results by id, in the order the commands were started; an entry of a running
//! command can be awaited.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ferrite_proto::agent::{reported_name, CommandResult, CommandStatus};
use serde_json::{Map, Value};
use tokio::sync::watch;

use super::CommandError;

/// Finished entries beyond this many are forgotten, oldest first.
const MAX_RESULTS: usize = 512;
/// Stored params keep strings up to this size; longer ones (a config drive) are replaced
/// by a note of their size, as IPA's `remove_large_keys` does for its logs.
const MAX_KEPT_STRING: usize = 4096;

fn without_large_strings(value: Value) -> Value {
    match value {
        Value::String(s) if s.len() > MAX_KEPT_STRING => {
            Value::String(format!("<{} bytes omitted>", s.len()))
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_large_strings).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, without_large_strings(v)))
                .collect(),
        ),
        other => other,
    }
}

/// One command's result, updated when it finishes.
#[derive(Debug)]
pub struct CommandEntry {
    result: watch::Sender<CommandResult>,
}

impl CommandEntry {
    /// A running command requested as `name` (`<extension>.<command>`); its result names
    /// it as IPA does, without the extension.
    pub(crate) fn running(name: &str, params: Map<String, Value>) -> Arc<Self> {
        let result = CommandResult {
            id: uuid::Uuid::new_v4().to_string(),
            command_name: reported_name(name).to_string(),
            // Secrets (the rescue password) are never shown back.
            command_params: params
                .into_iter()
                .map(|(k, v)| {
                    let v = if k.contains("password") {
                        Value::String(ferrite_proto::MASKED_SECRET.into())
                    } else {
                        without_large_strings(v)
                    };
                    (k, v)
                })
                .collect(),
            command_status: CommandStatus::Running,
            command_error: None,
            command_result: None,
        };
        Arc::new(Self {
            result: watch::channel(result).0,
        })
    }

    pub fn id(&self) -> String {
        self.result.borrow().id.clone()
    }

    pub fn snapshot(&self) -> CommandResult {
        self.result.borrow().clone()
    }

    pub fn is_running(&self) -> bool {
        self.result.borrow().command_status == CommandStatus::Running
    }

    /// Show interim output while the command runs (progress of a long command); ignored
    /// once it finished.
    pub fn set_running_result(&self, value: Value) {
        self.result.send_modify(|r| {
            if r.command_status == CommandStatus::Running {
                r.command_result = Some(value);
            }
        });
    }

    /// Record the outcome of an asynchronous command, as IPA's `AsyncCommandResult`: a bare
    /// string becomes `{"result": "<name>: <text>"}`; a version mismatch has its own status.
    pub(crate) fn finish(&self, outcome: Result<Value, CommandError>) {
        self.result.send_modify(|r| match outcome {
            Ok(value) => {
                r.command_status = CommandStatus::Succeeded;
                r.command_result = Some(match value {
                    Value::String(s) => {
                        serde_json::json!({"result": format!("{}: {s}", r.command_name)})
                    }
                    other => other,
                });
            }
            Err(err) => {
                r.command_status = match err {
                    CommandError::VersionMismatch { .. } => CommandStatus::VersionMismatch,
                    _ => CommandStatus::Failed,
                };
                r.command_error = Some(err.to_value());
            }
        });
    }

    /// Record the outcome of a synchronous command `name`, as IPA's `SyncCommandResult`: a
    /// bare string becomes `{"result": "<text>"}`; a failure is stored under the full
    /// `<extension>.<command>` name (IPA records it outside the command's own wrapper).
    pub(crate) fn finish_sync(&self, name: &str, outcome: Result<Value, CommandError>) {
        self.result.send_modify(|r| match outcome {
            Ok(value) => {
                r.command_status = CommandStatus::Succeeded;
                r.command_result = Some(match value {
                    Value::String(s) => serde_json::json!({ "result": s }),
                    other => other,
                });
            }
            Err(err) => {
                r.command_name = name.to_string();
                r.command_status = CommandStatus::Failed;
                r.command_error = Some(err.to_value());
            }
        });
    }

    /// Resolves with the result once the command is no longer running.
    pub async fn wait(&self) -> CommandResult {
        let mut rx = self.result.subscribe();
        let done = rx
            .wait_for(|r| r.command_status != CommandStatus::Running)
            .await
            .map(|r| r.clone());
        // The sender lives in `self`; it cannot be gone while we borrow it.
        done.unwrap_or_else(|_| self.snapshot())
    }
}

/// All results, oldest first. IPA keeps every result; we keep the newest [`MAX_RESULTS`].
#[derive(Debug, Default)]
pub struct CommandStore {
    entries: Mutex<VecDeque<Arc<CommandEntry>>>,
    /// Held while a command is admitted and, for synchronous commands, while it runs:
    /// commands are serialised as in IPA.
    pub(crate) exec_lock: tokio::sync::Mutex<()>,
}

impl CommandStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<CommandEntry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, entry: Arc<CommandEntry>) {
        let mut entries = self.lock();
        entries.push_back(entry);
        while entries.len() > MAX_RESULTS {
            match entries.iter().position(|e| !e.is_running()) {
                Some(i) => {
                    entries.remove(i);
                }
                None => break,
            }
        }
    }

    /// The most recently started command.
    pub fn last(&self) -> Option<Arc<CommandEntry>> {
        self.lock().back().cloned()
    }

    pub fn get(&self, id: &str) -> Option<Arc<CommandEntry>> {
        self.lock().iter().find(|e| e.id() == id).cloned()
    }

    /// Snapshots of every stored result, oldest first.
    pub fn list(&self) -> Vec<CommandResult> {
        self.lock().iter().map(|e| e.snapshot()).collect()
    }

    /// The running command's name, if one is running.
    pub fn running(&self) -> Option<String> {
        self.last()
            .filter(|e| e.is_running())
            .map(|e| e.snapshot().command_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_finish_and_wake_waiters() {
        let store = CommandStore::default();
        let entry = CommandEntry::running("standby.sync", Map::new());
        store.push(entry.clone());
        assert_eq!(store.running().as_deref(), Some("sync"));
        let waiter = tokio::spawn({
            let entry = entry.clone();
            async move { entry.wait().await }
        });
        entry.finish(Ok(Value::String("done".into())));
        let r = waiter.await.unwrap();
        assert_eq!(r.command_status, CommandStatus::Succeeded);
        assert_eq!(
            r.command_result,
            Some(serde_json::json!({"result": "sync: done"}))
        );
        assert!(store.running().is_none());
        assert_eq!(store.get(&entry.id()).unwrap().snapshot(), r);
        assert!(store.get("nope").is_none());
    }

    /// IPA's two result classes: a sync command's string is not prefixed, and its failure
    /// keeps the full name; an async version mismatch has its own status.
    #[test]
    fn sync_and_async_outcomes_read_as_ipa_writes_them() {
        let ok = CommandEntry::running("log.collect_system_logs", Map::new());
        ok.finish_sync("log.collect_system_logs", Ok(Value::String("x".into())));
        let r = ok.snapshot();
        assert_eq!(r.command_name, "collect_system_logs");
        assert_eq!(r.command_result, Some(serde_json::json!({"result": "x"})));
        let bad = CommandEntry::running("standby.get_partition_uuids", Map::new());
        bad.finish_sync(
            "standby.get_partition_uuids",
            Err(CommandError::failed_msg("no disk")),
        );
        let r = bad.snapshot();
        assert_eq!(r.command_name, "standby.get_partition_uuids");
        assert_eq!(r.command_status, CommandStatus::Failed);
        let stale = CommandEntry::running("clean.execute_clean_step", Map::new());
        stale.finish(Err(CommandError::VersionMismatch {
            agent: serde_json::json!({"generic_hardware_manager": "1.2"}),
            conductor: serde_json::json!({"generic_hardware_manager": "1.1"}),
        }));
        let r = stale.snapshot();
        assert_eq!(r.command_name, "execute_clean_step");
        assert_eq!(r.command_status, CommandStatus::VersionMismatch);
        assert_eq!(r.command_error.unwrap()["type"], "VersionMismatch");
    }

    #[test]
    fn large_params_are_not_kept() {
        let params = serde_json::json!({
            "configdrive": "x".repeat(10_000),
            "image_info": {"urls": ["http://10.0.2.2/img"], "blob": ["y".repeat(5000)]},
        });
        let entry =
            CommandEntry::running("standby.prepare_image", params.as_object().unwrap().clone());
        let kept = Value::Object(entry.snapshot().command_params);
        assert_eq!(
            kept,
            serde_json::json!({
                "configdrive": "<10000 bytes omitted>",
                "image_info": {"urls": ["http://10.0.2.2/img"], "blob": ["<5000 bytes omitted>"]},
            })
        );
    }

    #[test]
    fn old_finished_entries_are_evicted() {
        let store = CommandStore::default();
        let first = CommandEntry::running("a.b", Map::new());
        first.finish(Ok(Value::Null));
        store.push(first.clone());
        for _ in 0..MAX_RESULTS {
            let e = CommandEntry::running("a.b", Map::new());
            e.finish(Ok(Value::Null));
            store.push(e);
        }
        assert_eq!(store.list().len(), MAX_RESULTS);
        assert!(store.get(&first.id()).is_none());
    }
}
